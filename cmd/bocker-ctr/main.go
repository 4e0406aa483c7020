// Command bocker-ctr is the part of bocker that runs inside a container
// while it is set up: the container's init, exec's helper and the --init
// reaper. scripts/build embeds it in bocker, which runs it from a sealed
// memfd (see container/helper.go); it is not installed on its own.
package main

import (
	"os"
	"path/filepath"

	"github.com/bocker/bocker/container"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case container.InitApplet:
		container.Init()
	case container.ExecApplet:
		container.ExecInit()
	case container.ReaperApplet:
		container.Reaper()
	}
	os.Exit(1)
}

// Command bocker is Docker's core in one static binary: a busybox-style
// multicall program, `bocker <applet>` or `bocker-<applet>` via a link.
package main

import (
	"os"
	"path/filepath"

	"github.com/bocker/bocker/applets"
	"github.com/bocker/bocker/container"
)

func main() {
	// The re-executed container init and exec helpers come first: they
	// must not parse flags or touch the store.
	switch filepath.Base(os.Args[0]) {
	case container.InitApplet:
		container.Init()
		os.Exit(1)
	case container.ExecApplet:
		container.ExecInit()
		os.Exit(1)
	case container.ReaperApplet:
		container.Reaper()
		os.Exit(1)
	}
	os.Exit(applets.Main(os.Args))
}

package container

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// helperBinary is cmd/bocker-ctr, embedded by scripts/build (build tag
// bocker_helper); without it, bocker re-executes itself.
//
// Why a second, small program: every process a container start runs
// inside the container (its init, exec's helper, the --init reaper)
// pays for Go's start-up, and bocker's is 8 ms longer than a minimal Go
// program's: the package initialisers and the size of everything the
// registry, the network and cgroups code bring. bocker-ctr links only
// this package.
//
// And why from a sealed memfd, not a file: a process in the container
// can open /proc/PID/exe of a helper that runs in its pid namespace; were
// that bocker's own file on the host, writing to it would replace bocker
// (runc's CVE-2019-5736). A sealed memfd cannot be written by anyone.
var helperBinary []byte

var helper struct {
	once sync.Once
	path string
	err  error
	file *os.File // kept, or its finalizer would close the fd
}

// helperPath is the program to run as a container's init or exec
// helper: /proc/self/fd/N of the sealed memfd, kept open for the life of
// this process, or /proc/self/exe when nothing is embedded.
func helperPath() (string, error) {
	helper.once.Do(func() {
		if len(helperBinary) == 0 {
			helper.path = "/proc/self/exe"
			return
		}
		fd, err := unix.MemfdCreate("bocker-ctr", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			helper.err = fmt.Errorf("create memfd for the container helper: %w", err)
			return
		}
		f := os.NewFile(uintptr(fd), "bocker-ctr")
		if _, err := f.Write(helperBinary); err != nil {
			f.Close()
			helper.err = fmt.Errorf("write the container helper: %w", err)
			return
		}
		seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
			f.Close()
			helper.err = fmt.Errorf("seal the container helper: %w", err)
			return
		}
		// Kept open on purpose: the path is only good while the fd is.
		helper.file = f
		helper.path = "/proc/self/fd/" + strconv.Itoa(fd)
	})
	return helper.path, helper.err
}

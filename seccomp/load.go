package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var filterFlags = map[specs.LinuxSeccompFlag]uintptr{
	specs.LinuxSeccompFlagLog:                           unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow:                     unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	specs.LinuxSeccompFlagWaitKillableRecv:              unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
	specs.LinuxSeccompFlag("SECCOMP_FILTER_FLAG_TSYNC"): unix.SECCOMP_FILTER_FLAG_TSYNC,
}

// Load compiles s and installs it on the calling thread, which must be
// locked to its goroutine (runtime.LockOSThread) and should execve soon:
// from then on the Go runtime on this thread is filtered too. With
// noNewPrivs it first sets no_new_privs; without it the caller needs
// CAP_SYS_ADMIN, so it must still hold its capabilities.
//
// Without SECCOMP_FILTER_FLAG_TSYNC in s.Flags other threads are left
// alone; that is enough right before execve, which leaves one thread.
func Load(s *specs.LinuxSeccomp, noNewPrivs bool) error {
	prog, err := Compile(s)
	if err != nil {
		return fmt.Errorf("compile seccomp profile: %w", err)
	}
	var flags uintptr
	for _, f := range s.Flags {
		v, ok := filterFlags[f]
		if !ok {
			return fmt.Errorf("seccomp flag %q: %w", f, ErrUnsupported)
		}
		flags |= v
	}
	if noNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	return install(prog, flags)
}

func install(prog []unix.SockFilter, flags uintptr) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.ENOSYS && flags == 0 {
		// seccomp(2) is from Linux 3.17; prctl does the same without flags.
		_, _, errno = unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0, 0)
	}
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("install seccomp filter of %d instructions: %w", len(prog), errno)
	}
	return nil
}

package container

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Reaper is run --init's PID 1: it starts the user's command as its
// child, passes it every signal it can catch, reaps every orphan that the
// pid namespace hands it, and exits with the command's status. It never
// returns.
func Reaper() {
	if len(os.Args) < 3 {
		os.Exit(127)
	}
	path, argv := os.Args[1], os.Args[2:]
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		os.Stderr.WriteString("bocker-init: exec " + argv[0] + ": " + err.Error() + "\n")
		os.Exit(126)
	}
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			for {
				var ws unix.WaitStatus
				p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if p <= 0 || err != nil {
					break
				}
				if p != pid {
					continue // an orphan: reaped, nothing more
				}
				if ws.Signaled() {
					os.Exit(128 + int(ws.Signal()))
				}
				os.Exit(ws.ExitStatus())
			}
			continue
		}
		if sig == syscall.SIGURG {
			continue // the Go runtime's own preemption signal
		}
		_ = syscall.Kill(pid, sig.(syscall.Signal))
	}
}

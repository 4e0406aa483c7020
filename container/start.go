// Package container runs a process isolated as an OCI runtime spec
// describes: namespaces, a pivoted root with Docker's mounts, masked
// paths, capabilities. It knows nothing of images or the store; callers
// hand it a spec, a root mount and the cgroups to join.
package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Cgroup is where a container's processes are placed.
type Cgroup interface {
	Add(pid int) error
}

// Config describes one container to start.
type Config struct {
	Spec         *specs.Spec
	RootMount    *specs.Mount
	MountDir     string
	FallbackArgs []string
	// Reaper puts bocker's small init between PID 1 and the command.
	Reaper bool

	// CgroupNSRoot is joined before the cgroup namespace is made, so the
	// container sees its cgroup path relative to it; Cgroup is joined
	// after, before the user's command runs.
	CgroupNSRoot Cgroup
	Cgroup       Cgroup
	// Prestart runs with the init's pid once its namespaces exist and
	// before the user's command starts (network setup plugs in here).
	Prestart func(pid int) error

	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// DieWithParent kills the container when the starting process dies,
	// so a kill -9 of bocker leaves no orphan running.
	DieWithParent bool
	// Console, with Spec.Process.Terminal, gets the master of a pty made
	// inside the container (see console.go); Stdin, Stdout and Stderr are
	// then unused.
	Console func(master *os.File)
}

// Process is a started container or exec'd process.
type Process struct {
	Pid int
	cmd *exec.Cmd
}

var nsFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
}

// Start launches the container's init and returns once the user's
// command has been exec'd (or failed to be).
func Start(cfg *Config) (*Process, error) {
	s := cfg.Spec
	if s == nil || s.Process == nil || len(s.Process.Args) == 0 || s.Root == nil || s.Root.Path == "" {
		return nil, errors.New("start container: spec needs a root path and process args")
	}
	var clone uintptr
	cgroupNS := false
	if s.Linux != nil {
		for _, n := range s.Linux.Namespaces {
			if n.Path != "" {
				return nil, fmt.Errorf("start container: joining %s namespace by path is not supported", n.Type)
			}
			if n.Type == specs.CgroupNamespace {
				cgroupNS = true
				continue
			}
			f, ok := nsFlags[n.Type]
			if !ok {
				return nil, fmt.Errorf("start container: unsupported namespace %q", n.Type)
			}
			clone |= f
		}
	}
	path, err := helperPath()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path)
	cmd.Args = []string{InitApplet}
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: clone}
	if cfg.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	var console func(*os.File)
	if s.Process.Terminal {
		console = cfg.Console
	}
	return launch(cmd, cfg.Stdin, cfg.Stdout, cfg.Stderr, console, func(pid int) error {
		if cgroupNS && cfg.CgroupNSRoot != nil {
			if err := cfg.CgroupNSRoot.Add(pid); err != nil {
				return err
			}
		}
		return nil
	}, &initConfig{Spec: s, RootMount: cfg.RootMount, MountDir: cfg.MountDir, FallbackArgs: cfg.FallbackArgs, CgroupNS: cgroupNS, Reaper: cfg.Reaper},
		func(pid int) error {
			if cfg.Cgroup != nil {
				if err := cfg.Cgroup.Add(pid); err != nil {
					return err
				}
			}
			if cfg.Prestart != nil {
				return cfg.Prestart(pid)
			}
			return nil
		}, true)
}

// launch runs the parent's half of the handshake described in init.go.
func launch(cmd *exec.Cmd, stdin io.Reader, stdout, stderr io.Writer, console func(*os.File), before func(int) error, msg any, after func(int) error, handshake bool) (*Process, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create config pipe: %w", err)
	}
	defer cfgR.Close()
	defer cfgW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create status pipe: %w", err)
	}
	defer stR.Close()
	defer stW.Close()
	cmd.ExtraFiles = []*os.File{cfgR, stW}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, pooled(stdout), pooled(stderr)
	var consoleSock *os.File
	if console != nil {
		sock, child, err := consolePair()
		if err != nil {
			return nil, err
		}
		defer sock.Close()
		defer child.Close()
		consoleSock = sock
		cmd.ExtraFiles = append(cmd.ExtraFiles, child)
		cmd.Env = append(cmd.Env, consoleEnv)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	}
	cmd.WaitDelay = time.Second
	// Pdeathsig fires when the forking thread exits; Go only ends threads
	// that a goroutine locked, and this one is not locked.
	err = cmd.Start()
	if err != nil {
		return nil, fmt.Errorf("start container init: %w", err)
	}
	p := &Process{Pid: cmd.Process.Pid, cmd: cmd}
	cfgR.Close()
	stW.Close()
	if consoleSock != nil {
		cmd.ExtraFiles[2].Close()
	}
	abort := func(err error) (*Process, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	if err := before(p.Pid); err != nil {
		return abort(err)
	}
	if err := writeMsg(cfgW, msg); err != nil {
		return abort(fmt.Errorf("send container config: %w", err))
	}
	if handshake {
		var b [1]byte
		if _, err := io.ReadFull(stR, b[:]); err != nil || b[0] != msgReady {
			rest, _ := io.ReadAll(stR)
			return abort(initError(append(b[:], rest...), err))
		}
	}
	if err := after(p.Pid); err != nil {
		return abort(err)
	}
	if handshake {
		if _, err := cfgW.Write([]byte{msgGo}); err != nil {
			return abort(fmt.Errorf("release container init: %w", err))
		}
	}
	cfgW.Close()
	if consoleSock != nil {
		if err := receiveConsole(consoleSock, console); err != nil {
			return abort(err)
		}
	}
	rest, _ := io.ReadAll(stR)
	if len(rest) > 0 {
		return abort(initError(rest, nil))
	}
	return p, nil
}

func initError(b []byte, err error) error {
	if len(b) > 2 && b[0] == msgExecFail {
		return &ExecError{Err: errors.New(string(b[2:])), code: int(b[1])}
	}
	if len(b) > 1 && b[0] == msgError {
		return errors.New(string(b[1:]))
	}
	if err != nil {
		return fmt.Errorf("container init: %w", err)
	}
	return errors.New("container init exited during setup")
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Wait waits for the process and its output and returns its status as a
// shell reports it: the exit code, or 128+N when killed by signal N.
func (p *Process) Wait() (int, error) {
	p.parkUntilExit()
	err := p.cmd.Wait()
	st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return -1, fmt.Errorf("wait for container: %w", err)
	}
	if st.Signaled() {
		return 128 + int(st.Signal()), nil
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
		return st.ExitStatus(), fmt.Errorf("wait for container: %w", err)
	}
	return st.ExitStatus(), nil
}

// parkUntilExit waits for the process to end in Go's poller, on a pidfd,
// so that a monitor watching many containers does not keep an OS thread
// blocked in wait4 for each (a thread costs it about 50 KiB). Without
// pidfds the Wait that follows blocks as it always did.
func (p *Process) parkUntilExit() {
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err != nil || n > 0
	})
}

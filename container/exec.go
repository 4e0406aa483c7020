package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecConfig describes a process to run inside a running container.
type ExecConfig struct {
	Pid     int // the container's init, whose namespaces we join
	Process *specs.Process
	// Seccomp is the container's filter, loaded as run's init loads it.
	Seccomp        *specs.LinuxSeccomp
	Cgroup         Cgroup
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Console: as in Config, a pty made inside the container.
	Console func(master *os.File)
}

// The order matters: the pid namespace applies to our children, and the
// mount namespace goes last because it changes what paths mean.
var execNamespaces = []struct {
	name string
	flag int
}{
	{"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"net", unix.CLONE_NEWNET},
	{"pid", unix.CLONE_NEWPID}, {"cgroup", unix.CLONE_NEWCGROUP}, {"mnt", unix.CLONE_NEWNS},
}

// execMsg is what Exec sends the exec child.
type execMsg struct {
	Process *specs.Process      `json:"process"`
	Seccomp *specs.LinuxSeccomp `json:"seccomp,omitempty"`
}

// Exec starts cfg.Process inside the container of cfg.Pid. It joins the
// namespaces on a locked thread that is thrown away afterwards, and forks
// the re-executed binary from it; that child finishes as init does.
func Exec(cfg *ExecConfig) (*Process, error) {
	if cfg.Process == nil || len(cfg.Process.Args) == 0 {
		return nil, errors.New("exec: no command given")
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	type nsfd struct{ fd, flag int }
	var joins []nsfd
	self := "/proc/self/ns/"
	for _, ns := range execNamespaces {
		p := "/proc/" + strconv.Itoa(cfg.Pid) + "/ns/" + ns.name
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		fds = append(fds, fd)
		// Joining our own namespace is a no-op the kernel may refuse (mnt).
		var a, b unix.Stat_t
		if unix.Fstat(fd, &a) == nil && unix.Stat(self+ns.name, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			continue
		}
		joins = append(joins, nsfd{fd, ns.flag})
	}

	type result struct {
		cmd *exec.Cmd
		err error
	}
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

	var consoleSock, consoleChild *os.File
	if cfg.Process.Terminal && cfg.Console != nil {
		if consoleSock, consoleChild, err = consolePair(); err != nil {
			return nil, err
		}
		defer consoleSock.Close()
		defer consoleChild.Close()
	}

	path, err := helperPath()
	if err != nil {
		return nil, err
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, taking its
		// foreign namespaces with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ch <- result{err: fmt.Errorf("unshare fs: %w", err)}
			return
		}
		for _, j := range joins {
			if err := unix.Setns(j.fd, j.flag); err != nil {
				ch <- result{err: fmt.Errorf("join namespace of pid %d: %w", cfg.Pid, err)}
				return
			}
		}
		// path (/proc/self/fd/N or /proc/self/exe) now resolves in the
		// container's /proc, and still names the host's file: the link
		// points at the inode, not at a path.
		cmd := exec.Command(path)
		cmd.Args = []string{ExecApplet}
		cmd.Env = []string{}
		cmd.Dir = "/"
		cmd.ExtraFiles = []*os.File{cfgR, stW}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
		if consoleChild != nil {
			cmd.ExtraFiles = append(cmd.ExtraFiles, consoleChild)
			cmd.Env = append(cmd.Env, consoleEnv)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
		}
		err := cmd.Start()
		ch <- result{cmd: cmd, err: err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("start exec in container: %w", r.err)
	}
	cmd := r.cmd
	cfgR.Close()
	stW.Close()
	if consoleChild != nil {
		consoleChild.Close()
	}
	abort := func(err error) (*Process, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	// This goroutine is on a host thread: the cgroup files are ours to see.
	if cfg.Cgroup != nil {
		if err := cfg.Cgroup.Add(cmd.Process.Pid); err != nil {
			return abort(err)
		}
	}
	if err := writeMsg(cfgW, execMsg{Process: cfg.Process, Seccomp: cfg.Seccomp}); err != nil {
		return abort(fmt.Errorf("send exec config: %w", err))
	}
	cfgW.Close()
	if consoleSock != nil {
		if err := receiveConsole(consoleSock, cfg.Console); err != nil {
			return abort(err)
		}
	}
	rest, _ := io.ReadAll(stR)
	if len(rest) > 0 {
		return abort(initError(rest, nil))
	}
	return &Process{Pid: cmd.Process.Pid, cmd: cmd}, nil
}

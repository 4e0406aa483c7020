package applets

import (
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/bocker/bocker/cgroup"
	"github.com/bocker/bocker/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	register(&Applet{Name: "exec", Help: "Execute a command in a running container:", Usage: "<container_id> <command>", Order: 7, Run: execIn})
}

func execIn(e *Env, args []string) error {
	if len(args) < 1 {
		return errors.New("usage: bocker exec <container_id> <command>")
	}
	ref := args[0]
	st, err := e.Store()
	if err != nil {
		return err
	}
	id, err := st.ResolveContainer(ref)
	if err != nil {
		return noContainer(ref)
	}
	c, err := st.GetContainer(id)
	if err != nil {
		return noContainer(ref)
	}
	if !running(st, c) {
		return notRunning(ref)
	}
	if len(args) < 2 {
		return errors.New("exec: no command given")
	}
	var cg container.Cgroup
	if c.Cgroup != "" {
		l, err := cgroup.Load(c.Cgroup)
		if err != nil {
			return err
		}
		cg = l
	}
	caps := append([]string(nil), container.DefaultCaps...)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	p, err := container.Exec(&container.ExecConfig{
		Pid: c.Pid,
		Process: &specs.Process{
			Args: args[1:],
			Env:  c.Env,
			Cwd:  c.Cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
		},
		Cgroup: cg,
		Stdin:  e.Stdin,
		Stdout: e.Stdout,
		Stderr: e.Stderr,
	})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = p.Signal(s)
			case <-done:
				return
			}
		}
	}()
	code, err := p.Wait()
	close(done)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

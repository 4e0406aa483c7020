package applets

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bocker/bocker/cgroup"
	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/seccomp"
	"github.com/bocker/bocker/store"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	register(&Applet{Name: "exec", Help: "Execute a command in a running container:", Usage: "<container_id> <command>", Order: 7, Run: execIn})
}

var execOptDefs = []optDef{
	{[]string{"i", "interactive"}, optBool},
	{[]string{"t", "tty"}, optBool},
	{[]string{"e", "env"}, optList},
	{[]string{"w", "workdir"}, optValue},
	{[]string{"u", "user"}, optValue},
	{[]string{"d", "detach"}, optBool},
}

// execIn runs a command in a running container. Stdin is passed without
// -i, as the script's nsenter did; -t gives the command a pty.
func execIn(e *Env, args []string) error {
	o, args, err := parseOpts("exec", args, execOptDefs)
	if err != nil {
		return err
	}
	if len(args) < 1 {
		return errors.New("usage: bocker exec [-d|-it] [-e K=V] [-w DIR] [-u USER] <container_id> <command>")
	}
	detach := o.bools["d"]
	if detach && (o.bools["i"] || o.bools["t"]) {
		return errors.New("exec: -d runs the command without a terminal or stdin; leave out -i and -t")
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
	proc, sc, err := execProcess(st, c, o, args[1:])
	if err != nil {
		return err
	}
	var cg container.Cgroup
	if c.Cgroup != "" {
		l, err := cgroup.Load(c.Cgroup)
		if err != nil {
			return err
		}
		cg = l
	}
	cfg := &container.ExecConfig{Pid: c.Pid, Process: proc, Seccomp: sc, Cgroup: cg, Stdin: e.Stdin, Stdout: e.Stdout, Stderr: e.Stderr}
	if detach {
		// Nothing attached: once bocker exits, the container's PID 1
		// inherits the command, as with docker exec -d.
		cfg.Stdin, cfg.Stdout, cfg.Stderr = nil, nil, nil
		_, err := container.Exec(cfg)
		return err
	}
	var tty *ttySession
	if proc.Terminal {
		tty = newTTY(e.Stdin)
		defer tty.close()
		cfg.Console = tty.attach
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	p, err := container.Exec(cfg)
	if err != nil {
		return err
	}
	if tty != nil {
		tty.pump(e.Stdin, e.Stdout, o.bools["i"])
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGWINCH {
					if tty != nil {
						tty.resize()
					}
					continue
				}
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

// execProcess is the container's own process settings (environment,
// directory, user, capabilities, no_new_privs, seccomp filter) with
// exec's options on top, as docker exec does.
func execProcess(st *store.Store, c *store.Container, o *opts, argv []string) (*specs.Process, *specs.LinuxSeccomp, error) {
	caps := append([]string(nil), container.DefaultCaps...)
	p := &specs.Process{
		Args: argv,
		Env:  append([]string(nil), c.Env...),
		Cwd:  c.Cwd,
		Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps,
		},
		Terminal: o.bools["t"],
	}
	// Without a launch config (a container from an older bocker) the
	// defaults of run apply.
	sc := seccomp.DefaultFor(caps)
	if lc, err := readLaunchConfig(st, c.ID); err == nil && lc.Spec != nil && lc.Spec.Process != nil {
		p.User = lc.Spec.Process.User
		p.Capabilities = lc.Spec.Process.Capabilities
		p.NoNewPrivileges = lc.Spec.Process.NoNewPrivileges
		sc = nil
		if lc.Spec.Linux != nil {
			sc = lc.Spec.Linux.Seccomp
		}
	}
	for _, kv := range o.lists["e"] {
		k, _, hasVal := strings.Cut(kv, "=")
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, nil, fmt.Errorf("exec: -e %q: expected NAME=value", kv)
		}
		if !hasVal {
			v, ok := os.LookupEnv(k)
			if !ok {
				continue
			}
			kv = k + "=" + v
		}
		p.Env = setEnv(p.Env, kv)
	}
	if p.Terminal && !hasEnv(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if w, ok := o.vals["w"]; ok {
		if !filepath.IsAbs(w) {
			return nil, nil, fmt.Errorf("exec: -w %q: the working directory must be an absolute path", w)
		}
		p.Cwd = filepath.Clean(w)
	}
	if u, ok := o.vals["u"]; ok {
		usr, err := parseUser("exec", u)
		if err != nil {
			return nil, nil, err
		}
		p.User = usr
	}
	return p, sc, nil
}

package applets

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/bocker/bocker/cgroup"
	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/store"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// launchConfig is how a container starts, kept beside its record so
// that a detached container's monitor and a later start run it the same
// way as the run that created it.
type launchConfig struct {
	Spec        *specs.Spec  `json:"spec"`
	Root        *specs.Mount `json:"root"`
	Fallback    []string     `json:"fallback,omitempty"`
	Reaper      bool         `json:"reaper,omitempty"`
	Interactive bool         `json:"interactive,omitempty"`
}

func readLaunchConfig(st *store.Store, id string) (*launchConfig, error) {
	b, err := os.ReadFile(filepath.Join(st.ContainerDir(id), "launch.json"))
	if err != nil {
		return nil, fmt.Errorf("read launch config of %s: %w", id, err)
	}
	var lc launchConfig
	if err := json.Unmarshal(b, &lc); err != nil {
		return nil, fmt.Errorf("read launch config of %s: %w", id, err)
	}
	return &lc, nil
}

func writeJSONFile(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(p), err)
	}
	return store.ReplaceFile(p, b, 0o600)
}

// attach is the caller's side of the container's stdio; nil streams mean
// none (a detached container logs only).
type attach struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	interactive    bool // pass stdin on
}

// launchContainer is steps 3 to 7 of a run: cgroup, start, wait, record
// the end. started tells whether the command ran; ready, when set, hears
// once whether it did.
func launchContainer(st *store.Store, id string, lc *launchConfig, a *attach, ready func(error)) (code int, started bool, err error) {
	notify := func(err error) {
		if ready != nil {
			ready(err)
			ready = nil
		}
	}
	defer func() {
		if !started {
			notify(err)
		}
	}()
	dir := st.ContainerDir(id)
	parent, err := cgroup.Create(cgroupParent, &specs.LinuxResources{})
	if err != nil {
		return 0, false, err
	}
	res := lc.Spec.Linux.Resources
	cg, err := cgroup.Create(lc.Spec.Linux.CgroupsPath, res)
	if err != nil {
		return 0, false, err
	}
	ooms := cg.OOMKills()
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, false, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	lw := store.NewLogWriter(logf)

	cfg := &container.Config{
		Spec:          lc.Spec,
		RootMount:     lc.Root,
		MountDir:      st.Root,
		FallbackArgs:  lc.Fallback,
		Reaper:        lc.Reaper,
		CgroupNSRoot:  parent,
		Cgroup:        cg,
		DieWithParent: true,
	}
	netw, err := newContainerNet(st, id, lc.Spec.Hostname)
	if err != nil {
		return 0, false, err
	}
	if netw != nil {
		cfg.Prestart = netw.prestart
	}
	var tty *ttySession
	if lc.Spec.Process.Terminal {
		tty = newTTY(a.stdin)
		cfg.Console = tty.attach
	} else {
		cfg.Stdout = teeWriter(a.stdout, lw.Stream(store.Stdout))
		cfg.Stderr = teeWriter(a.stderr, lw.Stream(store.Stderr))
		if a.interactive {
			cfg.Stdin = a.stdin
		}
	}

	// Signals that arrive while starting are held and passed on after.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGWINCH)
	defer signal.Stop(sigs)

	p, err := container.Start(cfg)
	if err != nil {
		_ = netw.teardown()
		return 0, false, err
	}
	started = true
	start, _ := container.StartTime(p.Pid)
	if err := updateContainer(st, id, func(r *store.Container) {
		r.State, r.Pid, r.StartTime, r.MonitorPid = store.StateRunning, p.Pid, start, os.Getpid()
		r.Started, r.Finished, r.OOMKilled = time.Now().UTC(), time.Time{}, false
		r.IP = netw.ip()
	}); err != nil {
		_ = p.Signal(syscall.SIGKILL)
		_, _ = p.Wait()
		_ = netw.teardown()
		return 0, true, err
	}
	notify(nil)

	if tty != nil {
		// The pty's output is the container's stdout: to the terminal and
		// the log. Stdin goes the other way when asked for.
		tty.pump(a.stdin, teeWriter(a.stdout, lw.Stream(store.Stdout)), a.interactive)
		defer tty.close()
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
	code, werr := p.Wait()
	close(done)
	if nerr := netw.release(); werr == nil {
		werr = nerr
	}
	if tty != nil {
		// Output still in the pty is read until the slave's last holder
		// is gone; the wait above ended the container's.
		waitCopies(&tty.copies, time.Second)
	}
	oom := cg.OOMKills() > ooms
	c, _ := st.GetContainer(id)
	_ = updateContainer(st, id, func(r *store.Container) {
		r.State, r.Pid, r.ExitCode, r.Finished, r.OOMKilled = store.StateExited, 0, code, time.Now().UTC(), oom
		r.IP = ""
	})
	if werr != nil {
		return code, true, werr
	}
	if c != nil && c.AutoRemove {
		if cur, err := st.GetContainer(id); err == nil {
			if err := destroyContainer(st, cur); err != nil {
				return code, true, err
			}
		}
	}
	return code, true, nil
}

func waitCopies(wg *sync.WaitGroup, d time.Duration) {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// teeWriter copies to the terminal, when there is one, and the log. A
// closed terminal must not stop the container: it keeps logging.
func teeWriter(term io.Writer, log io.Writer) io.Writer {
	if term == nil {
		return log
	}
	return &tee{term: term, log: log}
}

type tee struct {
	term, log io.Writer
}

func (t *tee) Write(p []byte) (int, error) {
	if _, err := t.log.Write(p); err != nil {
		return 0, err
	}
	_, _ = t.term.Write(p)
	return len(p), nil
}

// destroyFailed removes a container whose first start failed, so bad
// input leaves nothing.
func destroyFailed(st *store.Store, id string) {
	if c, err := st.GetContainer(id); err == nil {
		_ = destroyContainer(st, c)
	}
}

package applets

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/store"
	"golang.org/x/sys/unix"
)

func init() {
	register(&Applet{Name: "start", Help: "Start a stopped container:", Usage: "[-a] <container_id>", Order: 101, Run: start})
	register(&Applet{Name: "stop", Help: "Stop a container (TERM, then KILL):", Usage: "[-t secs] <container_id>", Order: 102, Run: stop})
	register(&Applet{Name: "restart", Help: "Restart a container:", Usage: "[-t secs] <container_id>", Order: 103, Run: restart})
	register(&Applet{Name: "kill", Help: "Send a signal to a container:", Usage: "[-s signal] <container_id>", Order: 104, Run: kill})
	register(&Applet{Name: "wait", Help: "Wait for a container and print its exit status:", Usage: "<container_id>", Order: 105, Run: wait})
	register(&Applet{Name: "inspect", Help: "Print a container's or image's record as JSON:", Usage: "<id>", Order: 106, Run: inspect})
}

// lookup resolves a container reference and reads its record, with the
// script's message for an unknown one.
func lookup(st *store.Store, ref string) (*store.Container, error) {
	id, err := st.ResolveContainer(ref)
	if errors.Is(err, store.ErrAmbiguous) {
		return nil, fmt.Errorf("%q matches more than one container", ref)
	}
	if err != nil {
		return nil, noContainer(ref)
	}
	c, err := st.GetContainer(id)
	if err != nil {
		return nil, noContainer(ref)
	}
	return c, nil
}

func start(e *Env, args []string) error {
	o, rest, err := parseOpts("start", args, []optDef{{[]string{"a", "attach"}, optBool}, {[]string{"i", "interactive"}, optBool}})
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return errors.New("usage: bocker start [-a] <container_id>...")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	for _, ref := range rest {
		c, err := lookup(st, ref)
		if err != nil {
			return err
		}
		if running(st, c) {
			return fmt.Errorf("start: container %s is already running", c.ID)
		}
		if c.State == store.StateCreated && c.MonitorPid != 0 && processAlive(c.MonitorPid) {
			return fmt.Errorf("start: container %s is being started", c.ID)
		}
		lc, err := readLaunchConfig(st, c.ID)
		if err != nil {
			return err
		}
		if o.bools["a"] {
			code, _, err := launchContainer(st, c.ID, lc, &attach{
				stdin: e.Stdin, stdout: e.Stdout, stderr: e.Stderr, interactive: o.bools["i"],
			}, nil)
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			continue
		}
		if err := updateContainer(st, c.ID, func(r *store.Container) { r.Detached = true }); err != nil {
			return err
		}
		if err := spawnMonitor(st, c.ID); err != nil {
			return err
		}
		fmt.Fprintln(e.Stdout, c.ID)
	}
	return nil
}

func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func stopOpts(applet string, args []string) (time.Duration, []string, error) {
	o, rest, err := parseOpts(applet, args, []optDef{{[]string{"t", "time", "timeout"}, optValue}})
	if err != nil {
		return 0, nil, err
	}
	timeout := 10 * time.Second
	if v, ok := o.vals["t"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, nil, fmt.Errorf("%s: -t %q: expected whole seconds", applet, v)
		}
		timeout = time.Duration(n) * time.Second
	}
	if len(rest) == 0 {
		return 0, nil, fmt.Errorf("usage: bocker %s [-t secs] <container_id>...", applet)
	}
	return timeout, rest, nil
}

func stop(e *Env, args []string) error {
	timeout, rest, err := stopOpts("stop", args)
	if err != nil {
		return err
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	for _, ref := range rest {
		c, err := lookup(st, ref)
		if err != nil {
			return err
		}
		if err := stopContainer(st, c, timeout); err != nil {
			return err
		}
		fmt.Fprintln(e.Stdout, c.ID)
	}
	return nil
}

// stopContainer sends TERM to the container's PID 1 and KILL when it has
// not ended after timeout, then waits for its monitor to record the end.
func stopContainer(st *store.Store, c *store.Container, timeout time.Duration) error {
	if !running(st, c) {
		return nil
	}
	_ = syscall.Kill(c.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for container.Alive(c.Pid, c.StartTime) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if container.Alive(c.Pid, c.StartTime) {
		if err := killWait(c); err != nil {
			return err
		}
	}
	return waitRecorded(st, c.ID)
}

// waitRecorded waits for the bocker that watches a container to write
// its exit status; a dead watcher's container is marked by running().
func waitRecorded(st *store.Store, id string) error {
	for i := 0; ; i++ {
		c, err := st.GetContainer(id)
		if err != nil {
			return nil // removed meanwhile (--rm)
		}
		if c.State == store.StateExited || !running(st, c) && (c.MonitorPid == 0 || !processAlive(c.MonitorPid)) {
			return nil
		}
		if i > 500 {
			return fmt.Errorf("container %s: its exit was not recorded", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func restart(e *Env, args []string) error {
	timeout, rest, err := stopOpts("restart", args)
	if err != nil {
		return err
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	for _, ref := range rest {
		c, err := lookup(st, ref)
		if err != nil {
			return err
		}
		if err := stopContainer(st, c, timeout); err != nil {
			return err
		}
		if err := start(&Env{Stdout: e.Stdout, Stderr: e.Stderr, Stdin: e.Stdin, root: e.root, st: st}, []string{c.ID}); err != nil {
			return err
		}
	}
	return nil
}

// parseSignal takes a number, NAME or SIGNAME.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

func kill(e *Env, args []string) error {
	o, rest, err := parseOpts("kill", args, []optDef{{[]string{"s", "signal"}, optValue}})
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return errors.New("usage: bocker kill [-s signal] <container_id>...")
	}
	sig := syscall.SIGKILL
	if v, ok := o.vals["s"]; ok {
		if sig, err = parseSignal(v); err != nil {
			return fmt.Errorf("kill: %w", err)
		}
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	for _, ref := range rest {
		c, err := lookup(st, ref)
		if err != nil {
			return err
		}
		if !running(st, c) {
			return notRunning(ref)
		}
		if err := syscall.Kill(c.Pid, sig); err != nil {
			return fmt.Errorf("kill %s: %w", c.ID, err)
		}
		fmt.Fprintln(e.Stdout, c.ID)
	}
	return nil
}

func wait(e *Env, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: bocker wait <container_id>...")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	code := 0
	for _, ref := range args {
		c, err := lookup(st, ref)
		if err != nil {
			return err
		}
		for running(st, c) {
			time.Sleep(20 * time.Millisecond)
			if c, err = st.GetContainer(c.ID); err != nil {
				return noContainer(ref)
			}
		}
		if err := waitRecorded(st, c.ID); err != nil {
			return err
		}
		if cur, err := st.GetContainer(c.ID); err == nil {
			c = cur
		}
		code = c.ExitCode
		fmt.Fprintln(e.Stdout, code)
	}
	if code != 0 {
		if code < 0 {
			code = 255
		}
		return &ExitError{Code: code}
	}
	return nil
}

func inspect(e *Env, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: bocker inspect <container_id or image_id>...")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	var out []any
	for _, ref := range args {
		if !strings.HasPrefix(ref, "img_") {
			if c, err := lookup(st, ref); err == nil {
				running(st, c)
				out = append(out, struct {
					*store.Container
					Status string `json:"status"`
				}{c, status(c)})
				continue
			}
		}
		if id, err := st.ResolveImage(ref); err == nil {
			img, err := st.GetImage(id)
			if err != nil {
				return noImage(ref)
			}
			out = append(out, img)
			continue
		}
		if strings.HasPrefix(ref, "img_") {
			return noImage(ref)
		}
		return noContainer(ref)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%s\n", b)
	return nil
}

// status is the state as Docker words it.
func status(c *store.Container) string {
	switch c.State {
	case store.StateRunning:
		return "running"
	case store.StateCreated:
		return "created"
	}
	s := fmt.Sprintf("exited (%d)", c.ExitCode)
	if c.OOMKilled {
		s += " oom-killed"
	}
	return s
}

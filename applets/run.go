package applets

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bocker/bocker/cgroup"
	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/store"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	register(&Applet{Name: "run", Help: "Create a container:", Usage: "<image_id> <command>", Order: 6, Run: run})
}

// cgroupParent holds every container's cgroup; each container's cgroup
// namespace is rooted here, so /proc/1/cgroup inside reads /ps_<id>, the
// directory under /sys/fs/cgroup/<controller>/bocker/ on the host.
const cgroupParent = "/bocker"

// limits are the resource settings, from BOCKER_* variables (or the
// global --mem_limit=... options that set them).
type limits struct {
	memBytes int64
	shares   uint64
	pids     int64
}

func envInt(name string, def int64) (int64, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a whole number", name, v)
	}
	return n, nil
}

func readLimits() (limits, error) {
	mem, err := envInt("BOCKER_MEM_LIMIT", 512)
	if err != nil {
		return limits{}, err
	}
	// Below a few MB the container cannot even start its init.
	if mem < 7 || mem > 1<<40 {
		return limits{}, fmt.Errorf("BOCKER_MEM_LIMIT=%d: memory limit must be at least 7 (MB)", mem)
	}
	shares, err := envInt("BOCKER_CPU_SHARE", 512)
	if err != nil {
		return limits{}, err
	}
	if shares < 2 || shares > 262144 {
		return limits{}, fmt.Errorf("BOCKER_CPU_SHARE=%d: cpu shares must be between 2 and 262144", shares)
	}
	pids, err := envInt("BOCKER_PIDS_LIMIT", 2048)
	if err != nil {
		return limits{}, err
	}
	if pids < 1 {
		return limits{}, fmt.Errorf("BOCKER_PIDS_LIMIT=%d: pids limit must be positive", pids)
	}
	return limits{memBytes: mem * 1000 * 1000, shares: uint64(shares), pids: pids}, nil
}

func (l limits) resources() *specs.LinuxResources {
	mem := l.memBytes
	shares := l.shares
	pids := l.pids
	return &specs.LinuxResources{
		Devices: container.DefaultDeviceRules(),
		Memory:  &specs.LinuxMemory{Limit: &mem},
		CPU:     &specs.LinuxCPU{Shares: &shares},
		Pids:    &specs.LinuxPids{Limit: &pids},
	}
}

func run(e *Env, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// flag stops at the first non-flag: the image id. Everything after it
	// is the command, as in the script.
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if fs.NArg() < 1 {
		return errors.New("usage: bocker run <image_id> <command>")
	}
	ref, words := fs.Arg(0), fs.Args()[1:]
	lim, err := readLimits()
	if err != nil {
		return err
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	imgID, err := st.ResolveImage(ref)
	if err != nil {
		return noImage(ref)
	}
	img, err := st.GetImage(imgID)
	if err != nil {
		return noImage(ref)
	}
	argv, fallback, command, err := commandLine(img, words)
	if err != nil {
		return err
	}
	c := &store.Container{
		ID:      store.NewID("ps_"),
		Image:   img.ID,
		Source:  img.Source,
		Command: command,
		Layers:  append([]string(nil), img.Layers...),
		Config:  img.Config,
		State:   store.StateCreated,
		Created: time.Now().UTC(),
	}
	c.Cgroup = cgroupParent + "/" + c.ID
	c.Env = containerEnv(img.Config.Env)
	c.Cwd = img.Config.WorkingDir
	if c.Cwd == "" {
		c.Cwd = "/"
	}
	return runContainer(e, st, c, argv, fallback, lim)
}

// commandLine turns the script's words into argv: joined and run by
// /bin/sh -c, or the words themselves when the image has no shell, or
// the image's Entrypoint and Cmd when there are no words.
func commandLine(img *store.Image, words []string) (argv, fallback []string, command string, err error) {
	if len(words) == 0 {
		argv = append(append([]string(nil), img.Config.Entrypoint...), img.Config.Cmd...)
		if len(argv) == 0 {
			return nil, nil, "", fmt.Errorf("run: no command given and image %s has no default command", img.ID)
		}
		return argv, nil, strings.Join(argv, " "), nil
	}
	command = strings.Join(words, " ")
	if strings.TrimSpace(command) == "" {
		return nil, nil, "", errors.New("run: empty command")
	}
	if len(img.Config.Entrypoint) > 0 {
		argv = append(append([]string(nil), img.Config.Entrypoint...), words...)
		return argv, nil, command, nil
	}
	return []string{"/bin/sh", "-c", command}, words, command, nil
}

func containerEnv(imageEnv []string) []string {
	env := append([]string(nil), imageEnv...)
	hasPath, hasHome := false, false
	for _, kv := range env {
		hasPath = hasPath || strings.HasPrefix(kv, "PATH=")
		hasHome = hasHome || strings.HasPrefix(kv, "HOME=")
	}
	if !hasPath {
		env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	if !hasHome {
		env = append(env, "HOME=/root")
	}
	return env
}

// buildSpec is step 1 of a run: the image and the record as an OCI spec.
func buildSpec(st *store.Store, c *store.Container, argv []string, res *specs.LinuxResources) *specs.Spec {
	dir := st.ContainerDir(c.ID)
	s := container.DefaultSpec()
	s.Root.Path = filepath.Join(dir, "rootfs")
	s.Hostname = c.ID
	s.Process.Args = argv
	s.Process.Env = c.Env
	s.Process.Cwd = c.Cwd
	s.Linux.CgroupsPath = c.Cgroup
	s.Linux.Resources = res
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(dir, f),
			Options: []string{"rbind", "rprivate"},
		})
	}
	return s
}

// rootMount is the overlay of the container's layers, as data: mounted by
// the init inside the container's own mount namespace, so no mount of it
// exists on the host and a crash leaves none behind. Lowerdirs are
// relative to the store root to keep the option string short.
func rootMount(st *store.Store, c *store.Container) *specs.Mount {
	var lower []string
	for i := len(c.Layers) - 1; i >= 0; i-- {
		lower = append(lower, "layers/"+store.LayerName(c.Layers[i]))
	}
	rel := "containers/" + c.ID
	return &specs.Mount{
		Type: "overlay", Source: "overlay",
		Options: []string{
			"lowerdir=" + strings.Join(lower, ":"),
			"upperdir=" + rel + "/upper",
			"workdir=" + rel + "/work",
		},
	}
}

func writeContainerFiles(dir, id string) error {
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = nil
	}
	files := map[string]string{
		"hostname":    id + "\n",
		"hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + id + "\n",
		"resolv.conf": string(resolv),
		"log":         "",
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if name == "log" {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// logWriter copies one stream to the terminal and the container's log as
// it comes; the mutex keeps stdout and stderr lines whole in the log.
type logWriter struct {
	mu   *sync.Mutex
	term io.Writer
	log  *os.File
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	_, lerr := w.log.Write(p)
	w.mu.Unlock()
	n, err := w.term.Write(p)
	if err != nil {
		// A closed terminal must not kill the container: keep logging.
		return len(p), nil
	}
	if lerr != nil {
		return n, lerr
	}
	return n, nil
}

func runContainer(e *Env, st *store.Store, c *store.Container, argv, fallback []string, lim limits) (err error) {
	dir := st.ContainerDir(c.ID)
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		unlock()
		return fmt.Errorf("create container dir: %w", err)
	}
	var cg *cgroup.Cgroup
	started := false
	// Bad input or a failed start leaves nothing: no record, no cgroup.
	// Once the command ran, the container stays until rm, whatever its
	// status.
	defer func() {
		if err != nil && !started {
			if cg != nil {
				_ = cg.Kill()
				_ = cg.Delete()
			}
			_ = st.DeleteContainer(c.ID)
		}
	}()
	if err := writeContainerFiles(dir, c.ID); err != nil {
		unlock()
		return err
	}
	err = st.PutContainer(c)
	unlock()
	if err != nil {
		return err
	}

	res := lim.resources()
	parent, err := cgroup.Create(cgroupParent, &specs.LinuxResources{})
	if err != nil {
		return err
	}
	cg, err = cgroup.Create(c.Cgroup, res)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	mu := &sync.Mutex{}
	spec := buildSpec(st, c, argv, res)

	// Signals that arrive while starting are held and passed on after.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	p, err := container.Start(&container.Config{
		Spec:          spec,
		RootMount:     rootMount(st, c),
		MountDir:      st.Root,
		FallbackArgs:  fallback,
		CgroupNSRoot:  parent,
		Cgroup:        cg,
		Stdin:         e.Stdin,
		Stdout:        &logWriter{mu: mu, term: e.Stdout, log: logf},
		Stderr:        &logWriter{mu: mu, term: e.Stderr, log: logf},
		DieWithParent: true,
	})
	if err != nil {
		return err
	}
	started = true
	start, _ := container.StartTime(p.Pid)
	if err := updateContainer(st, c.ID, func(r *store.Container) {
		r.State, r.Pid, r.StartTime = store.StateRunning, p.Pid, start
	}); err != nil {
		_ = p.Signal(syscall.SIGKILL)
		_, _ = p.Wait()
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
	code, werr := p.Wait()
	close(done)
	_ = updateContainer(st, c.ID, func(r *store.Container) {
		r.State, r.Pid, r.ExitCode, r.Finished = store.StateExited, 0, code, time.Now().UTC()
	})
	if werr != nil {
		return werr
	}
	if os.Getenv("BOCKER_EXIT_CODE") == "1" && code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// updateContainer changes a record under the lock; a record removed
// meanwhile (rm -f) stays removed.
func updateContainer(st *store.Store, id string, f func(*store.Container)) error {
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := st.GetContainer(id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	f(c)
	return st.PutContainer(c)
}

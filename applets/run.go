package applets

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/store"
	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	register(&Applet{Name: "run", Help: "Create a container:", Usage: "<image_id> <command>", Order: 6, Run: runApplet})
}

// runApplet gives bocker's own failures Docker's exit status 125 when
// the run uses Docker's options, so a caller can tell them from the
// command's 126, 127 and 128+N. The script's plain form keeps the
// script's 1, and its messages always do.
func runApplet(e *Env, args []string) error {
	err := run(e, args)
	var se *ScriptError
	var ee *ExitError
	var coded interface{ ExitCode() int }
	if err == nil || errors.As(err, &se) || errors.As(err, &ee) || errors.As(err, &coded) {
		return err
	}
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return err
	}
	return &ownError{err}
}

type ownError struct{ err error }

func (e *ownError) Error() string { return e.err.Error() }
func (e *ownError) Unwrap() error { return e.err }
func (e *ownError) ExitCode() int { return 125 }

// cgroupParent holds every container's cgroup; each container's cgroup
// namespace is rooted here, so /proc/1/cgroup inside reads /ps_<id>, the
// directory under /sys/fs/cgroup/<controller>/bocker/ on the host.
const cgroupParent = "/bocker"

var runOptDefs = []optDef{
	{[]string{"d", "detach"}, optBool},
	{[]string{"i", "interactive"}, optBool},
	{[]string{"t", "tty"}, optBool},
	{[]string{"rm"}, optBool},
	{[]string{"init"}, optBool},
	{[]string{"e", "env"}, optList},
	{[]string{"env-file"}, optList},
	{[]string{"w", "workdir"}, optValue},
	{[]string{"u", "user"}, optValue},
	{[]string{"h", "hostname"}, optValue},
	{[]string{"name"}, optValue},
	{[]string{"v", "volume"}, optList},
	{[]string{"tmpfs"}, optList},
	{[]string{"m", "memory"}, optValue},
	{[]string{"cpus"}, optValue},
	{[]string{"cpuset-cpus"}, optValue},
	{[]string{"pids-limit"}, optValue},
	{[]string{"p", "publish"}, optList},
	{[]string{"network", "net"}, optValue},
	{[]string{"security-opt"}, optList},
}

// limits are the resource settings, from BOCKER_* variables (or the
// global --mem_limit=... options that set them) and run's own options.
type limits struct {
	memBytes int64
	shares   uint64
	pids     int64
	quota    int64 // --cpus, as CFS quota per 100 ms period; 0 = none
	cpuset   string
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

// minMemory is the least a container's init can start in.
const minMemory = 7 * 1000 * 1000

func readLimits() (limits, error) {
	mem, err := envInt("BOCKER_MEM_LIMIT", 512)
	if err != nil {
		return limits{}, err
	}
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

var cpusetRe = lazyRegexp(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// applyOpts lets -m, --cpus, --cpuset-cpus and --pids-limit override the
// script's variables.
func (l *limits) applyOpts(o *opts) error {
	if v, ok := o.vals["m"]; ok {
		n, err := units.RAMInBytes(v)
		if err != nil {
			return fmt.Errorf("run: -m %q: not a size (use e.g. 256m or 1g)", v)
		}
		if n < minMemory {
			return fmt.Errorf("run: -m %q: memory limit must be at least 7 MB", v)
		}
		l.memBytes = n
	}
	if v, ok := o.vals["cpus"]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1024 {
			return fmt.Errorf("run: --cpus %q: must be a positive number of CPUs", v)
		}
		l.quota = int64(f * 100000)
		if l.quota < 1000 {
			return fmt.Errorf("run: --cpus %q: at least 0.01", v)
		}
	}
	if v, ok := o.vals["cpuset-cpus"]; ok {
		if !cpusetRe().MatchString(v) {
			return fmt.Errorf("run: --cpuset-cpus %q: use a list like 0-2,4", v)
		}
		l.cpuset = v
	}
	if v, ok := o.vals["pids-limit"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("run: --pids-limit %q: must be a positive whole number", v)
		}
		l.pids = n
	}
	return nil
}

func (l limits) resources() *specs.LinuxResources {
	mem := l.memBytes
	shares := l.shares
	pids := l.pids
	r := &specs.LinuxResources{
		Devices: container.DefaultDeviceRules(),
		Memory:  &specs.LinuxMemory{Limit: &mem},
		CPU:     &specs.LinuxCPU{Shares: &shares},
		Pids:    &specs.LinuxPids{Limit: &pids},
	}
	if l.quota > 0 {
		q, p := l.quota, uint64(100000)
		r.CPU.Quota, r.CPU.Period = &q, &p
	}
	if l.cpuset != "" {
		r.CPU.Cpus = l.cpuset
	}
	return r
}

// runRequest is everything run decided before anything was created.
type runRequest struct {
	img      *store.Image
	argv     []string
	fallback []string
	command  string
	lim      limits
	env      []string
	cwd      string
	user     specs.User
	hostname string
	name     string
	mounts   []specs.Mount
	hostDirs []string // volume sources to create
	network  string
	ports    []string
	security security
	o        *opts
}

func run(e *Env, args []string) error {
	o, rest, err := parseOpts("run", args, runOptDefs)
	if err != nil {
		return err
	}
	if len(rest) < 1 {
		return errors.New("usage: bocker run [options] <image_id> <command>")
	}
	ref, words := rest[0], rest[1:]
	req := &runRequest{o: o}
	if req.lim, err = readLimits(); err != nil {
		return err
	}
	if err := req.lim.applyOpts(o); err != nil {
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
	req.img, err = st.GetImage(imgID)
	if err != nil {
		return noImage(ref)
	}
	if req.argv, req.fallback, req.command, err = commandLine(req.img, words); err != nil {
		return err
	}
	if err := req.parse(o); err != nil {
		return err
	}
	c, lc, err := createContainer(st, req)
	if err != nil {
		return err
	}
	if o.bools["d"] {
		if err := spawnMonitor(st, c.ID); err != nil {
			destroyFailed(st, c.ID)
			return err
		}
		fmt.Fprintln(e.Stdout, c.ID)
		return nil
	}
	code, started, err := launchContainer(st, c.ID, lc, &attach{
		stdin: e.Stdin, stdout: e.Stdout, stderr: e.Stderr, interactive: true,
	}, nil)
	if err != nil {
		if !started {
			destroyFailed(st, c.ID)
		}
		return err
	}
	if os.Getenv("BOCKER_EXIT_CODE") == "1" && code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

var hostnameRe = lazyRegexp(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62})$`)

// parse checks every option that describes the container; nothing is
// created until all of them are good.
func (r *runRequest) parse(o *opts) error {
	r.env = containerEnv(r.img.Config.Env)
	for _, f := range o.lists["env-file"] {
		kvs, err := readEnvFile(f)
		if err != nil {
			return err
		}
		r.env = setEnv(r.env, kvs...)
	}
	for _, kv := range o.lists["e"] {
		k, _, hasVal := strings.Cut(kv, "=")
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return fmt.Errorf("run: -e %q: expected NAME=value", kv)
		}
		if !hasVal {
			// Docker's -e NAME passes the variable from bocker's own environment.
			v, ok := os.LookupEnv(k)
			if !ok {
				continue
			}
			kv = k + "=" + v
		}
		r.env = setEnv(r.env, kv)
	}
	r.cwd = r.img.Config.WorkingDir
	if w, ok := o.vals["w"]; ok {
		if !filepath.IsAbs(w) {
			return fmt.Errorf("run: -w %q: the working directory must be an absolute path", w)
		}
		r.cwd = filepath.Clean(w)
	}
	if r.cwd == "" {
		r.cwd = "/"
	}
	u := r.img.Config.User
	if v, ok := o.vals["u"]; ok {
		u = v
	}
	var err error
	if r.user, err = parseUser("run", u); err != nil {
		return err
	}
	if h, ok := o.vals["h"]; ok {
		if !hostnameRe().MatchString(h) {
			return fmt.Errorf("run: --hostname %q: not a valid host name", h)
		}
		r.hostname = h
	}
	if n, ok := o.vals["name"]; ok {
		if !store.ValidName(n) || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "img_") {
			return fmt.Errorf("run: --name %q: use letters, digits, '_', '-' and '.' (not img_…)", n)
		}
		r.name = n
	}
	for _, v := range o.lists["v"] {
		m, src, err := parseVolume(v)
		if err != nil {
			return err
		}
		r.mounts = append(r.mounts, m)
		r.hostDirs = append(r.hostDirs, src)
	}
	for _, v := range o.lists["tmpfs"] {
		m, err := parseTmpfs(v)
		if err != nil {
			return err
		}
		r.mounts = append(r.mounts, m)
	}
	if err := r.parseNetwork(o); err != nil {
		return err
	}
	if r.security, err = parseSecurityOpts(o.lists["security-opt"]); err != nil {
		return err
	}
	if o.bools["t"] && o.bools["d"] && o.bools["i"] {
		return errors.New("run: -dit: attaching to a detached container later is not supported; use -d or -it")
	}
	return nil
}

func setEnv(env []string, kvs ...string) []string {
	for _, kv := range kvs {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, old := range env {
			if ok, _, _ := strings.Cut(old, "="); ok == k {
				env[i], replaced = kv, true
			}
		}
		if !replaced {
			env = append(env, kv)
		}
	}
	return env
}

func readEnvFile(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("run: --env-file: %w", err)
	}
	defer f.Close()
	var kvs []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, _, hasVal := strings.Cut(l, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("run: --env-file %s:%d: expected NAME=value", p, n)
		}
		if !hasVal {
			v, ok := os.LookupEnv(k)
			if !ok {
				continue
			}
			l = k + "=" + v
		}
		kvs = append(kvs, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("run: --env-file %s: %w", p, err)
	}
	return kvs, nil
}

// parseUser takes UID[:GID] (numbers) or a name, which the container's
// init looks up in the image's own /etc/passwd.
func parseUser(applet, u string) (specs.User, error) {
	if u == "" {
		return specs.User{}, nil
	}
	name, group, hasGroup := strings.Cut(u, ":")
	numeric := regexp.MustCompile(`^[0-9]+$`)
	userRe := regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	if name == "" || (hasGroup && group == "") {
		return specs.User{}, fmt.Errorf("%s: -u %q: expected UID[:GID] or a user name", applet, u)
	}
	for _, part := range []string{name, group} {
		if numeric.MatchString(part) {
			if _, err := strconv.ParseUint(part, 10, 32); err != nil {
				return specs.User{}, fmt.Errorf("%s: -u %q: %s is out of range for an id", applet, u, part)
			}
		} else if part != "" && !userRe.MatchString(part) {
			return specs.User{}, fmt.Errorf("%s: -u %q: not a user or group name", applet, u)
		}
	}
	if numeric.MatchString(name) && (!hasGroup || numeric.MatchString(group)) {
		uid, _ := strconv.ParseUint(name, 10, 32)
		usr := specs.User{UID: uint32(uid)}
		if hasGroup {
			gid, _ := strconv.ParseUint(group, 10, 32)
			usr.GID = uint32(gid)
		} else {
			// Resolved inside: the user's group from the image's passwd.
			usr.Username = name
		}
		return usr, nil
	}
	return specs.User{Username: u}, nil
}

func parseVolume(v string) (specs.Mount, string, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return specs.Mount{}, "", fmt.Errorf("run: -v %q: expected HOST:CONTAINER[:ro]", v)
	}
	src, dst := parts[0], parts[1]
	if !filepath.IsAbs(src) {
		return specs.Mount{}, "", fmt.Errorf("run: -v %q: the host path must be absolute (named volumes are not supported)", v)
	}
	if !filepath.IsAbs(dst) || filepath.Clean(dst) == "/" {
		return specs.Mount{}, "", fmt.Errorf("run: -v %q: the container path must be absolute and not /", v)
	}
	opts := []string{"rbind", "rprivate"}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			opts = append(opts, "ro")
		case "rw":
		default:
			return specs.Mount{}, "", fmt.Errorf("run: -v %q: the mode must be ro or rw", v)
		}
	}
	src = filepath.Clean(src)
	return specs.Mount{Destination: filepath.Clean(dst), Type: "bind", Source: src, Options: opts}, src, nil
}

var tmpfsOptRe = lazyRegexp(`^(size=[0-9]+[kmgKMG%]?|mode=[0-7]{3,4}|uid=[0-9]+|gid=[0-9]+|nr_inodes=[0-9]+[kmg]?|ro|rw|exec|noexec|suid|nosuid|dev|nodev)$`)

func parseTmpfs(v string) (specs.Mount, error) {
	dst, optStr, _ := strings.Cut(v, ":")
	if !filepath.IsAbs(dst) || filepath.Clean(dst) == "/" {
		return specs.Mount{}, fmt.Errorf("run: --tmpfs %q: the container path must be absolute and not /", v)
	}
	opts := []string{"nosuid", "nodev", "noexec"}
	if optStr != "" {
		for _, op := range strings.Split(optStr, ",") {
			if !tmpfsOptRe().MatchString(op) {
				return specs.Mount{}, fmt.Errorf("run: --tmpfs %q: unknown option %q", v, op)
			}
			opts = append(opts, op)
		}
	}
	return specs.Mount{Destination: filepath.Clean(dst), Type: "tmpfs", Source: "tmpfs", Options: opts}, nil
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

// createContainer is steps 1 and 2 of a run: the record, its directory
// and its launch configuration. Nothing runs yet.
func createContainer(st *store.Store, r *runRequest) (*store.Container, *launchConfig, error) {
	c := &store.Container{
		ID:         store.NewID("ps_"),
		Image:      r.img.ID,
		Source:     r.img.Source,
		Command:    r.command,
		Layers:     append([]string(nil), r.img.Layers...),
		Config:     r.img.Config,
		State:      store.StateCreated,
		Created:    time.Now().UTC(),
		Name:       r.name,
		Detached:   r.o.bools["d"],
		AutoRemove: r.o.bools["rm"],
		Network:    r.network,
		Ports:      r.ports,
		Env:        r.env,
		Cwd:        r.cwd,
	}
	c.Cgroup = cgroupParent + "/" + c.ID
	hostname := r.hostname
	if hostname == "" {
		hostname = c.ID
	}
	dir := st.ContainerDir(c.ID)
	spec := container.DefaultSpec()
	spec.Root.Path = filepath.Join(dir, "rootfs")
	spec.Hostname = hostname
	spec.Process.Args = r.argv
	spec.Process.Env = r.env
	spec.Process.Cwd = r.cwd
	spec.Process.User = r.user
	spec.Process.Terminal = r.o.bools["t"]
	if spec.Process.Terminal && !hasEnv(r.env, "TERM") {
		spec.Process.Env = append(spec.Process.Env, "TERM=xterm")
	}
	r.security.apply(spec)
	spec.Linux.CgroupsPath = c.Cgroup
	spec.Linux.Resources = r.lim.resources()
	if r.network == "host" {
		var ns []specs.LinuxNamespace
		for _, n := range spec.Linux.Namespaces {
			if n.Type != specs.NetworkNamespace {
				ns = append(ns, n)
			}
		}
		spec.Linux.Namespaces = ns
	}
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(dir, f),
			Options: []string{"rbind", "rprivate"},
		})
	}
	spec.Mounts = append(spec.Mounts, r.mounts...)
	lc := &launchConfig{
		Spec:        spec,
		Root:        rootMount(c),
		Fallback:    r.fallback,
		Reaper:      r.o.bools["init"],
		Interactive: r.o.bools["i"],
	}

	for _, d := range r.hostDirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, fmt.Errorf("run: create volume directory: %w", err)
		}
	}
	unlock, err := st.Lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if c.Name != "" {
		if err := st.ClaimName(c.Name, c.ID); err != nil {
			return nil, nil, fmt.Errorf("run: %w", err)
		}
	}
	fail := func(err error) (*store.Container, *launchConfig, error) {
		if c.Name != "" {
			st.ReleaseName(c.Name, c.ID)
		}
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fail(fmt.Errorf("create container dir: %w", err))
	}
	if err := writeContainerFiles(dir, hostname, r.network); err != nil {
		return fail(err)
	}
	if err := writeJSONFile(filepath.Join(dir, "launch.json"), lc); err != nil {
		return fail(err)
	}
	if err := st.PutContainer(c); err != nil {
		return fail(err)
	}
	return c, lc, nil
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// rootMount is the overlay of the container's layers, as data: mounted by
// the init inside the container's own mount namespace, so no mount of it
// exists on the host and a crash leaves none behind. Lowerdirs are
// relative to the store root to keep the option string short.
func rootMount(c *store.Container) *specs.Mount {
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

func writeContainerFiles(dir, hostname, network string) error {
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	resolv := containerResolv(network)
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	if network == "host" {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	}
	files := map[string]string{
		"hostname":    hostname + "\n",
		"hosts":       hosts,
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

// lazyRegexp compiles on first use: every run re-executes this binary for
// the container's init, and package-level compiles would cost each of
// those execs (a {0,62} repeat alone is dozens of instructions).
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

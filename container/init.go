package container

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/bocker/bocker/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The parent and the init child talk over two pipes: the child reads its
// config and the "go" byte from fd 3, and writes "ready" and, on failure,
// an error text to fd 4. fd 4 is close-on-exec, so a successful execve
// of the user's command shows as EOF there.
const (
	fdConfig = 3
	fdStatus = 4

	msgReady = 'R'
	msgGo    = 'G'
	msgError = 'E'
	// msgExecFail is msgError for a failed execve of the user's command:
	// one byte of exit status (126 or 127) precedes the text.
	msgExecFail = 'X'
)

// InitApplet and ExecApplet are the hidden argv[0]s the binary re-executes
// itself under; main dispatches them before anything else. They are not
// called "init": that is the script's applet that makes an image.
const (
	InitApplet = "bocker-ctr-init"
	ExecApplet = "bocker-ctr-exec"
	// ReaperApplet is run --init's PID 1: argv is [ReaperApplet, path, argv...].
	ReaperApplet = "bocker-ctr-reaper"
)

// initConfig is what a container's init needs beyond the spec.
type initConfig struct {
	Spec *specs.Spec `json:"spec"`
	// RootMount, when set, is mounted on Spec.Root.Path first (the
	// overlay), from MountDir so its lowerdirs can be short relative paths.
	RootMount *specs.Mount `json:"root_mount,omitempty"`
	MountDir  string       `json:"mount_dir,omitempty"`
	// FallbackArgs runs when Spec.Process.Args[0] does not exist in the
	// image: the script's words as argv for an image without /bin/sh.
	FallbackArgs []string `json:"fallback_args,omitempty"`
	// CgroupNS: unshare the cgroup namespace after the parent placed us
	// in the namespace's root cgroup.
	CgroupNS bool `json:"cgroup_ns,omitempty"`
	// Reaper runs the user's command under a small init of ours (the same
	// binary) that forwards signals and reaps orphans: run --init.
	Reaper bool `json:"reaper,omitempty"`
}

func writeMsg(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	if _, err := w.Write(append(n[:], data...)); err != nil {
		return err
	}
	return nil
}

func readMsg(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > 16<<20 {
		return fmt.Errorf("config of %d bytes is too large", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// fail reports err to the parent and exits; the parent prints it.
func fail(status *os.File, err error) {
	var ee *ExecError
	if errors.As(err, &ee) {
		_, _ = status.Write(append([]byte{msgExecFail, byte(ee.ExitCode())}, err.Error()...))
		os.Exit(1)
	}
	_, _ = status.Write(append([]byte{msgError}, err.Error()...))
	os.Exit(1)
}

// Init is the container's init: it runs in the new namespaces, builds the
// root and execs the user's command. It never returns.
func Init() {
	// Capabilities, the cgroup namespace and the final execve are per
	// thread: all of it must happen on this one.
	runtime.LockOSThread()
	cfgPipe := os.NewFile(fdConfig, "config")
	status := os.NewFile(fdStatus, "status")
	var cfg initConfig
	if err := readMsg(cfgPipe, &cfg); err != nil {
		fail(status, fmt.Errorf("read container config: %w", err))
	}
	if cfg.CgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			fail(status, fmt.Errorf("unshare cgroup namespace: %w", err))
		}
	}
	if _, err := status.Write([]byte{msgReady}); err != nil {
		os.Exit(1)
	}
	var b [1]byte
	if _, err := io.ReadFull(cfgPipe, b[:]); err != nil || b[0] != msgGo {
		os.Exit(1) // the parent gave up on us
	}
	cfgPipe.Close()
	if err := setupRoot(&cfg); err != nil {
		fail(status, err)
	}
	args := cfg.Spec.Process.Args
	if len(cfg.FallbackArgs) > 0 {
		if _, err := os.Stat(args[0]); err != nil {
			args = cfg.FallbackArgs
		}
	}
	var sc *specs.LinuxSeccomp
	if cfg.Spec.Linux != nil {
		sc = cfg.Spec.Linux.Seccomp
	}
	if err := finish(cfg.Spec.Process, args, cfg.Spec.Hostname, cfg.Reaper, sc); err != nil {
		fail(status, err)
	}
}

func setupRoot(cfg *initConfig) error {
	s := cfg.Spec
	prop := uintptr(unix.MS_PRIVATE | unix.MS_REC)
	if s.Linux != nil && s.Linux.RootfsPropagation != "" {
		if p, ok := propagationFlags[s.Linux.RootfsPropagation]; ok {
			prop = p | unix.MS_REC
		}
	}
	// Nothing we mount may propagate back to the host.
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	rootPath := s.Root.Path
	if m := cfg.RootMount; m != nil {
		if err := os.Chdir(cfg.MountDir); err != nil {
			return fmt.Errorf("enter %s: %w", cfg.MountDir, err)
		}
		flags, _, data := parseMountOptions(m.Options)
		if err := unix.Mount(m.Source, rootPath, m.Type, flags, data); err != nil {
			return fmt.Errorf("mount %s root on %s: %w", m.Type, rootPath, err)
		}
	} else if err := unix.Mount(rootPath, rootPath, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		// pivot_root needs the new root to be a mount point.
		return fmt.Errorf("bind root %s: %w", rootPath, err)
	}
	root, err := unix.Open(rootPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open root %s: %w", rootPath, err)
	}
	defer unix.Close(root)
	devMounted := false
	for _, m := range s.Mounts {
		if err := mountIn(root, m); err != nil {
			return err
		}
		if filepath.Clean(m.Destination) == "/dev" {
			devMounted = true
		}
	}
	if s.Linux != nil {
		for _, d := range s.Linux.Devices {
			if err := makeDevice(root, d); err != nil {
				return err
			}
		}
	}
	if devMounted {
		if err := makeDevSymlinks(root); err != nil {
			return err
		}
	}
	if err := pivotRoot(rootPath); err != nil {
		return err
	}
	if s.Linux != nil {
		if err := maskPaths(s.Linux.MaskedPaths); err != nil {
			return err
		}
		if err := readonlyPaths(s.Linux.ReadonlyPaths); err != nil {
			return err
		}
		for k, v := range s.Linux.Sysctl {
			p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(p, []byte(v), 0); err != nil {
				return fmt.Errorf("set sysctl %s: %w", k, err)
			}
		}
	}
	if s.Root.Readonly {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make root read-only: %w", err)
		}
	}
	if hasNamespace(s, specs.NetworkNamespace) {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	return nil
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return true
		}
	}
	return false
}

// pivotRoot swaps the root without a spare directory (runc's trick):
// pivot onto "." and then detach the old root stacked under it.
func pivotRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("enter root %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", root, err)
	}
	// The old root must not see our unmount (nor we its later mounts).
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("enter /: %w", err)
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// finish turns this thread into the user's process: hostname, working
// directory, user, capabilities, the seccomp filter sc (if any), then
// execve. Shared by run and exec.
func finish(p *specs.Process, args []string, hostname string, reaper bool, sc *specs.LinuxSeccomp) error {
	if p.Terminal {
		if err := setupConsole(); err != nil {
			return err
		}
		// Our own session with the pty as its controlling terminal, so
		// Ctrl-C and job control reach the command.
		if _, err := unix.Setsid(); err != nil {
			return fmt.Errorf("new session: %w", err)
		}
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
			return fmt.Errorf("set controlling terminal: %w", err)
		}
	}
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if len(args) == 0 {
		return errors.New("no command to run")
	}
	for _, r := range p.Rlimits {
		if err := setRlimit(r); err != nil {
			return err
		}
	}
	path, err := lookPath(args[0], p.Env)
	if err != nil {
		return err
	}
	if reaper {
		// /proc/self/exe still names this very program after pivot_root
		// (bocker-ctr's memfd, or bocker).
		args = append([]string{ReaperApplet, path}, args...)
		path = "/proc/self/exe"
	}
	if p.User.Username != "" {
		u, err := lookupUser(p.User.Username)
		if err != nil {
			return err
		}
		p.User = u
	}
	nonRoot := p.User.UID != 0
	if nonRoot {
		// The bounding set can only be dropped while we hold CAP_SETPCAP.
		if err := applyCapsOpt(p.Capabilities, true, false); err != nil {
			return err
		}
	}
	if sc != nil && !p.NoNewPrivileges {
		// Without no_new_privs installing a filter takes CAP_SYS_ADMIN:
		// load it while we still hold it (runc does the same). The filter
		// must then allow setgroups, setresuid, capset, prctl and execve,
		// as Docker's does.
		if err := seccomp.Load(sc, false); err != nil {
			return err
		}
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("enter working directory %s: %w", cwd, err)
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if err := applyCapsOpt(p.Capabilities, !nonRoot, !nonRoot); err != nil {
		return err
	}
	// Nothing of ours beyond stdio may reach the user's process; the
	// status pipe is already close-on-exec.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close inherited files: %w", err)
	}
	if sc != nil && p.NoNewPrivileges {
		// no_new_privs is set: load as late as possible, so that the
		// filter sees nothing of ours but execve.
		if err := seccomp.Load(sc, false); err != nil {
			return err
		}
	}
	if err := unix.Exec(path, args, p.Env); err != nil {
		return &ExecError{Cmd: args[0], Err: err}
	}
	return nil
}

// ExecError is a failed execve of the user's command; its text says
// whether the command was missing or not executable.
type ExecError struct {
	Cmd  string
	Err  error
	code int // set when the error crossed the status pipe as text
}

func (e *ExecError) Error() string {
	if e.Cmd == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("exec %s: %v", e.Cmd, e.Err)
}

// ExitCode is the shell's status for the failure: 127 when the command
// does not exist, 126 when it exists but cannot be executed.
func (e *ExecError) ExitCode() int {
	if e.code != 0 {
		return e.code
	}
	if errors.Is(e.Err, unix.ENOENT) || errors.Is(e.Err, errNotInPath) {
		return 127
	}
	return 126
}

var errNotInPath = errors.New("executable file not found in $PATH")

func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", &ExecError{Cmd: name, Err: unix.ENOENT}
		}
		return name, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &ExecError{Cmd: name, Err: errNotInPath}
}

func setUser(u specs.User) error {
	if u.UID == 0 && u.GID == 0 && len(u.AdditionalGids) == 0 {
		// Root stays root; setgroups to none keeps no host groups around.
		if err := unix.Setgroups(nil); err != nil {
			return fmt.Errorf("set groups: %w", err)
		}
		return nil
	}
	gids := make([]int, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		gids = append(gids, int(g))
	}
	if err := unix.Setgroups(gids); err != nil {
		return fmt.Errorf("set groups: %w", err)
	}
	// Keep the permitted set across setuid so applyCaps can still set it.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("set gid %d: %w", u.GID, err)
	}
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("set uid %d: %w", u.UID, err)
	}
	return nil
}

var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC,
	"RLIMIT_RSS": unix.RLIMIT_RSS, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING, "RLIMIT_STACK": unix.RLIMIT_STACK,
}

func setRlimit(r specs.POSIXRlimit) error {
	n, ok := rlimitNames[r.Type]
	if !ok {
		return fmt.Errorf("unknown rlimit %q", r.Type)
	}
	if err := unix.Setrlimit(n, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
		return fmt.Errorf("set %s: %w", r.Type, err)
	}
	return nil
}

// ExecInit is the child side of Exec: it already sits in the container's
// namespaces and cgroup; it reads the process and becomes it.
func ExecInit() {
	runtime.LockOSThread()
	cfgPipe := os.NewFile(fdConfig, "config")
	status := os.NewFile(fdStatus, "status")
	var m execMsg
	if err := readMsg(cfgPipe, &m); err != nil {
		fail(status, fmt.Errorf("read exec config: %w", err))
	}
	cfgPipe.Close()
	if m.Process == nil {
		fail(status, errors.New("exec config without a process"))
	}
	if err := finish(m.Process, m.Process.Args, "", false, m.Seccomp); err != nil {
		fail(status, err)
	}
}

// StartTime is the start time of pid in clock ticks since boot (field 22
// of /proc/PID/stat): with the pid it names one process, even after the
// pid is reused.
func StartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the process pid that started at start still runs.
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := StartTime(pid)
	return err == nil && st == start
}

package seccomp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A filter cannot be removed, so each test that loads one re-executes
// the test binary as a helper: TestMain runs the helper named by
// helperEnv instead of the tests, on its locked thread.
const helperEnv = "BOCKER_SECCOMP_HELPER"

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		runtime.LockOSThread()
		h, ok := helpers[name]
		if !ok {
			fmt.Println("no helper", name)
			os.Exit(3)
		}
		if err := h(); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// probe makes a raw system call on this thread and prints its errno
// ("0" for success) under name.
func probe(name string, nr uintptr, args ...uintptr) {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	fmt.Printf("%s %d\n", name, int(e))
}

func seccompStatus() (mode, nnp string, err error) {
	// thread-self: the filter is on this thread, not necessarily the leader.
	data, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return "", "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		switch k {
		case "Seccomp":
			mode = strings.TrimSpace(v)
		case "NoNewPrivs":
			nnp = strings.TrimSpace(v)
		}
	}
	return mode, nnp, nil
}

func allowAllBut(def specs.LinuxSeccompAction, but ...string) *specs.LinuxSeccomp {
	s := &specs.LinuxSeccomp{DefaultAction: def}
	var names []string
	for _, n := range nativeArches[0].syscalls {
		if !slices.Contains(but, n.name) {
			names = append(names, n.name)
		}
	}
	s.Syscalls = []specs.LinuxSyscall{{Names: names, Action: specs.ActAllow}}
	return s
}

// defaultProbes are calls Docker's profile decides on; unfiltered, none
// of them fails with EPERM (reboot does without CAP_SYS_BOOT).
func defaultProbes() {
	probe("getpid", unix.SYS_GETPID)
	var uts unix.Utsname
	probe("uname", unix.SYS_UNAME, uintptr(unsafe.Pointer(&uts)))
	probe("keyctl", unix.SYS_KEYCTL, 0, 0)
	probe("add_key", unix.SYS_ADD_KEY)
	probe("unshare", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	tgt, _ := unix.BytePtrFromString("/nonexistent-bocker-seccomp")
	probe("mount", unix.SYS_MOUNT, 0, uintptr(unsafe.Pointer(tgt)), 0, 0, 0)
	probe("reboot", unix.SYS_REBOOT, 0, 0, 0, 0) // a bad magic: EINVAL if it got through
	probe("clone3", unix.SYS_CLONE3, 0, 0)
	probe("personality(0xffffffff)", unix.SYS_PERSONALITY, 0xffffffff)
	probe("personality(0)", unix.SYS_PERSONALITY, 0)
	probe("personality(8)", unix.SYS_PERSONALITY, 8)
	probe("personality(ADDR_NO_RANDOMIZE)", unix.SYS_PERSONALITY, addrNoRandomize)
	probe("personality(0)", unix.SYS_PERSONALITY, 0)
}

var helpers = map[string]func() error{
	"unfiltered": func() error {
		defaultProbes()
		return nil
	},
	"default": func() error {
		if err := Load(Default(), true); err != nil {
			return err
		}
		mode, nnp, err := seccompStatus()
		if err != nil {
			return err
		}
		fmt.Println("Seccomp", mode)
		fmt.Println("NoNewPrivs", nnp)
		defaultProbes()
		return nil
	},
	"errno": func() error {
		// Everything but getcwd and getppid is allowed; getppid has its
		// own errno, getcwd gets the default one.
		s := allowAllBut(specs.ActErrno, "getcwd", "getppid")
		s.DefaultErrnoRet = uptr(uint(unix.EXDEV))
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENOTTY))})
		if err := Load(s, true); err != nil {
			return err
		}
		buf := make([]byte, 256)
		probe("getcwd", unix.SYS_GETCWD, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		probe("getppid", unix.SYS_GETPPID)
		probe("getpid", unix.SYS_GETPID)
		return nil
	},
	"actions": func() error {
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActLog},
			// No tracer: the kernel answers ENOSYS.
			{Names: []string{"getuid"}, Action: specs.ActTrace},
		}}
		if err := Load(s, true); err != nil {
			return err
		}
		probe("getppid", unix.SYS_GETPPID)
		probe("getuid", unix.SYS_GETUID)
		return nil
	},
	"kill-process": func() error {
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActKillProcess},
		}}
		if err := Load(s, true); err != nil {
			return err
		}
		probe("getppid", unix.SYS_GETPPID)
		return nil
	},
	// SCMP_ACT_KILL kills only the calling thread, which in a Go
	// process leaves the rest running: observe it after execve, in a
	// single-threaded uname(1).
	"kill-thread": func() error {
		s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"uname"}, Action: specs.ActKill},
		}}
		if err := Load(s, true); err != nil {
			return err
		}
		return unix.Exec("/bin/uname", []string{"uname"}, os.Environ())
	},
	"x32": func() error {
		if err := Load(Default(), true); err != nil {
			return err
		}
		probe("x32 getpid", x32Bit|unix.SYS_GETPID)
		return nil
	},
	"privileged": func() error {
		// As root the filter needs no no_new_privs: CAP_SYS_ADMIN will do.
		if err := Load(Default(), false); err != nil {
			return err
		}
		mode, nnp, err := seccompStatus()
		if err != nil {
			return err
		}
		fmt.Println("Seccomp", mode)
		fmt.Println("NoNewPrivs", nnp)
		return nil
	},
}

// helper runs the named helper; it returns its output as key → value
// and how it ended.
func helper(t *testing.T, name string) (map[string]string, *os.ProcessState) {
	t.Helper()
	needTables(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("helper %s: %v", name, err)
	}
	res := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			res[l[:i]] = l[i+1:]
		}
	}
	if e, ok := res["error"]; ok {
		t.Fatalf("helper %s: %s (%s)", name, e, out)
	}
	t.Logf("helper %s: %s %s", name, out, stderr.Bytes())
	return res, cmd.ProcessState
}

func errnoOf(e unix.Errno) string { return fmt.Sprint(int(e)) }

func expect(t *testing.T, res map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s: got %q, want %q", k, res[k], v)
		}
	}
}

func TestLoadDefault(t *testing.T) {
	res, st := helper(t, "default")
	if !st.Success() {
		t.Fatalf("helper: %v", st)
	}
	eperm := errnoOf(unix.EPERM)
	expect(t, res, map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1",
		"getpid": "0", "uname": "0",
		"keyctl": eperm, "add_key": eperm, "unshare": eperm, "mount": eperm, "reboot": eperm,
		"clone3":                  errnoOf(unix.ENOSYS),
		"personality(0xffffffff)": "0", "personality(0)": "0", "personality(8)": "0",
		"personality(ADDR_NO_RANDOMIZE)": eperm,
	})
}

// TestUnfiltered shows the probes of TestLoadDefault do not fail with
// EPERM of themselves.
func TestUnfiltered(t *testing.T) {
	res, st := helper(t, "unfiltered")
	if !st.Success() {
		t.Fatalf("helper: %v", st)
	}
	probes := []string{"keyctl", "add_key", "unshare", "mount", "clone3", "personality(ADDR_NO_RANDOMIZE)"}
	if os.Geteuid() == 0 {
		probes = append(probes, "reboot") // EPERM without CAP_SYS_BOOT
	}
	for _, k := range probes {
		if res[k] == "" || res[k] == errnoOf(unix.EPERM) || res[k] == errnoOf(unix.ENOSYS) {
			t.Errorf("unfiltered %s: errno %q", k, res[k])
		}
	}
}

func TestLoadErrno(t *testing.T) {
	res, st := helper(t, "errno")
	if !st.Success() {
		t.Fatalf("helper: %v", st)
	}
	expect(t, res, map[string]string{
		"getcwd": errnoOf(unix.EXDEV), "getppid": errnoOf(unix.ENOTTY), "getpid": "0",
	})
}

func TestLoadActions(t *testing.T) {
	res, st := helper(t, "actions")
	if !st.Success() {
		t.Fatalf("helper: %v", st)
	}
	expect(t, res, map[string]string{"getppid": "0", "getuid": errnoOf(unix.ENOSYS)})
}

func killedBySIGSYS(t *testing.T, st *os.ProcessState) {
	t.Helper()
	ws, ok := st.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("helper ended with %v, want killed by SIGSYS", st)
	}
}

func TestLoadKillProcess(t *testing.T) {
	res, st := helper(t, "kill-process")
	if _, ok := res["getppid"]; ok {
		t.Errorf("getppid returned: %v", res)
	}
	killedBySIGSYS(t, st)
}

func TestLoadKillThread(t *testing.T) {
	if _, err := os.Stat("/bin/uname"); err != nil {
		t.Skip("no /bin/uname to exec")
	}
	_, st := helper(t, "kill-thread")
	killedBySIGSYS(t, st)
}

func TestLoadX32(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("x32 is an x86_64 ABI")
	}
	res, st := helper(t, "x32")
	if _, ok := res["x32 getpid"]; ok {
		t.Errorf("x32 call returned: %v", res)
	}
	killedBySIGSYS(t, st)
}

func TestLoadPrivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: without no_new_privs a filter needs CAP_SYS_ADMIN")
	}
	res, st := helper(t, "privileged")
	if !st.Success() {
		t.Fatalf("helper: %v", st)
	}
	expect(t, res, map[string]string{"Seccomp": "2", "NoNewPrivs": "0"})
}

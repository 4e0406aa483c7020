package main

// End-to-end tests: the real static binary, a busybox image built by
// scripts/mkrootfs, real namespaces, mounts and cgroups. The privileged
// ones skip unless root; none of them fakes the kernel.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	bin     string // the bocker binary under test
	rootfs  string // busybox root filesystem from scripts/mkrootfs
	tmpBase string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	tmpBase, err = os.MkdirTemp("", "bocker-test.")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmpBase)
	bin = filepath.Join(tmpBase, "bocker")
	// As users build it: with the container helper embedded.
	build := exec.Command("scripts/build", bin)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build bocker: %v\n%s", err, out)
		return 1
	}
	if os.Geteuid() == 0 {
		rootfs = filepath.Join(tmpBase, "rootfs")
		if out, err := exec.Command("scripts/mkrootfs", rootfs).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "mkrootfs: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces, mounts and cgroups")
	}
}

// env is one BOCKER_ROOT with its own images and containers, removed
// (containers killed, cgroups deleted) when the test ends.
type env struct {
	t    *testing.T
	root string
	vars []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, root: t.TempDir()}
	t.Cleanup(e.cleanup)
	return e
}

type result struct {
	out, err string
	code     int
}

func (e *env) cmd(vars []string, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = append(append(os.Environ(), "BOCKER_ROOT="+e.root), e.vars...)
	c.Env = append(c.Env, vars...)
	return c
}

func (e *env) runEnv(vars []string, args ...string) result {
	e.t.Helper()
	c := e.cmd(vars, args...)
	var o, s bytes.Buffer
	c.Stdout, c.Stderr = &o, &s
	err := c.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("bocker %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{o.String(), s.String(), code}
}

func (e *env) bk(args ...string) result {
	e.t.Helper()
	return e.runEnv(nil, args...)
}

// ok runs bocker and fails the test unless it exits 0; it returns stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.bk(args...)
	if r.code != 0 {
		e.t.Fatalf("bocker %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.out, r.err)
	}
	return r.out
}

var createdRe = regexp.MustCompile(`^Created: (img_[0-9a-f]{32})\n$`)

func (e *env) image() string {
	e.t.Helper()
	out := e.ok("init", rootfs)
	m := createdRe.FindStringSubmatch(out)
	if m == nil {
		e.t.Fatalf("init printed %q, want Created: img_<id>", out)
	}
	return m[1]
}

// containers lists the ids ps prints, in its order.
func (e *env) containers() []string {
	e.t.Helper()
	lines := strings.Split(strings.TrimSuffix(e.ok("ps"), "\n"), "\n")
	if lines[0] != "CONTAINER_ID\t\tCOMMAND" {
		e.t.Fatalf("ps header %q", lines[0])
	}
	var ids []string
	for _, l := range lines[1:] {
		ids = append(ids, strings.SplitN(l, "\t\t", 2)[0])
	}
	return ids
}

// last is the newest container: the one a run just made.
func (e *env) last() string {
	e.t.Helper()
	ids := e.containers()
	if len(ids) == 0 {
		e.t.Fatal("no container in ps")
	}
	return e.newest(ids)
}

func (e *env) newest(ids []string) string {
	best, bestT := "", time.Time{}
	for _, id := range ids {
		var rec struct{ Created time.Time }
		b, err := os.ReadFile(filepath.Join(e.root, "containers", id, "record.json"))
		if err != nil {
			e.t.Fatalf("read record of %s: %v", id, err)
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			e.t.Fatal(err)
		}
		if best == "" || rec.Created.After(bestT) {
			best, bestT = id, rec.Created
		}
	}
	return best
}

func (e *env) cleanup() {
	if os.Geteuid() != 0 {
		return
	}
	r := e.bk("ps")
	for _, l := range strings.Split(r.out, "\n")[1:] {
		if id, _, ok := strings.Cut(l, "\t\t"); ok {
			if rr := e.bk("rm", "-f", id); rr.code != 0 {
				e.t.Errorf("cleanup rm -f %s: %s%s", id, rr.out, rr.err)
			}
			assertGone(e.t, id)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(e.root)) {
		e.t.Errorf("mount under %s left on the host", e.root)
	}
}

// cgroupDirs are the host directories of a container's cgroup.
func cgroupDirs(id string) []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup/bocker/" + id}
	}
	var ds []string
	for _, c := range []string{"memory", "cpu", "pids", "devices", "freezer"} {
		ds = append(ds, filepath.Join("/sys/fs/cgroup", c, "bocker", id))
	}
	return ds
}

func assertGone(t *testing.T, id string) {
	t.Helper()
	for _, d := range cgroupDirs(id) {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s left after rm", d)
		}
	}
}

// cgroupFile reads a limit the way a user on the host would.
func cgroupFile(t *testing.T, id, v1ctl, v1file, v2file string) string {
	t.Helper()
	p := filepath.Join("/sys/fs/cgroup", v1ctl, "bocker", id, v1file)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		p = filepath.Join("/sys/fs/cgroup/bocker", id, v2file)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// helpText is the bash script's help, character for character: scripts
// parse it.
var helpText = func() string {
	b, err := os.ReadFile("testdata/help.txt")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestHelp(t *testing.T) {
	e := &env{t: t, root: t.TempDir()}
	for _, args := range [][]string{nil, {"help"}} {
		if got := e.ok(args...); got != helpText {
			t.Errorf("bocker %v printed\n%s\nwant\n%s", args, got, helpText)
		}
	}
	r := e.bk("no-such-applet")
	if r.code != 1 || r.out != helpText {
		t.Errorf("unknown applet: exit %d, stdout %q; want 1 and the help", r.code, r.out)
	}
}

func TestLinksAndPlugins(t *testing.T) {
	e := &env{t: t, root: t.TempDir()}
	dir := t.TempDir()
	e.ok("install-links", dir)
	for _, a := range []string{"init", "run", "exec", "images", "ps", "logs", "commit", "rm", "help", "pull"} {
		if _, err := os.Lstat(filepath.Join(dir, "bocker-"+a)); err != nil {
			t.Errorf("install-links: %v", err)
		}
	}
	// Run twice: the links are replaced, not an error.
	e.ok("install-links", dir)
	c := exec.Command(filepath.Join(dir, "bocker-help"))
	if out, err := c.Output(); err != nil || string(out) != helpText {
		t.Errorf("bocker-help: %v %q", err, out)
	}
	c = exec.Command(filepath.Join(dir, "bocker-images"))
	c.Env = append(os.Environ(), "BOCKER_ROOT="+e.root)
	if out, err := c.Output(); err != nil || string(out) != "IMAGE_ID\t\tSOURCE\n" {
		t.Errorf("bocker-images: %v %q", err, out)
	}
	if r := e.bk("install-links", filepath.Join(dir, "missing")); r.code != 1 ||
		r.out != fmt.Sprintf("No directory named '%s' exists\n", filepath.Join(dir, "missing")) {
		t.Errorf("install-links into a missing dir: %+v", r)
	}

	// A plugin is any bocker-NAME on PATH that is not bocker itself.
	plug := filepath.Join(dir, "bocker-hello")
	script := "#!/bin/sh\necho \"hello $* mem=$BOCKER_MEM_LIMIT\"\n"
	if err := os.WriteFile(plug, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(dir, "bocker-loop")); err != nil {
		t.Fatal(err)
	}
	path := "PATH=" + dir + ":" + os.Getenv("PATH")
	r := e.runEnv([]string{path}, "--mem_limit=64", "hello", "a", "b")
	if r.code != 0 || r.out != "hello a b mem=64\n" {
		t.Errorf("plugin: %+v", r)
	}
	// bocker-loop is bocker: running it would recurse, so it is unknown.
	r = e.runEnv([]string{path}, "loop")
	if r.code != 1 || r.out != helpText {
		t.Errorf("self link as plugin: exit %d, %q", r.code, r.out)
	}
}

func TestScriptMessages(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	cases := []struct {
		args []string
		out  string
	}{
		{[]string{"run", "img_0123", "true"}, "No image named 'img_0123' exists\n"},
		{[]string{"run", "../x", "true"}, "No image named '../x' exists\n"},
		{[]string{"run", "/", "true"}, "No image named '/' exists\n"},
		{[]string{"rm", "img_nope"}, "No image named 'img_nope' exists\n"},
		{[]string{"rm", "ps_nope"}, "No container named 'ps_nope' exists\n"},
		{[]string{"rm", ".."}, "No container named '..' exists\n"},
		{[]string{"logs", "ps_nope"}, "No container named 'ps_nope' exists\n"},
		{[]string{"exec", "ps_nope", "true"}, "No container named 'ps_nope' exists\n"},
		{[]string{"commit", "ps_nope", img}, "No container named 'ps_nope' exists\n"},
		{[]string{"init", "/does/not/exist"}, "No directory named '/does/not/exist' exists\n"},
	}
	for _, c := range cases {
		r := e.bk(c.args...)
		if r.code != 1 || r.out != c.out {
			t.Errorf("bocker %q: exit %d stdout %q stderr %q; want 1 and %q", c.args, r.code, r.out, r.err, c.out)
		}
	}
	e.ok("run", img, "true")
	ctr := e.last()
	r := e.bk("exec", ctr, "true")
	if want := fmt.Sprintf("Container '%s' exists but is not running\n", ctr); r.code != 1 || r.out != want {
		t.Errorf("exec in a stopped container: %+v", r)
	}
}

func TestRunPsLogsRm(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	if got, want := e.ok("images"), fmt.Sprintf("IMAGE_ID\t\tSOURCE\n%s\t\t%s\n", img, rootfs); got != want {
		t.Errorf("images: %q, want %q", got, want)
	}
	r := e.bk("run", img, "echo", "hi;", "cat /etc/hostname; echo err >&2")
	if r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	ctr := e.last()
	if want := "hi\n" + ctr + "\n"; r.out != want {
		t.Errorf("run stdout %q, want %q", r.out, want)
	}
	if r.err != "err\n" {
		t.Errorf("run stderr %q", r.err)
	}
	if got, want := e.ok("ps"), fmt.Sprintf("CONTAINER_ID\t\tCOMMAND\n%s\t\techo hi; cat /etc/hostname; echo err >&2\n", ctr); got != want {
		t.Errorf("ps: %q, want %q", got, want)
	}
	if got := e.ok("logs", ctr); got != "hi\n"+ctr+"\nerr\n" {
		t.Errorf("logs: %q", got)
	}
	// The container's cgroup stays until rm, so limits can be read after.
	if got := cgroupFile(t, ctr, "pids", "pids.max", "pids.max"); got != "2048" {
		t.Errorf("pids.max %s", got)
	}
	if got := e.ok("rm", ctr); got != "Removed: "+ctr+"\n" {
		t.Errorf("rm: %q", got)
	}
	assertGone(t, ctr)
	if _, err := os.Stat(filepath.Join(e.root, "containers", ctr)); err == nil {
		t.Error("container directory left after rm")
	}
	if got := e.ok("ps"); got != "CONTAINER_ID\t\tCOMMAND\n" {
		t.Errorf("ps after rm: %q", got)
	}
	if got := e.ok("rm", img); got != "Removed: "+img+"\n" {
		t.Errorf("rm image: %q", got)
	}
	if got := e.ok("images"); got != "IMAGE_ID\t\tSOURCE\n" {
		t.Errorf("images after rm: %q", got)
	}
	// Nothing of the image remains: its one layer went with it.
	if ents, _ := os.ReadDir(filepath.Join(e.root, "layers")); len(ents) != 0 {
		t.Errorf("layers left after rm of the only image: %v", ents)
	}
}

func TestExitStatus(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	cases := []struct {
		vars []string
		args []string
		code int
	}{
		{nil, []string{"run", img, "exit 5"}, 0}, // the script's run exits 0
		{[]string{"BOCKER_EXIT_CODE=1"}, []string{"run", img, "exit 5"}, 5},
		{nil, []string{"--exit_code=1", "run", img, "sh -c 'kill -9 $$'; exit $?"}, 137},
		{nil, []string{"--exit_code=1", "run", img, "no-such-command"}, 127},
		{nil, []string{"--exit_code=1", "run", img, "true"}, 0},
	}
	for _, c := range cases {
		if r := e.runEnv(c.vars, c.args...); r.code != c.code {
			t.Errorf("%v bocker %q: exit %d, want %d (%s)", c.vars, c.args, r.code, c.code, r.err)
		}
	}
}

// A container killed from the host by signal N exits 128+N.
func TestKilledFromHost(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	c := e.cmd([]string{"BOCKER_EXIT_CODE=1"}, "run", img, "sleep 60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for i := 0; pid == 0; i++ {
		if ids := e.containers(); len(ids) == 1 {
			var rec struct{ Pid int }
			b, _ := os.ReadFile(filepath.Join(e.root, "containers", ids[0], "record.json"))
			json.Unmarshal(b, &rec)
			pid = rec.Pid
		}
		if i > 200 {
			t.Fatal("container never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	err := c.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 137 {
		t.Errorf("run of a container killed by SIGKILL: %v, want exit 137", err)
	}
}

func TestIsolation(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	script := strings.Join([]string{
		"echo pid=$$",
		"echo maxpid=$(ls -d /proc/[0-9]* | sed s,/proc/,, | sort -n | tail -n 1)",
		"grep CapEff /proc/self/status",
		"echo cg=$(grep -c ':/ps_' /proc/1/cgroup)",
		"echo masked=$(cat /proc/timer_list /proc/keys | wc -c)",
		"echo 1 > /proc/sys/kernel/domainname && echo sysctl-writable",
		"touch /sys/x 2>/dev/null && echo sys-writable",
		"mknod /dev/sda1 b 8 1 2>/dev/null; head -c1 /dev/sda1 >/dev/null 2>&1 && echo disk-readable",
		"echo written > /etc/motd",
		"echo root=$(awk '$2==\"/\"{print $3}' /proc/mounts)",
		"hostname",
	}, "; ")
	r := e.bk("run", img, script)
	if r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	ctr := e.last()
	for _, want := range []string{
		"pid=1\n",
		"CapEff:\t00000000a80425fb\n",
		"masked=0\n",
		"root=overlay\n",
		ctr + "\n",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	for _, bad := range []string{"sysctl-writable", "sys-writable", "disk-readable"} {
		if strings.Contains(r.out, bad) {
			t.Errorf("%s:\n%s", bad, r.out)
		}
	}
	// A new pid namespace: only the container's few processes exist.
	if m := regexp.MustCompile(`maxpid=(\d+)`).FindStringSubmatch(r.out); m == nil {
		t.Errorf("no pid list:\n%s", r.out)
	} else if n, _ := strconv.Atoi(m[1]); n > 20 {
		t.Errorf("container sees pid %d: not its own pid namespace", n)
	}
	// /proc/1/cgroup names the container's cgroup.
	if m := regexp.MustCompile(`cg=(\d+)`).FindStringSubmatch(r.out); m == nil || m[1] == "0" {
		t.Errorf("no :/ps_ line in /proc/1/cgroup:\n%s", r.out)
	}
	// The image is untouched by what a container wrote.
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/motd")); string(b) != "bocker busybox base\n" {
		t.Errorf("source directory changed: %q", b)
	}
	if got := e.ok("run", img, "cat /etc/motd"); got != "bocker busybox base\n" {
		t.Errorf("second container sees %q", got)
	}
	// The host's hostname is not the container's.
	if h, _ := os.Hostname(); strings.HasPrefix(h, "ps_") {
		t.Errorf("host hostname changed to %s", h)
	}
}

func TestCgroupLimits(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	r := e.runEnv([]string{"BOCKER_MEM_LIMIT=64", "BOCKER_CPU_SHARE=256", "BOCKER_PIDS_LIMIT=50"}, "run", img, "cat /proc/1/cgroup")
	if r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	ctr := e.last()
	if !strings.Contains(r.out, ":/"+ctr+"\n") {
		t.Errorf("/proc/1/cgroup does not name /%s:\n%s", ctr, r.out)
	}
	if got := cgroupFile(t, ctr, "memory", "memory.limit_in_bytes", "memory.max"); got != "64000000" && got != "63999360" && got != "63995904" {
		// v1 rounds to the page size: 64000000 is not a multiple of 4096.
		t.Errorf("memory limit %s, want 64000000 (to the page)", got)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		if got := cgroupFile(t, ctr, "cpu", "cpu.shares", ""); got != "256" {
			t.Errorf("cpu.shares %s", got)
		}
	}
	if got := cgroupFile(t, ctr, "pids", "pids.max", "pids.max"); got != "50" {
		t.Errorf("pids.max %s", got)
	}
	// The global option form sets the same variable.
	e.ok("--mem_limit=32", "run", img, "true")
	if got := cgroupFile(t, e.last(), "memory", "memory.limit_in_bytes", "memory.max"); got != "31997952" && got != "32000000" {
		t.Errorf("--mem_limit=32 gave %s", got)
	}
}

func TestLimitsEnforced(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	// dd fills a 64 MB buffer: four times the limit.
	r := e.runEnv([]string{"BOCKER_MEM_LIMIT=16", "BOCKER_EXIT_CODE=1"}, "run", img, "dd if=/dev/zero of=/dev/null bs=64M count=1")
	if r.code != 137 {
		t.Errorf("over the memory limit: exit %d, want 137 (killed)\n%s", r.code, r.err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		if got := cgroupFile(t, e.last(), "memory", "memory.oom_control", ""); !strings.Contains(got, "oom_kill 1") {
			t.Errorf("memory.oom_control: %s", got)
		}
	}
	// A fork bomb stops at the pids limit instead of taking the host.
	// The shell gives up when fork fails; the cgroup counted the refusals.
	e.runEnv([]string{"BOCKER_PIDS_LIMIT=20"}, "run", img, "for i in $(seq 40); do sleep 1 & done; wait")
	ev := cgroupFile(t, e.last(), "pids", "pids.events", "pids.events")
	if m := regexp.MustCompile(`max (\d+)`).FindStringSubmatch(ev); m == nil || m[1] == "0" {
		t.Errorf("no fork refused under a pids limit of 20: pids.events %q", ev)
	}
}

func TestExec(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	bg := e.cmd(nil, "run", img, "echo ready > /ready; export FOO=bar; sleep 60")
	var bgOut bytes.Buffer
	bg.Stdout, bg.Stderr = &bgOut, &bgOut
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- bg.Wait() }()
	defer func() {
		_ = bg.Process.Kill()
		<-waited
	}()
	var ctr string
	for i := 0; ; i++ {
		if ids := e.containers(); len(ids) == 1 {
			ctr = ids[0]
			if r := e.bk("exec", ctr, "cat", "/ready"); r.code == 0 {
				break
			}
		}
		if i > 200 {
			t.Fatalf("container never became ready: %s", bgOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := e.ok("exec", ctr, "ps", "aux")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "sh -c") && !strings.Contains(lines[1], "sleep") {
		t.Errorf("ps aux in the container:\n%s", out)
	}
	if !regexp.MustCompile(`^\s*1\s`).MatchString(lines[1]) {
		t.Errorf("first process is not PID 1:\n%s", out)
	}
	if got := e.ok("exec", ctr, "hostname"); got != ctr+"\n" {
		t.Errorf("exec hostname: %q", got)
	}
	if got := e.ok("exec", ctr, "cat", "/proc/self/cgroup"); !strings.Contains(got, ":/"+ctr+"\n") {
		t.Errorf("exec is not in the container's cgroup:\n%s", got)
	}
	if got := e.ok("exec", ctr, "grep", "CapEff", "/proc/self/status"); got != "CapEff:\t00000000a80425fb\n" {
		t.Errorf("exec capabilities: %q", got)
	}
	// argv, as nsenter got it in the script: no shell in between.
	if r := e.bk("exec", ctr, "sh", "-c", "exit 3"); r.code != 3 {
		t.Errorf("exec exit status %d, want 3", r.code)
	}
	if r := e.bk("exec", ctr, "no-such-command"); r.code != 127 || !strings.Contains(r.err, "no-such-command") {
		t.Errorf("exec of a missing command: %+v", r)
	}
	if r := e.bk("exec", ctr, "/etc/passwd"); r.code != 126 {
		t.Errorf("exec of a non-executable: %+v", r)
	}
	c := e.cmd(nil, "exec", ctr, "cat")
	c.Stdin = strings.NewReader("through stdin\n")
	if out, err := c.Output(); err != nil || string(out) != "through stdin\n" {
		t.Errorf("exec stdin: %v %q", err, out)
	}

	r := e.bk("rm", ctr)
	if r.code == 0 || !strings.Contains(r.err, "running") {
		t.Errorf("rm of a running container: %+v", r)
	}
	if got := e.ok("rm", "-f", ctr); got != "Removed: "+ctr+"\n" {
		t.Errorf("rm -f: %q", got)
	}
	select {
	case <-waited:
		waited <- nil
	case <-time.After(10 * time.Second):
		t.Error("run did not return after rm -f")
	}
	assertGone(t, ctr)
}

func TestCommit(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	e.ok("run", img, "echo data > /f; rm /etc/motd")
	ctr := e.last()
	if got, want := e.ok("commit", ctr, img), fmt.Sprintf("Removed: %s\nCreated: %s\n", img, img); got != want {
		t.Errorf("commit onto the image: %q, want %q", got, want)
	}
	if got := e.ok("run", img, "cat /f; ls /etc/motd 2>&1 >/dev/null | wc -l"); got != "data\n1\n" {
		t.Errorf("committed image: %q", got)
	}
	// No full copy: the image is the old layer and the container's upper.
	var rec struct{ Layers []string }
	b, err := os.ReadFile(filepath.Join(e.root, "images", img+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Layers) != 2 {
		t.Errorf("committed image has %d layers, want 2", len(rec.Layers))
	}
	if got := e.ok("commit", ctr, "img_new"); got != "Created: img_new\n" {
		t.Errorf("commit to a new name: %q", got)
	}
	if got := e.ok("run", "img_new", "cat /f"); got != "data\n" {
		t.Errorf("img_new: %q", got)
	}
	if r := e.bk("commit", ctr, "../evil"); r.code == 0 {
		t.Errorf("commit to ../evil succeeded: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(e.root, "evil.json")); err == nil {
		t.Error("commit wrote outside the images directory")
	}
}

func TestRemoveImageInUse(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	e.ok("run", img, "echo kept > /f")
	ctr := e.last()
	e.ok("rm", img)
	// The container still works: its layers are kept while it uses them.
	if got := e.ok("commit", ctr, "img_after"); got != "Created: img_after\n" {
		t.Errorf("commit after rm of its image: %q", got)
	}
	if got := e.ok("run", "img_after", "cat /f; cat /etc/motd"); got != "kept\nbocker busybox base\n" {
		t.Errorf("image from a container whose image was removed: %q", got)
	}
}

func TestBadInput(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	cases := []struct {
		vars []string
		args []string
		msg  string
	}{
		{nil, []string{"run", img}, "no command"},
		{nil, []string{"run", img, " "}, "empty command"},
		{nil, []string{"run"}, "usage"},
		{[]string{"BOCKER_MEM_LIMIT=abc"}, []string{"run", img, "true"}, "BOCKER_MEM_LIMIT"},
		{[]string{"BOCKER_MEM_LIMIT=1"}, []string{"run", img, "true"}, "BOCKER_MEM_LIMIT"},
		{[]string{"BOCKER_CPU_SHARE=-5"}, []string{"run", img, "true"}, "BOCKER_CPU_SHARE"},
		{[]string{"BOCKER_PIDS_LIMIT=0"}, []string{"run", img, "true"}, "BOCKER_PIDS_LIMIT"},
		{nil, []string{"init", file}, ""},
		{nil, []string{"exec"}, "usage"},
		{nil, []string{"rm"}, "usage"},
	}
	for _, c := range cases {
		r := e.runEnv(c.vars, c.args...)
		msg := r.out + r.err
		if r.code == 0 || !strings.Contains(msg, c.msg) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("%v bocker %q: exit %d, %q; want one line about %q", c.vars, c.args, r.code, msg, c.msg)
		}
	}
	if ids := e.containers(); len(ids) != 0 {
		t.Errorf("bad input left containers: %v", ids)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.root, "containers")); len(ents) != 0 {
		t.Errorf("bad input left container directories: %v", ents)
	}
	if got := e.ok("images"); strings.Count(got, "\n") != 2 {
		t.Errorf("bad input changed the images:\n%s", got)
	}
}

func TestImageWithoutShell(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	b, err := os.ReadFile(filepath.Join(rootfs, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755)
	img := createdRe.FindStringSubmatch(e.ok("init", dir))[1]
	if got := e.ok("run", img, "/bin/busybox", "echo", "no", "shell"); got != "no shell\n" {
		t.Errorf("run without /bin/sh: %q", got)
	}
}

func TestConcurrentRuns(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	const n = 8
	var wg sync.WaitGroup
	outs := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.cmd(nil, "run", img, "sleep 0.3; hostname")
			var o, s bytes.Buffer
			c.Stdout, c.Stderr = &o, &s
			err := c.Run()
			code := 0
			if err != nil {
				code = -1
			}
			outs[i] = result{o.String(), s.String(), code}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range outs {
		if r.code != 0 {
			t.Errorf("concurrent run failed: %+v", r)
		}
		seen[r.out] = true
	}
	if len(seen) != n || len(e.containers()) != n {
		t.Errorf("%d distinct hostnames and %d containers from %d runs", len(seen), len(e.containers()), n)
	}
}

// A bocker killed with SIGKILL mid-run takes its container with it, and
// rm then removes what is left: no mount, process or cgroup survives.
func TestKilledRun(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	c := e.cmd(nil, "run", img, "touch /started; sleep 60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var ctr string
	for i := 0; ; i++ {
		if ids := e.containers(); len(ids) == 1 {
			ctr = ids[0]
			if r := e.bk("exec", ctr, "ls", "/started"); r.code == 0 {
				break
			}
		}
		if i > 200 {
			t.Fatal("container never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	procs := cgroupFile(t, ctr, "pids", "cgroup.procs", "cgroup.procs")
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	for i := 0; cgroupFile(t, ctr, "pids", "cgroup.procs", "cgroup.procs") != ""; i++ {
		if i > 250 {
			t.Fatalf("container processes %s outlived bocker", procs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := e.bk("exec", ctr, "true"); !strings.Contains(r.out, "is not running") {
		t.Errorf("exec after the crash: %+v", r)
	}
	if got := e.ok("rm", ctr); got != "Removed: "+ctr+"\n" {
		t.Errorf("rm after the crash: %q", got)
	}
	assertGone(t, ctr)
}

func TestMounts(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	out := e.ok("run", img, "cat /proc/self/mountinfo; echo ---; ls -l /dev /dev/pts; echo ---; cat /etc/hostname /etc/hosts; ls /etc/resolv.conf; echo ---; ls /proc/1/fd; grep -E 'Cap(Inh|Amb)' /proc/1/status")
	ctr := e.last()
	parts := strings.Split(out, "---\n")
	if len(parts) != 4 {
		t.Fatalf("output:\n%s", out)
	}
	// mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS
	type mnt struct{ opts, fstype, super string }
	mounts := map[string]mnt{}
	for _, l := range strings.Split(strings.TrimSpace(parts[0]), "\n") {
		f := strings.Fields(l)
		i := 6
		for i < len(f) && f[i] != "-" {
			i++
		}
		if i+3 >= len(f)+1 {
			t.Fatalf("mountinfo line %q", l)
		}
		mounts[f[4]] = mnt{f[5], f[i+1], f[len(f)-1]}
	}
	want := []struct {
		dst, fstype, opt string
	}{
		{"/", "overlay", "rw"},
		{"/proc", "proc", "nosuid"},
		{"/sys", "sysfs", "ro"},
		{"/dev", "tmpfs", "nosuid"},
		{"/dev/pts", "devpts", "noexec"},
		{"/dev/shm", "tmpfs", "nodev"},
		{"/dev/mqueue", "mqueue", "noexec"},
		{"/proc/sys", "proc", "ro"},
		{"/proc/sysrq-trigger", "proc", "ro"},
		{"/proc/acpi", "tmpfs", "ro"},
	}
	for _, w := range want {
		m, ok := mounts[w.dst]
		if _, err := os.Stat(w.dst); err != nil && strings.HasPrefix(w.dst, "/proc/") {
			continue // this kernel has no such file to protect
		}
		if !ok {
			t.Errorf("no mount on %s", w.dst)
			continue
		}
		if m.fstype != w.fstype || !strings.Contains(","+m.opts+",", ","+w.opt+",") {
			t.Errorf("%s: %s %s, want %s with %s", w.dst, m.fstype, m.opts, w.fstype, w.opt)
		}
	}
	if m := mounts["/dev/pts"]; !strings.Contains(m.super, "ptmxmode=666") {
		t.Errorf("/dev/pts is not a new instance with ptmxmode=666: %s", m.super)
	}
	// pivot_root, not chroot: the host's root is not reachable as a mount.
	for dst := range mounts {
		if strings.HasPrefix(dst, e.root) || strings.HasPrefix(dst, "/old") {
			t.Errorf("host mount %s visible in the container", dst)
		}
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty", "ptmx -> pts/ptmx", "fd -> /proc/self/fd", "stdin -> /proc/self/fd/0", "stdout -> /proc/self/fd/1", "stderr -> /proc/self/fd/2", "shm", "mqueue", "pts"} {
		if !regexp.MustCompile(`(?m) ` + regexp.QuoteMeta(n) + `$`).MatchString(parts[1]) {
			t.Errorf("/dev lacks %s:\n%s", n, parts[1])
		}
	}
	if !strings.HasPrefix(parts[2], ctr+"\n") || !strings.Contains(parts[2], ctr) || !strings.Contains(parts[2], "/etc/resolv.conf") {
		t.Errorf("/etc files:\n%s", parts[2])
	}
	if !strings.Contains(parts[2], "127.0.0.1") {
		t.Errorf("/etc/hosts lacks localhost:\n%s", parts[2])
	}
	// No descriptor of bocker's beyond stdio reaches the container.
	if got := strings.Fields(parts[3]); len(got) < 3 || strings.Join(got[:3], " ") != "0 1 2" || got[3] != "CapInh:" {
		t.Errorf("PID 1 holds more than stdio, or wrong caps: %q", parts[3])
	}
	if !strings.Contains(parts[3], "CapInh:\t0000000000000000\n") || !strings.Contains(parts[3], "CapAmb:\t0000000000000000") {
		t.Errorf("inheritable or ambient capabilities set:\n%s", parts[3])
	}
}

// INT, TERM, HUP and QUIT sent to bocker run reach the container's PID 1.
func TestSignals(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		name := strings.TrimPrefix(strings.ToUpper(sig.String()), "SIG")
		switch sig {
		case syscall.SIGINT:
			name = "INT"
		case syscall.SIGTERM:
			name = "TERM"
		case syscall.SIGHUP:
			name = "HUP"
		case syscall.SIGQUIT:
			name = "QUIT"
		}
		c := e.cmd(nil, "run", img, "trap 'echo got "+name+"; exit 0' "+name+"; touch /ready; while :; do sleep 0.05; done")
		var out bytes.Buffer
		c.Stdout = &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			if ids := e.containers(); len(ids) > 0 {
				if r := e.bk("exec", e.newest(ids), "ls", "/ready"); r.code == 0 {
					break
				}
			}
			if i > 200 {
				t.Fatal("container never became ready")
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			<-done
			t.Errorf("SIG%s did not end the container", name)
		}
		if got := out.String(); got != "got "+name+"\n" {
			t.Errorf("after SIG%s the container printed %q", name, got)
		}
	}
}

func TestIDPrefixAndStore(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	if got := e.ok("run", img[:8], "echo prefix"); got != "prefix\n" {
		t.Errorf("run by prefix: %q", got)
	}
	ctr := e.last()
	if got := e.ok("logs", ctr[:9]); got != "prefix\n" {
		t.Errorf("logs by prefix: %q", got)
	}
	// An ambiguous prefix is refused, not guessed.
	e.ok("run", img, "true")
	if r := e.bk("logs", "ps_"); r.code == 0 {
		t.Errorf("logs ps_ with two containers: %+v", r)
	}
	fi, err := os.Stat(e.root)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("store root mode %v, want 0700 (%v)", fi.Mode().Perm(), err)
	}
}

func TestNoShellNoCommand(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	img := createdRe.FindStringSubmatch(e.ok("init", dir))[1]
	r := e.bk("run", img)
	if r.code != 1 || strings.Count(r.err, "\n") != 1 || !strings.Contains(r.err, "no command") {
		t.Errorf("run of an image with no shell and no command: %+v", r)
	}
	if len(e.containers()) != 0 {
		t.Error("a failed run left a container")
	}
}

// The code that runs inside a container while it is set up is the small
// embedded helper, from a sealed memfd: nothing in the container can
// reach bocker's file on the host through /proc/PID/exe.
func TestHelperFromSealedMemfd(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	out := e.ok("run", "--network", "none", "--init", img, "readlink /proc/1/exe; echo x >> /proc/1/exe 2>/dev/null || echo refused")
	if out != "/memfd:bocker-ctr (deleted)\nrefused\n" {
		t.Errorf("PID 1 under --init: %q", out)
	}
}

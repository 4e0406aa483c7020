package main

// Docker's lifecycle on top of the script: detached containers with a
// monitor, stop/kill/wait/start, logs -f, names, --rm, volumes, --init,
// exec's options and a tty driven through a real pty.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

type psEntry struct {
	ID, Name, Image, Command, Status string
}

func (e *env) psJSON() map[string]psEntry {
	e.t.Helper()
	m := map[string]psEntry{}
	for _, l := range strings.Split(strings.TrimSpace(e.ok("ps", "--format", "json")), "\n") {
		if l == "" {
			continue
		}
		var p psEntry
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			e.t.Fatalf("ps --format json line %q: %v", l, err)
		}
		m[p.ID] = p
	}
	return m
}

// detach starts a container with run -d and returns its id.
func (e *env) detach(args ...string) string {
	e.t.Helper()
	out := e.ok(append([]string{"run", "-d", "--network", "none"}, args...)...)
	id := strings.TrimSpace(out)
	if !strings.HasPrefix(id, "ps_") || strings.Contains(id, "\n") {
		e.t.Fatalf("run -d printed %q, want the container id", out)
	}
	return id
}

func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	e.t.Fatalf("timed out waiting for %s", what)
}

func TestDetachedLifecycle(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	start := time.Now()
	id := e.detach("--name", "web", img, `echo started; trap "echo got TERM; exit 7" TERM; while :; do sleep 0.1; done`)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run -d took %v to print the id", d)
	}
	// The starter has exited: the container runs on under its monitor.
	if st := e.psJSON()[id]; st.Status != "running" || st.Name != "web" || st.Image != img {
		t.Fatalf("ps --format json: %+v, want running, name web, image %s", st, img)
	}
	e.waitFor("started in the log", func() bool { return strings.Contains(e.ok("logs", "web"), "started") })
	if out := e.ok("exec", "web", "cat", "/etc/hostname"); out != id+"\n" {
		t.Errorf("exec by name: %q", out)
	}
	if r := e.bk("rm", "web"); r.code == 0 {
		t.Fatalf("rm of a running container succeeded: %q", r.out)
	}
	t0 := time.Now()
	e.ok("stop", "-t", "10", "web")
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stop of a TERM-handling container took %v", d)
	}
	r := e.bk("wait", id)
	if r.code != 7 || r.out != "7\n" {
		t.Errorf("wait: exit %d, printed %q; want 7", r.code, r.out)
	}
	if st := e.psJSON()[id]; st.Status != "exited (7)" {
		t.Errorf("status after stop %q, want exited (7)", st.Status)
	}
	if out := e.ok("logs", id); !strings.Contains(out, "got TERM") {
		t.Errorf("log after stop: %q", out)
	}
	if out := e.ok("rm", id); out != "Removed: "+id+"\n" {
		t.Errorf("rm printed %q", out)
	}
	assertGone(t, id)
	if _, err := os.Stat(filepath.Join(e.root, "containers", id)); !os.IsNotExist(err) {
		t.Errorf("container directory left after rm: %v", err)
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	id := e.detach(img, `trap "" TERM; echo ready; while :; do sleep 0.1; done`)
	e.waitFor("ready", func() bool { return strings.Contains(e.ok("logs", id), "ready") })
	t0 := time.Now()
	e.ok("stop", "-t", "1", id)
	d := time.Since(t0)
	if d < time.Second || d > 6*time.Second {
		t.Errorf("stop -t 1 of a TERM-ignoring container took %v, want about 1s", d)
	}
	if r := e.bk("wait", id); r.code != 137 {
		t.Errorf("wait after KILL: exit %d %q, want 137", r.code, r.out)
	}
	// kill -s and a restart on the same upper layer.
	id2 := e.detach(img, `echo x >> /count; wc -l < /count; sleep 300`)
	e.waitFor("first start", func() bool { return strings.Contains(e.ok("logs", id2), "1") })
	e.ok("kill", "-s", "KILL", id2)
	if r := e.bk("wait", id2); r.code != 137 {
		t.Errorf("wait after kill -s KILL: %d", r.code)
	}
	e.ok("start", id2)
	e.waitFor("second start", func() bool { return strings.Contains(e.ok("logs", id2), "2") })
	if st := e.psJSON()[id2]; st.Status != "running" {
		t.Errorf("status after start: %q", st.Status)
	}
	e.ok("rm", "-f", id2)
	assertGone(t, id2)
}

func TestLogsFollow(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	id := e.detach(img, `for i in 1 2 3; do echo line$i; sleep 0.4; done; echo err >&2`)
	c := e.cmd(nil, "logs", "-f", id)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stderr = io.Discard
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "line1" {
		t.Fatalf("first followed line %q", sc.Text())
	}
	// The first line came while the container still ran: followed, not
	// read at the end.
	if st := e.psJSON()[id]; st.Status != "running" {
		t.Errorf("container already %q when the first line arrived", st.Status)
	}
	var rest []string
	for sc.Scan() {
		rest = append(rest, sc.Text())
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("logs -f: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = c.Process.Kill()
		t.Fatal("logs -f did not return after the container exited")
	}
	// The script's logs is the merged log, as the terminal showed it.
	if got := strings.Join(rest, ","); got != "line2,line3,err" {
		t.Errorf("followed stdout %q", got)
	}
	if out := e.ok("logs", "--tail", "1", id); out != "err\n" {
		t.Errorf("logs --tail 1: %q", out)
	}
	if out := e.ok("logs", "-t", id); !strings.Contains(out, "Z line1") {
		t.Errorf("logs -t: %q", out)
	}
}

func TestRmFlagAndNames(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	if out := e.ok("run", "--rm", "--network", "none", img, "echo gone soon"); out != "gone soon\n" {
		t.Errorf("run --rm printed %q", out)
	}
	if ids := e.containers(); len(ids) != 0 {
		t.Errorf("run --rm left %v", ids)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.root, "containers")); len(ents) != 0 {
		t.Errorf("run --rm left container directories: %v", ents)
	}
	id := e.detach("--name", "db", img, "sleep 300")
	r := e.bk("run", "-d", "--network", "none", "--name", "db", img, "sleep 300")
	if r.code == 0 || !strings.Contains(r.out+r.err, "db") || strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
		t.Errorf("name clash: exit %d, stdout %q, stderr %q; want one line naming db", r.code, r.out, r.err)
	}
	if ids := e.containers(); len(ids) != 1 || ids[0] != id {
		t.Errorf("after a refused name clash ps lists %v", ids)
	}
	e.ok("rm", "-f", "db")
	// The name is free again once its container is gone.
	e.ok("run", "--rm", "--network", "none", "--name", "db", img, "true")
}

func TestVolumes(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	vol := filepath.Join(t.TempDir(), "made", "by", "run")
	e.ok("run", "--network", "none", "-v", vol+":/data", img, "echo kept > /data/f")
	ctr := e.last()
	e.ok("rm", ctr)
	if b, err := os.ReadFile(filepath.Join(vol, "f")); err != nil || string(b) != "kept\n" {
		t.Fatalf("volume after rm: %q %v", b, err)
	}
	out := e.ok("run", "--network", "none", "-v", vol+":/data:ro", "--tmpfs", "/scratch", img,
		"cat /data/f; echo x > /data/g 2>/dev/null && echo wrote; echo t > /scratch/t && grep -c ' /scratch tmpfs' /proc/mounts")
	if out != "kept\n1\n" {
		t.Errorf("ro volume and tmpfs: %q", out)
	}
	if _, err := os.Stat(filepath.Join(vol, "g")); err == nil {
		t.Error("write through a :ro volume reached the host")
	}
}

func TestInitReapsZombies(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	// Each ( ... &) leaves an orphan that is reparented to PID 1.
	out := e.ok("run", "--init", "--network", "none", img,
		`i=0; while [ $i -lt 100 ]; do (sleep 0.01 &); i=$((i+1)); done; sleep 1; `+
			`z=0; for s in /proc/[0-9]*/stat; do set -- $(cat $s 2>/dev/null); [ "$3" = Z ] && z=$((z+1)); done; echo zombies=$z; cat /proc/1/cmdline | tr '\0' ' '`)
	if !strings.HasPrefix(out, "zombies=0\n") || !strings.Contains(out, "bocker-ctr-reaper") {
		t.Errorf("run --init: %q", out)
	}
}

func TestExecOptions(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	id := e.detach("-e", "FROM_RUN=r", img, "sleep 300")
	if out := e.ok("exec", "-e", "A=1", "-w", "/tmp", "-u", "nobody", id, "sh", "-c", "echo $A $FROM_RUN $(pwd) $(id -u)"); out != "1 r /tmp 65534\n" {
		t.Errorf("exec -e -w -u: %q", out)
	}
	if r := e.bk("exec", id, "no-such-command"); r.code != 127 {
		t.Errorf("exec of a missing command: exit %d", r.code)
	}
	for _, bad := range [][]string{{"-u", "99999999999"}, {"-w", "relative"}, {"-e", "=x"}} {
		r := e.bk(append(append([]string{"exec"}, bad...), id, "true")...)
		if r.code == 0 || strings.Count(strings.TrimSpace(r.err), "\n") != 0 || r.err == "" {
			t.Errorf("exec %v: exit %d, stderr %q; want one line and a failure", bad, r.code, r.err)
		}
	}
	// Without a terminal, -t still gives the command a pty of the
	// container's own devpts.
	if out := e.ok("exec", "-t", id, "tty"); strings.TrimSpace(out) != "/dev/pts/0" {
		t.Errorf("exec -t: tty printed %q", out)
	}
}

// The child's stdin (fd 0) becomes its controlling terminal in a new
// session, as a login shell's would.
var syscallSessionTTY = syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}

// ptyConsole is the test's terminal: bocker runs with the slave as its
// controlling tty; the test types into the master and reads what shows.
type ptyConsole struct {
	t      *testing.T
	master *os.File
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (p *ptyConsole) read() {
	b := make([]byte, 4096)
	for {
		n, err := p.master.Read(b)
		p.mu.Lock()
		p.buf.Write(b[:n])
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *ptyConsole) expect(s string) {
	p.t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		p.mu.Lock()
		ok := strings.Contains(p.buf.String(), s)
		p.mu.Unlock()
		if ok {
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t.Fatalf("terminal never showed %q; it shows:\n%s", s, p.buf.String())
}

func (p *ptyConsole) typeIn(s string) {
	p.t.Helper()
	if _, err := p.master.WriteString(s); err != nil {
		p.t.Fatal(err)
	}
}

func TestInteractiveTTY(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	for _, applet := range []string{"run", "exec"} {
		t.Run(applet, func(t *testing.T) {
			var c = e.cmd([]string{"BOCKER_EXIT_CODE=1"}, "run", "--rm", "-it", "--network", "none", img, "sh")
			if applet == "exec" {
				id := e.detach(img, "sleep 300")
				c = e.cmd(nil, "exec", "-it", id, "sh")
			}
			m, tty, err := pty.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			defer tty.Close()
			if err := pty.Setsize(m, &pty.Winsize{Rows: 33, Cols: 91}); err != nil {
				t.Fatal(err)
			}
			before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			c.Stdin, c.Stdout, c.Stderr = tty, tty, tty
			c.SysProcAttr = &syscallSessionTTY
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			con := &ptyConsole{t: t, master: m}
			go con.read()
			con.typeIn("stty size; tty\n")
			con.expect("33 91")
			con.expect("/dev/pts/0")
			// A resize of the caller's terminal reaches the container's.
			if err := pty.Setsize(m, &pty.Winsize{Rows: 40, Cols: 100}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			con.typeIn("stty size\n")
			con.expect("40 100")
			// Ctrl-C reaches the foreground command inside, not bocker.
			con.typeIn("sleep 100\n")
			time.Sleep(300 * time.Millisecond)
			con.typeIn("\x03")
			con.typeIn("echo after$((40+2))\n")
			con.expect("after42")
			con.typeIn("exit 5\n")
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = c.Process.Kill()
				t.Fatal("bocker did not exit after the shell did")
			}
			if code := c.ProcessState.ExitCode(); code != 5 {
				t.Errorf("exit %d, want the shell's 5", code)
			}
			after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
				t.Errorf("terminal not restored: lflag %#x→%#x iflag %#x→%#x", before.Lflag, after.Lflag, before.Iflag, after.Iflag)
			}
		})
	}
}

func TestBadRunOptions(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	for _, bad := range [][]string{
		{"-m", "abc"}, {"-v", "relative:path"}, {"-u", "99999999999"}, {"--cpus", "-1"},
		{"--pids-limit", "x"}, {"--cpuset-cpus", "a-b"}, {"-e", "=v"}, {"--env-file", "/nonexistent"},
		{"-w", "relative"}, {"--tmpfs", "relative"}, {"-p", "notaport"}, {"--network", "nosuch"},
	} {
		r := e.bk(append(append([]string{"run"}, bad...), img, "true")...)
		if r.code != 125 || r.err == "" || strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
			t.Errorf("run %v: exit %d, stdout %q, stderr %q; want one line and a failure", bad, r.code, r.out, r.err)
		}
	}
	if ids := e.containers(); len(ids) != 0 {
		t.Errorf("refused runs left containers %v", ids)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.root, "containers")); len(ents) != 0 {
		t.Errorf("refused runs left directories %v", ents)
	}
	for _, bad := range [][]string{{"stop", "-t", "x"}, {"kill", "-s", "NOSIG"}, {"wait", "ps_nosuch"}, {"start", "ps_nosuch"}, {"logs", "--tail", "x"}} {
		if r := e.bk(bad...); r.code == 0 {
			t.Errorf("%v succeeded: %q", bad, r.out)
		}
	}
}

// An OOM kill shows as such in the record and as 137.
func TestOOMKill(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	r := e.runEnv([]string{"BOCKER_EXIT_CODE=1"}, "run", "--network", "none", "-m", "8m", img,
		`x=a; while :; do x=$x$x$x$x; done`)
	if r.code != 137 {
		t.Fatalf("memory hog: exit %d, stderr %q", r.code, r.err)
	}
	var recs []map[string]any
	if err := json.Unmarshal([]byte(e.ok("inspect", e.last())), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0]["oom_killed"] != true {
		t.Errorf("inspect after an OOM kill: %v", recs)
	}
	if st := e.psJSON()[e.last()]; !strings.Contains(st.Status, "137") {
		t.Errorf("ps status after an OOM kill: %q", st.Status)
	}
}

// One monitor watches every detached container of a store, records each
// one's end on its own, takes concurrent starts, and leaves once it has
// nothing to watch.
func TestSharedMonitor(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	monitorOf := func(id string) int {
		var c []struct {
			MonitorPid int `json:"monitor_pid"`
		}
		if err := json.Unmarshal([]byte(e.ok("inspect", id)), &c); err != nil || len(c) != 1 {
			t.Fatalf("inspect %s: %v", id, err)
		}
		return c[0].MonitorPid
	}
	long := e.detach(img, "sleep 60")
	ids := make([]string, 6)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.bk("run", "-d", "--network", "none", img, "echo hello; exit 3")
			if r.code != 0 {
				t.Errorf("concurrent run -d: exit %d: %q", r.code, r.out)
				return
			}
			ids[i] = strings.TrimSpace(r.out)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	pid := monitorOf(long)
	if pid == 0 || !processAlive(pid) {
		t.Fatalf("monitor pid %d is not running", pid)
	}
	for _, id := range ids {
		if r := e.bk("wait", id); r.out != "3\n" {
			t.Errorf("wait %s: %q, want 3", id, r.out)
		}
		if got := monitorOf(id); got != pid {
			t.Errorf("container %s watched by %d, want the shared monitor %d", id, got, pid)
		}
		if out := e.ok("logs", id); out != "hello\n" {
			t.Errorf("logs %s: %q", id, out)
		}
	}
	if st := e.psJSON()[long]; st.Status != "running" {
		t.Errorf("the long container after the others ended: %q", st.Status)
	}
	e.ok("rm", "-f", long)
	e.waitFor("the idle monitor to exit", func() bool { return !processAlive(pid) })
	// And the next start brings a new one.
	id := e.detach(img, "true")
	if r := e.bk("wait", id); r.out != "0\n" {
		t.Errorf("wait after a new monitor: %q", r.out)
	}
	if p := monitorOf(id); p == pid || p == 0 {
		t.Errorf("new monitor pid %d (old %d)", p, pid)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// The monitor's shared fate: killed with -9, it takes its containers with
// it, and the next command finds them exited and removes them cleanly.
func TestMonitorKilled(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	a := e.detach(img, "sleep 60")
	b := e.detach(img, "sleep 60")
	var c []struct {
		MonitorPid int `json:"monitor_pid"`
		Pid        int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", a, b)), &c); err != nil || len(c) != 2 {
		t.Fatalf("inspect: %v", err)
	}
	if err := syscall.Kill(c[0].MonitorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the containers to die with their monitor", func() bool {
		return !processAlive(c[0].Pid) && !processAlive(c[1].Pid)
	})
	for _, id := range []string{a, b} {
		if st := e.psJSON()[id]; !strings.HasPrefix(st.Status, "exited") {
			t.Errorf("%s after its monitor was killed: %q", id, st.Status)
		}
		e.ok("rm", id)
		assertGone(t, id)
	}
}

// exec -d returns at once and leaves the command running in the
// container, its output nowhere, as docker exec -d does.
func TestExecDetached(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	id := e.detach(img, "sleep 60")
	t0 := time.Now()
	if out := e.ok("exec", "-d", id, "sh", "-c", "echo lost; sleep 1; echo done > /tmp/mark"); out != "" {
		t.Errorf("exec -d printed %q", out)
	}
	if d := time.Since(t0); d > 900*time.Millisecond {
		t.Errorf("exec -d took %v: it waited for the command", d)
	}
	if r := e.bk("exec", id, "cat", "/tmp/mark"); r.code == 0 {
		t.Errorf("the mark exists before the command wrote it: %q", r.out)
	}
	e.waitFor("the detached command's mark", func() bool { return e.bk("exec", id, "cat", "/tmp/mark").out == "done\n" })
	if r := e.bk("exec", "-d", "-t", id, "true"); r.code == 0 || strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
		t.Errorf("exec -d -t: %+v", r)
	}
	if r := e.bk("exec", "-d", id, "no-such-command"); r.code != 127 {
		t.Errorf("exec -d of a missing command: exit %d, want 127", r.code)
	}
	e.ok("rm", "-f", id)
}

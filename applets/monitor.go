package applets

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bocker/bocker/store"
	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// Detached containers are watched by one monitor process per store, not
// one each: a Go process costs about 2 MiB of private memory however
// little it does, where conmon costs 0.4 MiB. The monitor is started by
// the first `run -d` or `start` and exits once it has watched its last
// container, so there is still no daemon when nothing runs. The price is
// a shared fate: a monitor killed with -9 takes its containers with it
// (they die with their parent rather than run unwatched).
//
// A starter talks to the monitor over an abstract unix socket named
// after the store, so nothing stale is left on disk when the monitor
// dies. It holds monitor.lock from connecting until the monitor has
// taken its request, and the monitor holds the same lock while it
// decides to exit, so a request never reaches a monitor on its way out.

// monitorApplet is the hidden applet the monitor runs as:
// `bocker ctr-monitor`, in its own session, fd 3 a pipe on which it says
// once that it listens.
const monitorApplet = "ctr-monitor"

// monitorIdle is how long a monitor with nothing to watch stays for the
// next request before it exits.
const monitorIdle = 2 * time.Second

func init() {
	register(&Applet{Name: monitorApplet, Run: monitor})
}

func monitorAddr(root string) string {
	sum := sha256.Sum256([]byte(root))
	return "@bocker-monitor-" + hex.EncodeToString(sum[:8])
}

func monitorLock(root string) *flock.Flock {
	return flock.New(filepath.Join(root, "monitor.lock"))
}

// spawnMonitor has the store's monitor start a detached container, and
// waits until the container's command runs, or fails to.
func spawnMonitor(st *store.Store, id string) error {
	lock := monitorLock(st.Root)
	if err := lock.Lock(); err != nil {
		return fmt.Errorf("lock monitor: %w", err)
	}
	conn, err := monitorRequest(st, id)
	_ = lock.Unlock()
	if err != nil {
		return err
	}
	defer conn.Close()
	// Setting up the root and the network can take a while on a busy
	// host; a minute without an answer is a hung monitor.
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	msg, err := io.ReadAll(conn)
	if err != nil {
		return fmt.Errorf("start container: monitor: %w", err)
	}
	switch {
	case string(msg) == "ok":
		return nil
	case len(msg) > 0:
		return errors.New(string(msg))
	}
	return errors.New("start container: its monitor exited")
}

// monitorRequest connects to the monitor, starting one when there is
// none, and returns once it has accepted the request. Called under
// monitor.lock.
func monitorRequest(st *store.Store, id string) (*net.UnixConn, error) {
	addr := &net.UnixAddr{Name: monitorAddr(st.Root), Net: "unix"}
	conn, err := net.DialUnix("unix", nil, addr)
	if err != nil {
		if err := startMonitor(st); err != nil {
			return nil, err
		}
		if conn, err = net.DialUnix("unix", nil, addr); err != nil {
			return nil, fmt.Errorf("connect to monitor: %w", err)
		}
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var ack [1]byte
	if _, err = fmt.Fprintf(conn, "start %s\n", id); err == nil {
		_, err = io.ReadFull(conn, ack[:])
	}
	if err != nil || ack[0] != 'A' {
		conn.Close()
		return nil, fmt.Errorf("start container: monitor did not take the request: %v", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// startMonitor runs a new monitor and waits until it listens.
func startMonitor(st *store.Store) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create monitor pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", monitorApplet)
	cmd.Args[0] = "bocker"
	// One P: the monitor mostly sleeps, and every P costs it caches and
	// threads.
	cmd.Env = append(os.Environ(), "BOCKER_ROOT="+st.Root, "GOMAXPROCS=1")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start monitor: %w", err)
	}
	msg, _ := io.ReadAll(r)
	if string(msg) == "ok" {
		_ = cmd.Process.Release()
		return nil
	}
	_ = cmd.Wait()
	if len(msg) > 0 {
		return errors.New(string(msg))
	}
	return errors.New("start monitor: it exited")
}

type monitorServer struct {
	root   string
	l      *net.UnixListener
	mu     sync.Mutex
	active int
}

func monitor(e *Env, args []string) error {
	if len(args) != 0 {
		return errors.New("usage: bocker ctr-monitor")
	}
	pipe := os.NewFile(3, "ready")
	st, err := e.Store()
	if err != nil {
		_, _ = pipe.WriteString(err.Error())
		return err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: monitorAddr(st.Root), Net: "unix"})
	if err != nil {
		err = fmt.Errorf("start monitor: listen: %w", err)
		_, _ = pipe.WriteString(err.Error())
		return err
	}
	_, _ = pipe.WriteString("ok")
	pipe.Close()
	// Nothing of the starter's terminal: the containers' output is their log.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	m := &monitorServer{root: st.Root, l: l}
	_ = l.SetDeadline(time.Now().Add(monitorIdle))
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if m.exitIfIdle(l) {
					return nil
				}
				_ = l.SetDeadline(time.Now().Add(monitorIdle))
				continue
			}
			return fmt.Errorf("monitor: accept: %w", err)
		}
		m.add(1)
		go m.serve(conn)
	}
}

// add counts watched containers. The accept loop only wakes to check
// for idleness once there are none: while containers run, nothing in
// the monitor runs but what they need.
func (m *monitorServer) add(n int) {
	m.mu.Lock()
	m.active += n
	if m.active == 0 {
		_ = m.l.SetDeadline(time.Now().Add(monitorIdle))
	} else {
		_ = m.l.SetDeadline(time.Time{})
	}
	m.mu.Unlock()
}

// exitIfIdle stops listening when nothing is watched. Under monitor.lock
// every request made so far has been accepted (starters hold the lock
// until then), so none is lost.
func (m *monitorServer) exitIfIdle(l *net.UnixListener) bool {
	m.mu.Lock()
	idle := m.active == 0
	m.mu.Unlock()
	if !idle {
		return false
	}
	lock := monitorLock(m.root)
	if err := lock.Lock(); err != nil {
		// The store is gone (a test's, removed): no one will ask again.
		l.Close()
		return true
	}
	defer func() { _ = lock.Unlock() }()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active != 0 {
		return false
	}
	l.Close()
	return true
}

// serve watches one container from start to its recorded end.
func (m *monitorServer) serve(conn *net.UnixConn) {
	defer m.add(-1)
	answered := false
	answer := func(err error) {
		if answered {
			return
		}
		answered = true
		if err != nil {
			_, _ = conn.Write([]byte(err.Error()))
		} else {
			_, _ = conn.Write([]byte("ok"))
		}
		conn.Close()
		// Again once the new container's goroutines have settled into
		// waiting: what they touched getting there is not needed either.
		trimMemory()
		time.AfterFunc(time.Second, trimMemory)
	}
	defer answer(errors.New("start container: monitor failed"))
	if err := checkPeer(conn); err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	id, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "start ")
	if err != nil || !ok || !store.ValidName(id) {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if _, err := conn.Write([]byte{'A'}); err != nil {
		return
	}
	// A store of its own: the store's lock is an flock held per Store,
	// and the containers watched here take it concurrently.
	st, err := store.Open(m.root)
	if err != nil {
		answer(err)
		return
	}
	lc, err := readLaunchConfig(st, id)
	if err != nil {
		answer(err)
		return
	}
	_, _, err = launchContainer(st, id, lc, &attach{}, answer)
	answer(err)
}

// checkPeer lets only the monitor's own user ask it for anything: an
// abstract socket has no file permissions to do that.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("monitor: request from uid %d refused", cred.Uid)
	}
	return nil
}

// trimMemory gives back what starting a container used and watching it
// does not: the garbage, and the pages of the binary's code and read-only
// data that startup touched. Those are clean file pages; dropping them
// from this process only means a fault to map them again from the page
// cache should they be needed.
func trimMemory() {
	debug.FreeOSMemory()
	// The binary is known by its inode: an upgrade may have replaced the
	// path, and smaps then calls it "(deleted)".
	fi, err := os.Stat("/proc/self/exe")
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	inode := strconv.FormatUint(st.Ino, 10)
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return
	}
	// All ranges first, then only system calls: code run between two
	// madvises would map its pages again.
	var ranges [][2]uintptr
	var start, end uintptr
	candidate := false
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && len(fields) >= 5 {
			s, err1 := strconv.ParseUint(lo, 16, 64)
			e, err2 := strconv.ParseUint(hi, 16, 64)
			// Read-only, private, and the binary itself.
			candidate = err1 == nil && err2 == nil && len(fields) >= 6 && fields[4] == inode &&
				fields[1][1] == '-' && fields[1][3] == 'p'
			start, end = uintptr(s), uintptr(e)
			continue
		}
		// A page written to (a debugger's breakpoint) is anonymous and
		// would be lost: such a mapping is left alone.
		if candidate && fields[0] == "Anonymous:" {
			candidate = false
			if fields[1] == "0" {
				ranges = append(ranges, [2]uintptr{start, end})
			}
		}
	}
	for _, r := range ranges {
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

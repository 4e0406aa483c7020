package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string]string{
		"8080:80":              "0.0.0.0:8080:80/tcp",
		"127.0.0.1:18080:80":   "127.0.0.1:18080:80/tcp",
		"0.0.0.0:53:53/udp":    "0.0.0.0:53:53/udp",
		"10.1.2.3:1:65535/tcp": "10.1.2.3:1:65535/tcp",
	} {
		p, err := ParsePort(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePort(%q) = %v, %v; want %s", in, p, err, want)
		}
		if q, err := ParsePort(p.String()); err != nil || q.String() != want {
			t.Errorf("round trip of %q: %v %v", want, q, err)
		}
	}
	for _, in := range []string{"", "80", "x:80", "80:x", "0:80", "80:0", "65536:80", "1:2:3:4", "::1:80:80", "80:80/sctp", "host:80:80"} {
		if _, err := ParsePort(in); err == nil {
			t.Errorf("ParsePort(%q) accepted", in)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParsePort(%q): error of several lines", in)
		}
	}
}

func TestOverlaps(t *testing.T) {
	p := func(s string) Port { q, _ := ParsePort(s); return q }
	if !p("80:1").overlaps(p("127.0.0.1:80:2")) || p("80:1").overlaps(p("80:1/udp")) ||
		p("127.0.0.1:80:1").overlaps(p("127.0.0.2:80:1")) || p("81:1").overlaps(p("80:1")) {
		t.Error("overlaps is wrong")
	}
	if err := checkDistinct([]Port{p("80:1"), p("127.0.0.1:80:2")}); err == nil {
		t.Error("the same host port twice was accepted")
	}
}

func TestNewConfig(t *testing.T) {
	c, err := NewConfig("", "")
	if err != nil || c.Bridge != "bridge0" || c.Gateway.String() != "10.0.0.1" || c.Subnet.String() != "10.0.0.0/24" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if n := len(c.hosts()); n != 253 {
		t.Errorf("a /24 has %d leasable addresses, want 253", n)
	}
	c, err = NewConfig("bk1", "10.99.0.0/24")
	if err != nil || c.Gateway.String() != "10.99.0.1" {
		t.Fatalf("network address: %+v %v", c, err)
	}
	c, err = NewConfig("bk1", "10.99.0.9/29")
	if err != nil || c.Gateway.String() != "10.99.0.9" || c.hosts()[0].String() != "10.99.0.10" || len(c.hosts()) != 5 {
		t.Fatalf("host address: %+v %v %v", c, err, c.hosts())
	}
	for _, s := range []string{"10.0.0.1", "10.0.0.0/33", "300.0.0.1/24", "fd00::1/64", "10.0.0.0/30", "10.0.0.1/4", "10.0.0.255/24", "x"} {
		if _, err := NewConfig("", s); err == nil {
			t.Errorf("subnet %q accepted", s)
		}
	}
	for _, b := range []string{"a-name-longer-than-15", "bad name", "-x", "a/b"} {
		if _, err := NewConfig(b, ""); err == nil {
			t.Errorf("bridge %q accepted", b)
		}
	}
}

func TestFiles(t *testing.T) {
	host := "# comment\nnameserver 127.0.0.53\nnameserver ::1\nsearch example.org\noptions edns0\n"
	got := ResolvConf(host, nil)
	if strings.Contains(got, "127.0.0.53") || strings.Contains(got, "::1") || !strings.Contains(got, "nameserver 8.8.8.8\n") ||
		!strings.Contains(got, "search example.org\n") || !strings.Contains(got, "options edns0\n") {
		t.Errorf("loopback resolvers: %q", got)
	}
	got = ResolvConf("nameserver 192.0.2.1\nnameserver 127.0.0.1\n", nil)
	if got != "nameserver 192.0.2.1\n" {
		t.Errorf("non-loopback kept: %q", got)
	}
	dns, err := ParseDNS("1.1.1.1, 9.9.9.9")
	if err != nil {
		t.Fatal(err)
	}
	if got = ResolvConf("nameserver 192.0.2.1\n", dns); got != "nameserver 1.1.1.1\nnameserver 9.9.9.9\n" {
		t.Errorf("BOCKER_DNS: %q", got)
	}
	for _, s := range []string{"", "x", "1.1.1.1,nope"} {
		if _, err := ParseDNS(s); err == nil {
			t.Errorf("ParseDNS(%q) accepted", s)
		}
	}
	if h := Hosts("web", net.ParseIP("10.0.0.7")); !strings.Contains(h, "10.0.0.7\tweb\n") || !strings.Contains(h, "127.0.0.1\tlocalhost") {
		t.Errorf("hosts: %q", h)
	}
	if v := VethName("ps_0123456789abcdef0123456789abcdef"); v != "bk0123456789ab" || len(v) > 15 {
		t.Errorf("VethName: %q", v)
	}
}

// The privileged tests use a bridge, subnet, table and state directory
// of their own, so they run beside any bocker on the host.
func testConfig(t *testing.T) *Config {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: netlink and nftables")
	}
	c, err := NewConfig("bktest0", "10.99.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	c.Table = "bktest"
	c.StateDir = t.TempDir()
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(c.Bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bridge: %v", err)
			}
		}
		if err := deleteTable(c); err != nil {
			t.Error(err)
		}
	})
	return c
}

// fakeInit is a process in a network namespace of its own: what Setup
// sees of a container.
func fakeInit(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// inNS runs f on a thread inside pid's network namespace; sockets made
// there stay in it.
func inNS(t *testing.T, pid int, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is left locked, so it dies with the goroutine rather
		// than serve others from the wrong namespace.
		ns, err := netns.GetFromPid(pid)
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			t.Error(err)
			return
		}
		f()
	}()
	<-done
}

// serve listens inside pid's namespace and answers each connection
// with word.
func serve(t *testing.T, pid int, port string, word string) {
	t.Helper()
	serveFunc(t, pid, port, func(net.Conn) string { return word })
}

func serveFunc(t *testing.T, pid int, port string, answer func(net.Conn) string) {
	t.Helper()
	var l net.Listener
	inNS(t, pid, func() {
		var err error
		if l, err = net.Listen("tcp4", "0.0.0.0:"+port); err != nil {
			t.Error(err)
		}
	})
	if l == nil {
		t.FailNow()
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(answer(c)))
			c.Close()
		}
	}()
}

func fetch(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestSetupTeardown(t *testing.T) {
	c := testConfig(t)
	pa, pb := fakeInit(t), fakeInit(t)
	p, _ := ParsePort("18181:7000")
	ida, idb := "ps_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ps_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	t.Cleanup(func() { _ = Teardown(c, ida); _ = Teardown(c, idb) })
	a, err := Setup(c, ida, pa, []Port{p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Setup(c, idb, pb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.IP.String() != "10.99.0.2" || b.IP.String() != "10.99.0.3" {
		t.Errorf("addresses %s and %s, want 10.99.0.2 and .3", a.IP, b.IP)
	}
	inNS(t, pa, func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Error(err)
			return
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.99.0.2/24" {
			t.Errorf("eth0 addresses %v", addrs)
		}
		routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
		gw := false
		for _, r := range routes {
			gw = gw || ((r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(c.Gateway))
		}
		if !gw {
			t.Errorf("no default route via %s: %v", c.Gateway, routes)
		}
		if lo, err := netlink.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("lo not up: %v", err)
		}
	})
	serve(t, pa, "7000", "from-a")
	serve(t, pb, "7001", "from-b")
	if got, err := fetch("10.99.0.2:7000"); got != "from-a" {
		t.Errorf("host to container by address: %q %v", got, err)
	}
	if got, err := fetch("127.0.0.1:18181"); got != "from-a" {
		t.Errorf("published 127.0.0.1:18181: %q %v", got, err)
	}
	// Container to container by address, and through the published port
	// on the bridge's address (hairpin NAT).
	inNS(t, pb, func() {
		if got, err := fetch("10.99.0.2:7000"); got != "from-a" {
			t.Errorf("b to a: %q %v", got, err)
		}
		if got, err := fetch("10.99.0.1:18181"); got != "from-a" {
			t.Errorf("b to a's published port: %q %v", got, err)
		}
	})
	// The port is taken now, for another container and at any address.
	q, _ := ParsePort("127.0.0.1:18181:7000")
	if err := CheckPorts(c, "ps_cccc", []Port{q}, nil); err == nil || !strings.Contains(err.Error(), "already published") {
		t.Errorf("CheckPorts of a published port: %v", err)
	}
	for _, id := range []string{ida, idb} {
		if err := Teardown(c, id); err != nil {
			t.Fatal(err)
		}
		if err := Teardown(c, id); err != nil {
			t.Fatalf("second teardown: %v", err)
		}
	}
	assertClean(t, c, ida, idb)
	if _, err := fetch("127.0.0.1:18181"); err == nil {
		t.Error("published port still answers after teardown")
	}
}

func assertClean(t *testing.T, c *Config, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if linkExists(VethName(id)) {
			t.Errorf("veth %s left", VethName(id))
		}
	}
	if ls, _ := Leases(c); len(ls) != 0 {
		t.Errorf("leases left: %v", ls)
	}
	n, err := openNft(c)
	if err != nil {
		t.Fatal(err)
	}
	if rs, _ := n.portRules(); len(rs) != 0 {
		t.Errorf("port rules left: %v", rs)
	}
}

func TestPortInUse(t *testing.T) {
	c := testConfig(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	p, _ := ParsePort("127.0.0.1:" + port + ":80")
	err = CheckPorts(c, "ps_x", []Port{p}, nil)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("CheckPorts of a bound port: %v", err)
	}
	pid := fakeInit(t)
	if _, err := Setup(c, "ps_dddddddddddddddddddddddddddddddd", pid, []Port{p}, nil); err == nil {
		t.Error("Setup published a bound port")
	}
	assertClean(t, c, "ps_dddddddddddddddddddddddddddddddd")
}

// A container whose namespace died without a teardown (bocker killed)
// leaves a lease and port rules; the next Setup takes them back.
func TestReclaim(t *testing.T) {
	c := testConfig(t)
	p, _ := ParsePort("127.0.0.1:18182:80")
	dead := "ps_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(c, dead, cmd.Process.Pid, []Port{p}, nil); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for i := 0; linkExists(VethName(dead)); i++ {
		if i > 300 {
			t.Fatal("veth outlived its namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	live := "ps_ffffffffffffffffffffffffffffffff"
	t.Cleanup(func() { _ = Teardown(c, live) })
	// While alive says the dead one runs, its address stays taken.
	a, err := Setup(c, live, fakeInit(t), nil, func(id string) bool { return id == dead })
	if err != nil {
		t.Fatal(err)
	}
	if a.IP.String() != "10.99.0.3" {
		t.Errorf("got %s while .2 is held", a.IP)
	}
	_ = Teardown(c, live)
	a, err = Setup(c, live, fakeInit(t), []Port{p}, func(string) bool { return false })
	if err != nil {
		t.Fatalf("reclaim of the dead one's port: %v", err)
	}
	if a.IP.String() == "10.99.0.2" {
		t.Errorf("got %s, just released", a.IP)
	}
	if _, err := os.Stat(filepath.Join(c.leaseDir(), "10.99.0.2")); err == nil {
		t.Error("the dead container's lease was not reclaimed")
	}
	if err := Teardown(c, live); err != nil {
		t.Fatal(err)
	}
	assertClean(t, c, dead, live)
}

// Leases go round the subnet, so an address freed is the last one given
// again, and a full subnet says so.
func TestLeaseRoundRobin(t *testing.T) {
	c, err := NewConfig("bkunit0", "10.99.9.0/29")
	if err != nil {
		t.Fatal(err)
	}
	c.StateDir = t.TempDir()
	if err := os.MkdirAll(c.leaseDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 5; i++ {
		ip, err := lease(c, fmt.Sprintf("ps_%d", i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if strings.Join(got, " ") != "10.99.9.2 10.99.9.3 10.99.9.4 10.99.9.5 10.99.9.6" {
		t.Errorf("leases %v", got)
	}
	if _, err := lease(c, "ps_x"); !errors.Is(err, ErrNoAddress) {
		t.Errorf("full subnet: %v", err)
	}
	if err := release(c, "ps_1"); err != nil {
		t.Fatal(err)
	}
	if ip, err := lease(c, "ps_y"); err != nil || ip.String() != "10.99.9.3" {
		t.Errorf("after release: %v %v", ip, err)
	}
	if err := release(c, "ps_3"); err != nil {
		t.Fatal(err)
	}
	if err := release(c, "ps_4"); err != nil {
		t.Fatal(err)
	}
	if ip, err := lease(c, "ps_z"); err != nil || ip.String() != "10.99.9.5" {
		t.Errorf("next after .3 is the free .5: %v %v", ip, err)
	}
}

// A container's connection out of the host leaves with the host's
// address. "Out" is a namespace of the test's own behind another veth,
// so no packet leaves the machine.
func TestOutboundNAT(t *testing.T) {
	c := testConfig(t)
	outside := fakeInit(t)
	la := netlink.NewLinkAttrs()
	la.Name = "bktestout0"
	la.Flags = net.FlagUp
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsPid(outside)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteLink("bktestout0") })
	l, err := netlink.LinkByName("bktestout0")
	if err != nil {
		t.Fatal(err)
	}
	_, hostNet, _ := net.ParseCIDR("10.97.0.1/24")
	hostNet.IP = net.ParseIP("10.97.0.1").To4()
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: hostNet}); err != nil {
		t.Fatal(err)
	}
	if err := configureInside(outside, &net.IPNet{IP: net.ParseIP("10.97.0.2").To4(), Mask: hostNet.Mask}, hostNet.IP); err != nil {
		t.Fatal(err)
	}
	serveFunc(t, outside, "7100", func(c net.Conn) string { return c.RemoteAddr().String() })
	id := "ps_abababababababababababababababab"
	t.Cleanup(func() { _ = Teardown(c, id) })
	ctr := fakeInit(t)
	if _, err := Setup(c, id, ctr, nil, nil); err != nil {
		t.Fatal(err)
	}
	inNS(t, ctr, func() {
		got, err := fetch("10.97.0.2:7100")
		if host, _, _ := net.SplitHostPort(got); host != "10.97.0.1" {
			t.Errorf("the outside saw the container as %q (%v), want the host's 10.97.0.1", got, err)
		}
	})
	if err := Teardown(c, id); err != nil {
		t.Fatal(err)
	}
	assertClean(t, c, id)
}

// A published UDP port carries datagrams both ways through 127.0.0.1.
func TestPublishUDP(t *testing.T) {
	c := testConfig(t)
	pid := fakeInit(t)
	id := "ps_cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
	t.Cleanup(func() { _ = Teardown(c, id) })
	p, _ := ParsePort("127.0.0.1:18183:7200/udp")
	if _, err := Setup(c, id, pid, []Port{p}, nil); err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn
	inNS(t, pid, func() {
		var err error
		if pc, err = net.ListenPacket("udp4", "0.0.0.0:7200"); err != nil {
			t.Error(err)
		}
	})
	if pc == nil {
		t.FailNow()
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			_, _ = pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	conn, err := net.Dial("udp4", "127.0.0.1:18183")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if got := string(buf[:n]); got != "echo ping" {
		t.Errorf("udp through 127.0.0.1:18183: %q %v", got, err)
	}
	if err := Teardown(c, id); err != nil {
		t.Fatal(err)
	}
	assertClean(t, c, id)
}

package main

// End-to-end tests of the bridge network. Packets go only to loopback
// and to the bridges and containers the tests make. Most tests use a
// bridge and subnet of their own (bkmain0, 10.98.0.0/24) so they run
// beside bockers using the default one; TestNetDefaultBridge uses it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	network "github.com/bocker/bocker/net"
)

const (
	testBridge = "bkmain0"
	testSubnet = "10.98.0.0/24"
)

var netVars = []string{"BOCKER_BRIDGE=" + testBridge, "BOCKER_SUBNET=" + testSubnet}

// newNetEnv is newEnv on the test bridge; the bridge goes when the test
// ends, after the containers.
func newNetEnv(t *testing.T) *env {
	t.Helper()
	needRoot(t)
	t.Cleanup(func() { deleteBridge(t, testBridge) })
	e := newEnv(t)
	e.vars = append(e.vars, netVars...)
	return e
}

// deleteBridge removes a test bridge unless some container (another
// test run's) still uses it.
func deleteBridge(t *testing.T, name string) {
	ents, _ := os.ReadDir(filepath.Join("/sys/class/net", name, "brif"))
	if len(ents) > 0 {
		return
	}
	if _, err := net.InterfaceByName(name); err != nil {
		return
	}
	c, err := network.NewConfig(name, "")
	if err != nil {
		t.Error(err)
		return
	}
	if ls, _ := network.Leases(c); len(ls) > 0 {
		return
	}
	if err := network.DeleteBridge(c); err != nil && !errors.Is(err, network.ErrBridgeInUse) {
		t.Error(err)
	}
}

var inetRe = regexp.MustCompile(`inet (10\.98\.0\.[0-9]+)/24`)

// addrOf is a running container's address as ps --format json prints it.
func (e *env) addrOf(id string) string {
	e.t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(e.ok("ps", "--format", "json")), "\n") {
		var c struct {
			ID      string `json:"id"`
			Address string `json:"address"`
		}
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			e.t.Fatalf("ps --format json line %q: %v", l, err)
		}
		if c.ID == id {
			return c.Address
		}
	}
	e.t.Fatalf("%s not in ps", id)
	return ""
}

// assertNetGone checks that nothing of the containers' networks is left:
// veth, lease or port rule.
func assertNetGone(t *testing.T, bridge string, ids []string) {
	t.Helper()
	c, err := network.NewConfig(bridge, "")
	if err != nil {
		t.Fatal(err)
	}
	leases, err := network.Leases(c)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := network.Published(c)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, l := range leases {
		held[l.ID] = true
	}
	// The kernel deletes a veth with its namespace, a moment after the
	// container's end.
	deadline := time.Now().Add(3 * time.Second)
	for _, id := range ids {
		for {
			_, err := net.InterfaceByName(network.VethName(id))
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("veth %s of %s left", network.VethName(id), id)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if held[id] {
			t.Errorf("lease of %s left", id)
		}
		if len(pub[id]) > 0 {
			t.Errorf("port rules of %s left: %v", id, pub[id])
		}
	}
}

func TestNetDefaultBridge(t *testing.T) {
	needRoot(t)
	if _, err := net.InterfaceByName("bridge0"); err != nil {
		// Made by this test, so removed by it (when nobody else uses it by then).
		t.Cleanup(func() { deleteBridge(t, "bridge0") })
	}
	e := newEnv(t)
	img := e.image()
	out := e.ok("run", img, "ip addr; ping -c 1 -W 3 10.0.0.1")
	if !regexp.MustCompile(`inet 10\.0\.0\.[0-9]+/24`).MatchString(out) {
		t.Errorf("ip addr shows no 10.0.0.x address:\n%s", out)
	}
	if !strings.Contains(out, "1 packets received") {
		t.Errorf("ping of the bridge got no answer:\n%s", out)
	}
	if _, err := net.InterfaceByName("bridge0"); err != nil {
		t.Errorf("bridge0: %v", err)
	}
	ids := e.containers()
	e.ok("rm", ids[0])
	assertNetGone(t, "bridge0", ids)
}

func TestNetContainerConfig(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	out := e.ok("run", "--name", "web1", "-h", "web1", img,
		"ip addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf; ip link show lo")
	m := inetRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no 10.98.0.x address on eth0:\n%s", out)
	}
	for _, want := range []string{"default via 10.98.0.1 dev eth0", m[1] + "\tweb1\n", "127.0.0.1\tlocalhost", "nameserver ", "<LOOPBACK,UP"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`nameserver (127\.|::1)`).MatchString(out) {
		t.Errorf("a loopback resolver in the container's resolv.conf:\n%s", out)
	}
	out = e.runEnv([]string{"BOCKER_DNS=192.0.2.53,192.0.2.54"}, "run", img, "cat /etc/resolv.conf").out
	if !strings.Contains(out, "nameserver 192.0.2.53\nnameserver 192.0.2.54\n") {
		t.Errorf("BOCKER_DNS not used:\n%s", out)
	}
}

func TestNetPingEachOther(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	a := strings.TrimSpace(e.ok("run", "-d", img, "sleep 30"))
	b := strings.TrimSpace(e.ok("run", "-d", img, "sleep 30"))
	ipa, ipb := e.addrOf(a), e.addrOf(b)
	if ipa == "" || ipb == "" || ipa == ipb {
		t.Fatalf("addresses %q and %q", ipa, ipb)
	}
	for _, p := range [][2]string{{a, ipb}, {b, ipa}} {
		if r := e.bk("exec", p[0], "ping", "-c", "1", "-W", "3", p[1]); r.code != 0 || !strings.Contains(r.out, "1 packets received") {
			t.Errorf("%s pinging %s: %+v", p[0], p[1], r)
		}
	}
	e.ok("rm", "-f", a, b)
	assertNetGone(t, testBridge, []string{a, b})
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// getEventually retries while the server in a just-started container
// comes up.
func getEventually(t *testing.T, url string) string {
	t.Helper()
	var err error
	var body string
	for i := 0; i < 100; i++ {
		if body, err = httpGet(url); err == nil {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("GET %s: %v", url, err)
	return ""
}

func TestNetHTTPAndPorts(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from httpd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(e.ok("run", "-d", "-p", "127.0.0.1:18080:80", "-p", "18093:80", "-v", www+":/www:ro", img, "httpd -f -p 80 -h /www"))
	addr := e.addrOf(id)
	if !strings.HasPrefix(addr, "10.98.0.") {
		t.Fatalf("address %q", addr)
	}
	for _, url := range []string{"http://" + addr + "/", "http://127.0.0.1:18080/", "http://127.0.0.1:18093/", "http://10.98.0.1:18093/"} {
		if got := getEventually(t, url); got != "hello from httpd\n" {
			t.Errorf("GET %s = %q", url, got)
		}
	}
	if out := e.ok("ps", "--format", "wide"); !strings.Contains(out, "127.0.0.1:18080:80/tcp") {
		t.Errorf("ps --format wide shows no port:\n%s", out)
	}
	// From another container: by address, and through the published
	// port on the bridge's address (hairpin).
	out := e.ok("run", img, `for a in `+addr+`:80 10.98.0.1:18093; do printf "GET / HTTP/1.0\r\n\r\n" | nc ${a%:*} ${a#*:} | tail -1; done`)
	if out != "hello from httpd\nhello from httpd\n" {
		t.Errorf("from another container: %q", out)
	}
	// A published port is taken for the next run, at any address.
	for _, p := range []string{"127.0.0.1:18080:80", "18080:80", "18093:81"} {
		r := e.bk("run", "-p", p, img, "true")
		if r.code != 125 || !strings.Contains(r.err, "already published") || strings.Count(r.err, "\n") != 1 {
			t.Errorf("run -p %s while published: %+v", p, r)
		}
	}
	e.ok("rm", "-f", id)
	assertNetGone(t, testBridge, []string{id})
	if _, err := httpGet("http://127.0.0.1:18080/"); err == nil {
		t.Error("127.0.0.1:18080 still answers after rm")
	}
}

func TestNetManyRuns(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	for i := 0; i < 50; i++ {
		out := e.ok("run", img, "ip -4 addr show eth0")
		if !inetRe.MatchString(out) {
			t.Fatalf("run %d: no address:\n%s", i, out)
		}
	}
	const n = 20
	addrs := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// The sleep keeps all twenty up at once.
			r := e.bk("run", img, "ip -4 addr show eth0; sleep 1")
			if m := inetRe.FindStringSubmatch(r.out); r.code == 0 && m != nil {
				addrs[i] = m[1]
			} else {
				t.Errorf("concurrent run %d: %+v", i, r)
			}
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, a := range addrs {
		if a != "" && seen[a] {
			t.Errorf("address %s given twice: %v", a, addrs)
		}
		seen[a] = true
	}
	assertNetGone(t, testBridge, e.containers())
}

func TestNetKilledRun(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	c := e.cmd(nil, "run", "-p", "127.0.0.1:18094:80", img, "touch /started; sleep 60")
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
	_ = c.Process.Signal(syscall.SIGKILL)
	_ = c.Wait()
	veth := network.VethName(ctr)
	for i := 0; ; i++ {
		if _, err := net.InterfaceByName(veth); err != nil {
			break
		}
		if i > 250 {
			t.Fatal("veth outlived the container")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The next run takes back the dead one's port (and its address when
	// it needs it).
	if out := e.ok("run", "-p", "127.0.0.1:18094:80", img, "ip -4 addr show eth0"); !inetRe.MatchString(out) {
		t.Errorf("run after the crash:\n%s", out)
	}
	assertNetGone(t, testBridge, []string{ctr})
	if got := e.ok("rm", ctr); got != "Removed: "+ctr+"\n" {
		t.Errorf("rm after the crash: %q", got)
	}
	assertNetGone(t, testBridge, e.containers())
}

func TestNetKilledThenRm(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	c := e.cmd(nil, "run", "-p", "127.0.0.1:18095:80", img, "touch /started; sleep 60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if ids := e.containers(); len(ids) == 1 && e.bk("exec", ids[0], "ls", "/started").code == 0 {
			break
		}
		if i > 200 {
			t.Fatal("container never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctr := e.containers()[0]
	_ = c.Process.Signal(syscall.SIGKILL)
	_ = c.Wait()
	for i := 0; e.bk("exec", ctr, "true").code == 0; i++ {
		if i > 250 {
			t.Fatal("container outlived bocker")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.ok("rm", ctr); got != "Removed: "+ctr+"\n" {
		t.Errorf("rm after the crash: %q", got)
	}
	assertNetGone(t, testBridge, []string{ctr})
}

func TestNetNoneAndHost(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	out := e.ok("run", "--network", "none", img, "ip link")
	if links := regexp.MustCompile(`(?m)^[0-9]+: ([^:@]+)`).FindAllStringSubmatch(out, -1); len(links) != 1 || links[0][1] != "lo" {
		t.Errorf("--network none: %s", out)
	}
	out = e.ok("run", "--network", "host", img, "ip link")
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "bk") {
			continue // other tests' veths come and go
		}
		if !strings.Contains(out, ": "+i.Name+":") && !strings.Contains(out, ": "+i.Name+"@") {
			t.Errorf("--network host lacks %s:\n%s", i.Name, out)
		}
	}
}

func TestNetBadInput(t *testing.T) {
	e := newNetEnv(t)
	img := e.image()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	busyUDP := u.LocalAddr().(*net.UDPAddr).Port
	for _, c := range []struct {
		vars []string
		args []string
		want string
	}{
		{nil, []string{"-p", "80"}, "-p"},
		{nil, []string{"-p", "x:80"}, "-p"},
		{nil, []string{"-p", "70000:80"}, "-p"},
		{nil, []string{"-p", "8080:80/sctp"}, "tcp or udp"},
		{nil, []string{"-p", "::1:8080:80"}, "-p"},
		{nil, []string{"-p", fmt.Sprintf("127.0.0.1:%d:80", busy)}, "in use"},
		{nil, []string{"-p", fmt.Sprintf("%d:80", busy)}, "in use"},
		{nil, []string{"-p", fmt.Sprintf("127.0.0.1:%d:80/udp", busyUDP)}, "in use"},
		{nil, []string{"-p", "18096:80", "-p", "127.0.0.1:18096:81"}, "twice"},
		{nil, []string{"--network", "none", "-p", "18097:80"}, "bridge"},
		{nil, []string{"--network", "nat"}, "--network"},
		{[]string{"BOCKER_SUBNET=10.98.0/24"}, nil, "subnet"},
		{[]string{"BOCKER_SUBNET=10.98.0.0/31"}, nil, "subnet"},
		{[]string{"BOCKER_BRIDGE=a-very-long-bridge-name"}, nil, "bridge"},
		{[]string{"BOCKER_DNS=dns.example"}, nil, "BOCKER_DNS"},
	} {
		r := e.runEnv(c.vars, append(append([]string{"run"}, c.args...), img, "true")...)
		// Docker's options make it Docker's 125; the environment alone
		// leaves the script's form and its 1.
		want := 1
		if len(c.args) > 0 {
			want = 125
		}
		if r.code != want || r.out != "" || strings.Count(r.err, "\n") != 1 || !strings.HasPrefix(r.err, "bocker: ") || !strings.Contains(r.err, c.want) {
			t.Errorf("%v run %v: exit %d, stdout %q, stderr %q", c.vars, c.args, r.code, r.out, r.err)
		}
	}
	if ids := e.containers(); len(ids) != 0 {
		t.Errorf("bad input left containers %v", ids)
	}
	if _, err := net.InterfaceByName("a-very-long-bri"); err == nil {
		t.Error("a bridge was made for bad input")
	}
}

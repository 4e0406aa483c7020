package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Attachment is what Setup gave a container.
type Attachment struct {
	IP    net.IP
	Veth  string
	Ports []Port
}

// CheckPorts refuses, before anything is created, publications that
// repeat a host port, that a program on the host already listens on, or
// that another container already publishes (one that is gone, as Setup's
// reclaim judges it, does not count).
func CheckPorts(c *Config, id string, ports []Port, alive func(id string) bool) error {
	if err := checkDistinct(ports); err != nil {
		return err
	}
	for _, p := range ports {
		if err := checkBindable(p); err != nil {
			return err
		}
	}
	if len(ports) == 0 {
		return nil
	}
	n, err := openNft(c)
	if err != nil {
		return err
	}
	rules, err := n.portRules()
	if err != nil {
		return err
	}
	gone := map[string]bool{}
	for _, r := range rules {
		gone[r.id] = stale(r.id, alive)
	}
	return checkPublished(rules, id, ports, gone)
}

// stale tells whether a lease or rule holder is gone: its veth died with
// its namespace and alive, when given, agrees.
func stale(id string, alive func(string) bool) bool {
	return !linkExists(VethName(id)) && (alive == nil || !alive(id))
}

// checkPublished refuses ports another container's rules hold; stale
// holders (ids in gone) do not count.
func checkPublished(rules []portRule, id string, ports []Port, gone map[string]bool) error {
	for _, r := range rules {
		if r.id == id || gone[r.id] {
			continue
		}
		for _, p := range ports {
			if p.overlaps(r.port) {
				return fmt.Errorf("-p %s: host port %d/%s is already published by container %s", p, p.HostPort, p.Proto, r.id)
			}
		}
	}
	return nil
}

// Setup plugs the container whose init is pid into the bridge: a veth
// pair with eth0 inside, a leased address, the default route, lo up, and
// its published ports. alive tells whether a container still runs; an
// address or port held by one that does not, and whose veth is gone (its
// namespace died with it), is reclaimed. On error nothing of id is left.
func Setup(c *Config, id string, pid int, ports []Port, alive func(id string) bool) (*Attachment, error) {
	if err := checkDistinct(ports); err != nil {
		return nil, err
	}
	ip, err := setupHost(c, id, pid, ports, alive)
	if err != nil {
		_ = Teardown(c, id)
		return nil, err
	}
	addr := &net.IPNet{IP: ip, Mask: c.Subnet.Mask}
	if err := configureInside(pid, addr, c.Gateway); err != nil {
		_ = Teardown(c, id)
		return nil, err
	}
	return &Attachment{IP: ip, Veth: VethName(id), Ports: ports}, nil
}

// setupHost is the part under the lock: the host's side and the lease.
func setupHost(c *Config, id string, pid int, ports []Port, alive func(string) bool) (net.IP, error) {
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	br, err := ensureBridge(c)
	if err != nil {
		return nil, err
	}
	if err := enableForwarding(c.Bridge); err != nil {
		return nil, err
	}
	n, err := openNft(c)
	if err != nil {
		return nil, err
	}
	if err := n.ensure(c); err != nil {
		return nil, err
	}
	rules, err := n.portRules()
	if err != nil {
		return nil, err
	}
	// A crashed earlier start of this same container may have left its
	// own pieces; they go first.
	if err := teardownLocked(c, n, rules, id); err != nil {
		return nil, err
	}
	gone, err := reclaim(c, n, rules, id, alive)
	if err != nil {
		return nil, err
	}
	if err := checkPublished(rules, id, ports, gone); err != nil {
		return nil, err
	}
	for _, p := range ports {
		if err := checkBindable(p); err != nil {
			return nil, err
		}
	}
	// Leased first, under the lock: a crash before the veth exists
	// leaves a lease that the next allocation sees as stale.
	ip, err := lease(c, id)
	if err != nil {
		return nil, err
	}
	if err := createVeth(VethName(id), br, pid, ip); err != nil {
		return nil, err
	}
	for _, p := range ports {
		n.addPort(id, p, ip)
	}
	if err := n.flush(); err != nil {
		return nil, fmt.Errorf("publish ports of %s: %w", id, err)
	}
	return ip, nil
}

// reclaim frees the leases and port rules of containers that are gone:
// their veth no longer exists and alive (when given) says they stopped.
// It returns the ids it reclaimed.
func reclaim(c *Config, n *nft, rules []portRule, self string, alive func(string) bool) (map[string]bool, error) {
	ls, err := Leases(c)
	if err != nil {
		return nil, err
	}
	owners := map[string]bool{}
	for _, l := range ls {
		owners[l.ID] = true
	}
	for _, r := range rules {
		owners[r.id] = true
	}
	gone := map[string]bool{}
	for id := range owners {
		if id == self || !stale(id, alive) {
			continue
		}
		gone[id] = true
		if err := n.deletePorts(rules, id); err != nil {
			return nil, err
		}
		if err := release(c, id); err != nil {
			return nil, err
		}
	}
	if err := n.flush(); err != nil {
		return nil, fmt.Errorf("reclaim port rules: %w", err)
	}
	return gone, nil
}

// Teardown removes what Setup made for id: its veth, its port rules and
// its lease. Calling it again, or for a container that never had a
// network, does nothing.
func Teardown(c *Config, id string) error {
	return teardown(c, id, true)
}

// Release is Teardown once the container's namespace is gone (its init
// was waited for): the kernel deletes the veth with the namespace, in the
// background, which spares the ~15 ms a synchronous delete waits for
// the network's RCU grace periods.
func Release(c *Config, id string) error {
	return teardown(c, id, false)
}

func teardown(c *Config, id string, veth bool) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	n, err := openNft(c)
	if err != nil {
		return err
	}
	rules, err := n.portRules()
	if err != nil {
		return err
	}
	if !veth {
		return releaseLocked(c, n, rules, id)
	}
	return teardownLocked(c, n, rules, id)
}

func teardownLocked(c *Config, n *nft, rules []portRule, id string) error {
	if err := deleteLink(VethName(id)); err != nil && !errors.Is(err, unix.ENODEV) {
		return errors.Join(err, releaseLocked(c, n, rules, id))
	}
	return releaseLocked(c, n, rules, id)
}

// releaseLocked removes id's port rules and lease.
func releaseLocked(c *Config, n *nft, rules []portRule, id string) error {
	var errs []error
	if err := n.deletePorts(rules, id); err != nil {
		errs = append(errs, err)
	} else if err := n.flush(); err != nil {
		errs = append(errs, fmt.Errorf("delete port rules of %s: %w", id, err))
	}
	if err := release(c, id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Published lists the ports published on the host, by container id.
func Published(c *Config) (map[string][]Port, error) {
	n, err := openNft(c)
	if err != nil {
		return nil, err
	}
	rules, err := n.portRules()
	if err != nil {
		return nil, err
	}
	out := map[string][]Port{}
	for _, r := range rules {
		out[r.id] = append(out[r.id], r.port)
	}
	return out, nil
}

// ErrBridgeInUse is returned by DeleteBridge while containers are on it.
var ErrBridgeInUse = errors.New("bridge in use")

// DeleteBridge removes a bridge and its NAT rules (and bocker's table
// with the last bridge), for tests and for an administrator cleaning up.
// A bridge with leases held is refused: its containers would lose their
// network.
func DeleteBridge(c *Config) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ls, err := Leases(c)
	if err != nil {
		return err
	}
	if len(ls) > 0 {
		return fmt.Errorf("delete bridge %s: %w: %d containers hold addresses on it (first %s)", c.Bridge, ErrBridgeInUse, len(ls), ls[0].ID)
	}
	if err := deleteLink(c.Bridge); err != nil {
		return err
	}
	n, err := openNft(c)
	if err != nil {
		return err
	}
	if err := n.dropBridge(c); err != nil {
		return err
	}
	// Empty only: a lease left means a container still holds it.
	_ = os.Remove(c.cursorFile())
	_ = os.Remove(c.leaseDir())
	_ = os.Remove(filepath.Dir(c.leaseDir()))
	return nil
}

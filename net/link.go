package network

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ensureBridge creates the bridge with its address when missing and
// brings it up; an existing one is reused as it is, plus the address.
func ensureBridge(c *Config) (netlink.Link, error) {
	br, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("look up bridge %s: %w", c.Bridge, err)
		}
		br, err = createBridge(c)
		if err != nil {
			return nil, err
		}
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %s: a %s link of that name exists", c.Bridge, br.Type())
	}
	if err := ensureAddr(br, c.gatewayNet()); err != nil {
		return nil, err
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return nil, fmt.Errorf("bring up bridge %s: %w", c.Bridge, err)
		}
	}
	return br, nil
}

func createBridge(c *Config) (netlink.Link, error) {
	la := netlink.NewLinkAttrs()
	la.Name = c.Bridge
	// A fixed address: otherwise the bridge takes its lowest port's,
	// which changes as containers come and go and stales their ARP caches.
	la.HardwareAddr = bridgeMAC(c.Bridge)
	br := &netlink.Bridge{LinkAttrs: la}
	if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create bridge %s: %w", c.Bridge, err)
	}
	l, err := netlink.LinkByName(c.Bridge)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", c.Bridge, err)
	}
	return l, nil
}

// bridgeMAC is a locally administered unicast address derived from the
// bridge's name, so it is the same after every re-creation.
func bridgeMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("bocker-bridge:" + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

func ensureAddr(l netlink.Link, ipnet *net.IPNet) error {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IPNet.IP.Equal(ipnet.IP) {
			return nil
		}
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipnet}); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("add %s to %s: %w", ipnet, l.Attrs().Name, err)
	}
	return nil
}

// enableForwarding turns on what routing between the bridge, the host
// and its loopback needs: IPv4 forwarding, and route_localnet on the
// bridge so that 127.0.0.1:port DNATed to a container may leave through it.
func enableForwarding(bridge string) error {
	for _, p := range []string{
		"/proc/sys/net/ipv4/ip_forward",
		filepath.Join("/proc/sys/net/ipv4/conf", bridge, "route_localnet"),
	} {
		if err := writeSysctl(p, "1"); err != nil {
			return err
		}
	}
	return nil
}

func writeSysctl(p, v string) error {
	if b, err := os.ReadFile(p); err == nil && string(b) == v+"\n" {
		return nil
	}
	if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("set %s: %w", p, err)
	}
	return nil
}

// createVeth makes the pair, up and on the bridge, with its peer born as
// eth0 inside the container's network namespace, so no name is ever
// taken on the host but the host end's.
func createVeth(host string, br netlink.Link, pid int, ip net.IP) error {
	la := netlink.NewLinkAttrs()
	la.Name = host
	la.MasterIndex = br.Attrs().Index
	la.Flags = net.FlagUp
	v := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsPid(pid), PeerHardwareAddr: containerMAC(ip)}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s: %w", host, err)
	}
	return nil
}

// containerMAC derives eth0's address from its IP, as Docker does: the
// next container on an address answers with the MAC the host's and the
// other containers' ARP caches already hold for it.
func containerMAC(ip net.IP) net.HardwareAddr {
	return append(net.HardwareAddr{0x02, 0x62}, ip.To4()...)
}

// linkExists reports whether a link of that name is on the host; an error
// other than "not found" counts as present, so nothing is reclaimed on doubt.
func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	return !errors.As(err, &nf)
}

func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// configureInside sets up the container's side through a netlink socket
// opened in its namespace; the calling thread never changes namespace.
func configureInside(pid int, addr *net.IPNet, gw net.IP) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("open network namespace of pid %d: %w", pid, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in namespace of pid %d: %w", pid, err)
	}
	defer h.Close()
	for _, name := range []string{"lo", "eth0"} {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("container %s: %w", name, err)
		}
		if name == "eth0" {
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: addr}); err != nil {
				return fmt.Errorf("add %s to container eth0: %w", addr, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring up container %s: %w", name, err)
		}
		if name == "eth0" {
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("add default route via %s: %w", gw, err)
			}
		}
	}
	return nil
}

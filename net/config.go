// Package network gives containers the bash script's bridge network from
// Go alone: a bridge, a veth pair per container, address leases on disk,
// and NAT and published ports in an nftables table of bocker's own. It
// never runs ip, iptables or nft.
package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sync"
)

// Defaults are the bash script's.
const (
	DefaultBridge   = "bridge0"
	DefaultSubnet   = "10.0.0.1/24"
	DefaultTable    = "bocker"
	DefaultStateDir = "/run/bocker/net"
)

// Config names the bridge network a container joins.
type Config struct {
	Bridge  string
	Subnet  *net.IPNet // the network address and mask
	Gateway net.IP     // the bridge's own address
	// Table is the nftables table (family ip) that holds every rule
	// bocker adds; no other table is read or changed.
	Table string
	// StateDir holds the lock and the leases. It lives on tmpfs (/run)
	// by default because the veths it describes die with a reboot too,
	// and it is shared by every store on the host because they share
	// the bridge.
	StateDir string
}

var ifnameRe = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

// NewConfig checks a bridge name and a subnet (CIDR); empty strings take
// the defaults. A subnet given by its network address has the bridge on
// the first host address; one given by a host address has the bridge
// there.
func NewConfig(bridge, subnet string) (*Config, error) {
	if bridge == "" {
		bridge = DefaultBridge
	}
	if !ifnameRe().MatchString(bridge) {
		return nil, fmt.Errorf("bridge name %q: use at most 15 letters, digits, '_', '-' or '.'", bridge)
	}
	if subnet == "" {
		subnet = DefaultSubnet
	}
	gw, ipnet, err := parseSubnet(subnet)
	if err != nil {
		return nil, err
	}
	return &Config{Bridge: bridge, Subnet: ipnet, Gateway: gw, Table: DefaultTable, StateDir: DefaultStateDir}, nil
}

func parseSubnet(s string) (net.IP, *net.IPNet, error) {
	ip, ipnet, err := net.ParseCIDR(s)
	if err != nil || ip.To4() == nil {
		return nil, nil, fmt.Errorf("subnet %q: expected an IPv4 CIDR like 10.0.0.1/24", s)
	}
	ones, _ := ipnet.Mask.Size()
	if ones < 8 || ones > 29 {
		return nil, nil, fmt.Errorf("subnet %q: the prefix length must be between 8 and 29", s)
	}
	ip = ip.To4()
	ipnet.IP = ipnet.IP.To4()
	if ip.Equal(ipnet.IP) {
		ip = addIP(ip, 1)
	}
	if ip.Equal(broadcast(ipnet)) {
		return nil, nil, fmt.Errorf("subnet %q: the bridge cannot take the broadcast address", s)
	}
	return ip, ipnet, nil
}

func ipToU32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func u32ToIP(n uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, n)
	return ip
}

func addIP(ip net.IP, n uint32) net.IP { return u32ToIP(ipToU32(ip) + n) }

func broadcast(n *net.IPNet) net.IP {
	return u32ToIP(ipToU32(n.IP) | ^binary.BigEndian.Uint32(net.IP(n.Mask).To4()))
}

// hostRange is the subnet's host addresses, first to last; the gateway
// is among them.
func (c *Config) hostRange() (first, last uint32) {
	return ipToU32(c.Subnet.IP) + 1, ipToU32(broadcast(c.Subnet)) - 1
}

// hosts are the addresses a container may lease, lowest first (for
// tests: a /8 has millions).
func (c *Config) hosts() []net.IP {
	var ips []net.IP
	first, last := c.hostRange()
	for n := first; n <= last; n++ {
		if ip := u32ToIP(n); !ip.Equal(c.Gateway) {
			ips = append(ips, ip)
		}
	}
	return ips
}

func (c *Config) gatewayNet() *net.IPNet {
	return &net.IPNet{IP: c.Gateway, Mask: c.Subnet.Mask}
}

// ErrNoAddress is returned when every address of the subnet is leased.
var ErrNoAddress = errors.New("no free address left in the subnet")

// VethName is the host end of a container's veth pair: short enough for
// IFNAMSIZ and derived from the id alone, so teardown after a crash
// finds it without any saved state.
func VethName(id string) string {
	s := id
	if len(s) > 3 && s[2] == '_' {
		s = s[3:]
	}
	if len(s) > 12 {
		s = s[:12]
	}
	return "bk" + s
}

// lazyRegexp compiles on first use: every run re-executes this binary for
// the container's init, and package-level compiles would cost each of
// those execs (a {0,62} repeat alone is dozens of instructions).
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

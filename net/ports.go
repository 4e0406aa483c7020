package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
)

// Port is one published port: traffic to HostIP:HostPort (any local
// address when HostIP is nil) goes to the container's CtrPort.
type Port struct {
	HostIP   net.IP
	HostPort uint16
	CtrPort  uint16
	Proto    string // tcp or udp
}

// ParsePort reads Docker's -p form: [hostip:]hostport:ctrport[/tcp|/udp].
func ParsePort(s string) (Port, error) {
	bad := func(why string) (Port, error) {
		return Port{}, fmt.Errorf("-p %q: %s (expected [hostip:]hostport:containerport[/tcp|/udp])", s, why)
	}
	spec, proto, hasProto := strings.Cut(s, "/")
	p := Port{Proto: "tcp"}
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return bad("the protocol must be tcp or udp")
		}
		p.Proto = proto
	}
	parts := strings.Split(spec, ":")
	switch len(parts) {
	case 2:
	case 3:
		ip := net.ParseIP(parts[0]).To4()
		if ip == nil {
			return bad("the host address must be IPv4")
		}
		if !ip.IsUnspecified() {
			p.HostIP = ip
		}
		parts = parts[1:]
	default:
		return bad("give both the host port and the container port")
	}
	var err error
	if p.HostPort, err = parsePortNum(parts[0]); err != nil {
		return bad("host port " + err.Error())
	}
	if p.CtrPort, err = parsePortNum(parts[1]); err != nil {
		return bad("container port " + err.Error())
	}
	return p, nil
}

func parsePortNum(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// String is the canonical -p form; ParsePort reads it back.
func (p Port) String() string {
	ip := "0.0.0.0"
	if p.HostIP != nil {
		ip = p.HostIP.String()
	}
	return fmt.Sprintf("%s:%d:%d/%s", ip, p.HostPort, p.CtrPort, p.Proto)
}

// overlaps tells whether two publications would catch the same packets.
func (p Port) overlaps(q Port) bool {
	if p.Proto != q.Proto || p.HostPort != q.HostPort {
		return false
	}
	return p.HostIP == nil || q.HostIP == nil || p.HostIP.Equal(q.HostIP)
}

// checkBindable refuses a host port some program already listens on:
// the DNAT rule would silently steal its traffic.
func checkBindable(p Port) error {
	ip := "0.0.0.0"
	if p.HostIP != nil {
		ip = p.HostIP.String()
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(int(p.HostPort)))
	var c io.Closer
	var err error
	if p.Proto == "udp" {
		c, err = net.ListenPacket("udp4", addr)
	} else {
		c, err = net.Listen("tcp4", addr)
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("-p %s: host port %s/%s is in use", p, addr, p.Proto)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("-p %s: %s is not an address of this host", p, ip)
	case err != nil:
		return fmt.Errorf("-p %s: check host port %s/%s: %w", p, addr, p.Proto, err)
	}
	return c.Close()
}

// checkDistinct refuses two publications of one port in a single run.
func checkDistinct(ports []Port) error {
	for i := range ports {
		for j := i + 1; j < len(ports); j++ {
			if ports[i].overlaps(ports[j]) {
				return fmt.Errorf("-p %s and -p %s: the same host port twice", ports[i], ports[j])
			}
		}
	}
	return nil
}

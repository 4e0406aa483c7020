package network

import (
	"bufio"
	"fmt"
	"net"
	"strings"
)

// FallbackDNS replaces the host's loopback resolvers, which a container
// in its own network namespace cannot reach.
var FallbackDNS = []string{"8.8.8.8"}

// Hosts is a container's /etc/hosts: localhost and its own name at its
// bridge address.
func Hosts(name string, ip net.IP) string {
	return "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + ip.String() + "\t" + name + "\n"
}

// ParseDNS reads BOCKER_DNS: addresses separated by commas.
func ParseDNS(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if net.ParseIP(f) == nil {
			return nil, fmt.Errorf("BOCKER_DNS=%q: %q is not an IP address", s, f)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("BOCKER_DNS=%q: no address given", s)
	}
	return out, nil
}

// ResolvConf turns the host's resolv.conf into a container's. With dns
// set, its servers replace the host's; otherwise loopback servers are
// dropped and, when none is left, FallbackDNS is used. Search and
// options lines are kept.
func ResolvConf(host string, dns []string) string {
	var b strings.Builder
	var servers []string
	sc := bufio.NewScanner(strings.NewReader(host))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip != nil && !ip.IsLoopback() {
				servers = append(servers, f[1])
			}
			continue
		}
		b.WriteString(line + "\n")
	}
	if len(dns) > 0 {
		servers = dns
	} else if len(servers) == 0 {
		servers = FallbackDNS
	}
	for _, s := range servers {
		b.WriteString("nameserver " + s + "\n")
	}
	return b.String()
}

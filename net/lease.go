package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

func (c *Config) leaseDir() string { return filepath.Join(c.StateDir, c.Bridge, "leases") }

// lock serialises every change to leases, veths and port rules of all
// bridges: each holder runs for milliseconds.
func (c *Config) lock() (unlock func(), err error) {
	if err := os.MkdirAll(c.leaseDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create lease dir: %w", err)
	}
	p := filepath.Join(c.StateDir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open network lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

// Lease is one leased address and the container holding it.
type Lease struct {
	IP net.IP
	ID string
}

// Leases lists the addresses leased on the bridge.
func Leases(c *Config) ([]Lease, error) {
	ents, err := os.ReadDir(c.leaseDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	var out []Lease
	for _, e := range ents {
		ip := net.ParseIP(e.Name()).To4()
		if ip == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.leaseDir(), e.Name()))
		if err != nil {
			continue
		}
		out = append(out, Lease{IP: ip, ID: strings.TrimSpace(string(b))})
	}
	return out, nil
}

func (c *Config) cursorFile() string { return filepath.Join(c.StateDir, c.Bridge, "last") }

// lease takes the next free address after the one leased last, wrapping
// around the subnet: an address just released is not handed out again at
// once, while the kernel may still be deleting the namespace that had it.
// O_EXCL keeps it safe even against a bocker that does not take the lock.
func lease(c *Config, id string) (net.IP, error) {
	first, last := c.hostRange()
	size := last - first + 1
	start := first
	if b, err := os.ReadFile(c.cursorFile()); err == nil {
		if ip := net.ParseIP(strings.TrimSpace(string(b))).To4(); ip != nil && c.Subnet.Contains(ip) {
			start = ipToU32(ip) + 1
		}
	}
	for k := uint32(0); k < size; k++ {
		ip := u32ToIP(first + (start-first+k)%size)
		if ip.Equal(c.Gateway) {
			continue
		}
		p := filepath.Join(c.leaseDir(), ip.String())
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lease %s: %w", ip, err)
		}
		_, werr := f.WriteString(id + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(p)
			return nil, fmt.Errorf("lease %s: %w", ip, werr)
		}
		// Only a hint: lost, the next lease starts from the bottom.
		_ = os.WriteFile(c.cursorFile(), []byte(ip.String()+"\n"), 0o600)
		return ip, nil
	}
	return nil, fmt.Errorf("lease on %s (%s): %w", c.Bridge, c.Subnet, ErrNoAddress)
}

// release removes the leases id holds, never another's.
func release(c *Config, id string) error {
	ls, err := Leases(c)
	if err != nil {
		return err
	}
	for _, l := range ls {
		if l.ID != id {
			continue
		}
		if err := os.Remove(filepath.Join(c.leaseDir(), l.IP.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("release %s: %w", l.IP, err)
		}
	}
	return nil
}

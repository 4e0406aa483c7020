package container

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var capNames = map[string]uintptr{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return uintptr(n)
}

// capMask turns names into a bit set. Unknown names are an error: a typo
// must not silently grant or withhold a capability.
func capMask(names []string, last uintptr) (uint64, error) {
	var m uint64
	for _, n := range names {
		c, ok := capNames[strings.ToUpper(n)]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		if c > last {
			continue // the kernel does not know it; neither can the process use it
		}
		m |= 1 << c
	}
	return m, nil
}

// applyCaps sets the calling thread's capability sets. It must run on the
// thread that then calls execve: capabilities are per thread.
// applyCaps drops the bounding set (unless dropped already) and sets the
// other sets. A process that changed to a non-root user has lost its
// permitted and effective sets to setuid already, as under Docker, so
// only the bounding and ambient sets are left to settle.
func applyCaps(c *specs.LinuxCapabilities) error { return applyCapsOpt(c, true, true) }

func applyCapsOpt(c *specs.LinuxCapabilities, doBounding, doSets bool) error {
	if c == nil {
		c = &specs.LinuxCapabilities{}
	}
	last := lastCap()
	bounding, err := capMask(c.Bounding, last)
	if err != nil {
		return err
	}
	eff, err := capMask(c.Effective, last)
	if err != nil {
		return err
	}
	perm, err := capMask(c.Permitted, last)
	if err != nil {
		return err
	}
	inh, err := capMask(c.Inheritable, last)
	if err != nil {
		return err
	}
	amb, err := capMask(c.Ambient, last)
	if err != nil {
		return err
	}
	for i := uintptr(0); i <= last && doBounding; i++ {
		if bounding&(1<<i) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, i, 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d from bounding set: %w", i, err)
			}
		}
	}
	if !doSets {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("clear ambient capabilities: %w", err)
		}
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(perm), Inheritable: uint32(inh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(perm >> 32), Inheritable: uint32(inh >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for i := uintptr(0); i <= last; i++ {
		if amb&(1<<i) != 0 {
			if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, i, 0, 0); err != nil {
				return fmt.Errorf("raise ambient capability %d: %w", i, err)
			}
		}
	}
	return nil
}

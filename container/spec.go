package container

import (
	"os"

	"github.com/bocker/bocker/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCaps is Docker's default capability set.
var DefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultMaskedPaths are hidden from the container, as Docker hides them:
// they leak host state or let a process poke the kernel.
var DefaultMaskedPaths = []string{
	"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
	"/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

// DefaultReadonlyPaths are visible but read-only, as in Docker.
var DefaultReadonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

func u32(v uint32) *uint32 { return &v }
func i64(v int64) *int64   { return &v }
func mode(m uint32) *os.FileMode {
	fm := os.FileMode(m)
	return &fm
}

// DefaultSpec returns the runtime spec Docker would give a container:
// its mounts, devices, capabilities, seccomp profile, masked paths and
// namespaces. The
// caller fills in the root, the process and the resources.
func DefaultSpec() *specs.Spec {
	caps := append([]string(nil), DefaultCaps...)
	devs := []specs.LinuxDevice{
		{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
		{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
		{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
		{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
		{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
		{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{},
		Process: &specs.Process{
			Cwd: "/",
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace},
			},
			Devices: devs,
			// Docker's profile, for the capabilities above: change the
			// bounding set and this must be recomputed.
			Seccomp:       seccomp.DefaultFor(caps),
			MaskedPaths:   append([]string(nil), DefaultMaskedPaths...),
			ReadonlyPaths: append([]string(nil), DefaultReadonlyPaths...),
			Resources: &specs.LinuxResources{
				Devices: DefaultDeviceRules(),
			},
		},
	}
}

// DefaultDeviceRules is Docker's device cgroup: deny everything, then
// allow the standard nodes. CAP_MKNOD is in the default set, so this is
// what keeps a container from making and opening the host's disks.
func DefaultDeviceRules() []specs.LinuxDeviceCgroup {
	allow := func(t string, maj, min int64, acc string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: t, Access: acc}
		if maj >= 0 {
			r.Major = i64(maj)
		}
		if min >= 0 {
			r.Minor = i64(min)
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		allow("c", -1, -1, "m"), // mknod of char devices, not their use
		allow("b", -1, -1, "m"),
		allow("c", 1, 3, "rwm"),    // null
		allow("c", 1, 5, "rwm"),    // zero
		allow("c", 1, 7, "rwm"),    // full
		allow("c", 1, 8, "rwm"),    // random
		allow("c", 1, 9, "rwm"),    // urandom
		allow("c", 5, 0, "rwm"),    // tty
		allow("c", 5, 1, "rwm"),    // console
		allow("c", 5, 2, "rwm"),    // ptmx
		allow("c", 136, -1, "rwm"), // pts
		allow("c", 10, 200, "rwm"), // tun
	}
}

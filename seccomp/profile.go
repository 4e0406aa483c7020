// Package seccomp turns an OCI runtime-spec seccomp profile into a
// classic BPF program and installs it, in pure Go (bocker is built with
// CGO_ENABLED=0, so libseccomp is out of reach). It also hands out
// Docker's default profile.
package seccomp

//go:generate go run mksysnum.go

import (
	"fmt"

	profiles "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// dockerCaps is Docker's default capability set, the one Default
// assumes (container.DefaultCaps holds the same list).
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Default is Docker's default profile for a container with Docker's
// default capabilities.
func Default() *specs.LinuxSeccomp { return DefaultFor(dockerCaps) }

// DefaultFor is Docker's default profile for a container whose bounding
// set is caps: holding CAP_SYS_ADMIN, for instance, allows mount, unshare
// and namespace flags to clone, as in Docker. The rules for the running
// architecture and kernel are kept, as dockerd keeps them.
//
// It panics only if uname(2) fails or the kernel release does not start
// with "<major>.<minor>", neither of which Linux does: returning no
// profile instead would silently run containers unconfined.
func DefaultFor(caps []string) *specs.LinuxSeccomp {
	rs := &specs.Spec{Process: &specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: caps},
	}}
	s, err := profiles.GetDefaultProfile(rs)
	if err != nil {
		panic(fmt.Sprintf("seccomp: build Docker's default profile: %v", err))
	}
	return s
}

// FromJSON reads a profile in Docker's format (what `docker run
// --security-opt seccomp=FILE` takes: the runtime spec's fields plus
// archMap and rules conditional on capabilities, architecture and
// kernel) for a container whose bounding set is caps.
func FromJSON(data []byte, caps []string) (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{
		Capabilities: &specs.LinuxCapabilities{Bounding: caps},
	}}
	s, err := profiles.LoadProfile(string(data), rs)
	if err != nil {
		return nil, fmt.Errorf("read seccomp profile: %w", err)
	}
	return s, nil
}

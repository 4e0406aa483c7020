package applets

import (
	"fmt"
	"os"
	"strings"

	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// security is what run's --security-opt options ask for, in Docker's
// forms: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges.
// Docker also takes ':' for '='.
type security struct {
	seccompSet bool
	seccomp    *specs.LinuxSeccomp // nil with seccompSet: unconfined
	noNewPrivs bool
}

func parseSecurityOpts(vals []string) (security, error) {
	var s security
	for _, v := range vals {
		k, val, hasVal := strings.Cut(v, "=")
		if !hasVal {
			k, val, hasVal = strings.Cut(v, ":")
		}
		switch {
		case k == "no-new-privileges" && (!hasVal || val == "true" || val == "false"):
			s.noNewPrivs = !hasVal || val == "true"
		case k == "seccomp" && val == "unconfined":
			s.seccompSet, s.seccomp = true, nil
		case k == "seccomp" && val != "":
			data, err := os.ReadFile(val)
			if err != nil {
				return s, fmt.Errorf("run: --security-opt %s: %w", v, err)
			}
			// The profile's capability-conditional rules follow the
			// container's bounding set, which is the default one.
			p, err := seccomp.FromJSON(data, container.DefaultCaps)
			if err != nil {
				return s, fmt.Errorf("run: --security-opt %s: %w", v, err)
			}
			if _, err := seccomp.Compile(p); err != nil {
				return s, fmt.Errorf("run: --security-opt %s: %w", v, err)
			}
			s.seccompSet, s.seccomp = true, p
		default:
			return s, fmt.Errorf("run: --security-opt %q: supported are seccomp=unconfined, seccomp=FILE and no-new-privileges", v)
		}
	}
	return s, nil
}

// apply puts the options into spec, over DefaultSpec's.
func (s security) apply(spec *specs.Spec) {
	if s.seccompSet {
		spec.Linux.Seccomp = s.seccomp
	}
	spec.Process.NoNewPrivileges = s.noNewPrivs
}

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/seccomp"
)

// seccomp keeps its own copy of Docker's default capabilities.
func TestSeccompDefaultCaps(t *testing.T) {
	if !reflect.DeepEqual(seccomp.Default(), seccomp.DefaultFor(container.DefaultCaps)) {
		t.Error("seccomp.Default() is not the profile for container.DefaultCaps")
	}
	if !reflect.DeepEqual(container.DefaultSpec().Linux.Seccomp, seccomp.Default()) {
		t.Error("DefaultSpec has not Docker's default profile")
	}
}

// TestSeccomp: run and exec get Docker's default profile unless told
// otherwise, and ordinary commands still work under it.
func TestSeccomp(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	img := e.image()
	probe := `grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status; unshare -U true 2>&1; echo unshare=$?`
	profile := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
		{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":18}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []string
		cmd  string
		want []string
	}{
		{"default", nil, probe, []string{"Seccomp:\t2\n", "NoNewPrivs:\t0\n", "Operation not permitted", "unshare=1\n"}},
		{"ordinary", nil, "echo hi | tr a-z A-Z; ls /bin/sh; sleep 0.01 & wait; echo ok", []string{"HI\n", "/bin/sh\n", "ok\n"}},
		{"mount", nil, "mount -t tmpfs none /mnt 2>&1; echo mount=$?", []string{"mount=1\n"}},
		{"non-root", []string{"-u", "nobody"}, probe, []string{"Seccomp:\t2\n", "unshare=1\n"}},
		{"init", []string{"--init"}, probe, []string{"Seccomp:\t2\n", "unshare=1\n"}},
		{"unconfined", []string{"--security-opt", "seccomp=unconfined"}, probe, []string{"Seccomp:\t0\n", "unshare=0\n"}},
		{"no-new-privileges", []string{"--security-opt", "no-new-privileges"}, probe, []string{"Seccomp:\t2\n", "NoNewPrivs:\t1\n", "unshare=1\n"}},
		{"profile", []string{"--security-opt", "seccomp=" + profile}, "mkdir /x 2>&1; echo mkdir=$?; " + probe,
			[]string{"Invalid cross-device link", "mkdir=1\n", "Seccomp:\t2\n", "unshare=0\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"run", "--network", "none"}, tc.opts...), img, tc.cmd)
			r := e.bk(args...)
			if r.code != 0 {
				t.Fatalf("run: %+v", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.out, w) {
					t.Errorf("output lacks %q:\n%s", w, r.out)
				}
			}
		})
	}

	r := e.bk("run", "--security-opt", "seccomp=/nonexistent.json", img, "true")
	if r.code == 0 || !strings.Contains(r.err, "nonexistent.json") {
		t.Errorf("missing profile: %+v", r)
	}

	for _, opts := range [][]string{nil, {"--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges"}} {
		id := strings.TrimSpace(e.ok(append(append([]string{"run", "-d", "--network", "none"}, opts...), img, "sleep 60")...))
		out := e.ok("exec", id, "sh", "-c", probe)
		want := []string{"Seccomp:\t2\n", "NoNewPrivs:\t0\n", "unshare=1\n"}
		if opts != nil {
			want = []string{"Seccomp:\t0\n", "NoNewPrivs:\t1\n", "unshare=0\n"}
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("exec %v: output lacks %q:\n%s", opts, w, out)
			}
		}
	}
}

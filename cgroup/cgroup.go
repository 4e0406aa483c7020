// Package cgroup gives each container a cgroup with its resource limits,
// on cgroup v1 (one directory per controller) and v2 (one unified tree),
// through containerd's cgroups library.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Unified reports whether the host runs cgroup v2 only.
func Unified() bool { return cgroups.Mode() == cgroups.Unified }

// Cgroup is one container's cgroup on whichever hierarchy the host has.
type Cgroup struct {
	path string
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
}

// Path is the cgroup's path relative to the hierarchy root, e.g.
// /bocker/ps_1234: the host reads its limits under
// /sys/fs/cgroup/<controller>/bocker/ps_1234 (v1) or /sys/fs/cgroup/bocker/ps_1234 (v2).
func (c *Cgroup) Path() string { return c.path }

// Create makes the cgroup at p (an absolute cgroup path) and applies res.
func Create(p string, res *specs.LinuxResources) (*Cgroup, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if Unified() {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", p, cgroup2.ToResources(res))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", p, err)
		}
		return &Cgroup{path: p, v2: m}, nil
	}
	if res != nil && res.Memory != nil && res.Memory.Limit != nil && res.Memory.Swap == nil && swapAccounting() {
		// Without a swap limit a memory hog swaps instead of being OOM-killed.
		sw := *res.Memory.Limit
		res.Memory.Swap = &sw
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(p), res)
	if err != nil {
		// New leaves behind whatever directories it made before the failure.
		if l, lerr := cgroup1.Load(cgroup1.StaticPath(p)); lerr == nil {
			_ = l.Delete()
		}
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	return &Cgroup{path: p, v1: cg}, nil
}

// Load opens an existing cgroup.
func Load(p string) (*Cgroup, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if Unified() {
		m, err := cgroup2.Load(p)
		if err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", p, err)
		}
		return &Cgroup{path: p, v2: m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	return &Cgroup{path: p, v1: cg}, nil
}

// Exists reports whether the cgroup's directory is present.
func Exists(p string) bool {
	if Unified() {
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup", p))
		return err == nil
	}
	_, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", p))
	if err == nil {
		return true
	}
	_, err = os.Stat(filepath.Join("/sys/fs/cgroup/pids", p))
	return err == nil
}

// Add moves process pid (all its threads) into the cgroup.
func (c *Cgroup) Add(pid int) error {
	var err error
	if c.v2 != nil {
		err = c.v2.AddProc(uint64(pid))
	} else {
		err = c.v1.Add(cgroup1.Process{Pid: pid})
	}
	if err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

// Pids lists the processes in the cgroup.
func (c *Cgroup) Pids() ([]int, error) {
	var out []int
	if c.v2 != nil {
		ps, err := c.v2.Procs(true)
		if err != nil {
			return nil, fmt.Errorf("list cgroup %s: %w", c.path, err)
		}
		for _, p := range ps {
			out = append(out, int(p))
		}
		return out, nil
	}
	ps, err := c.v1.Processes(cgroup1.Pids, true)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list cgroup %s: %w", c.path, err)
	}
	for _, p := range ps {
		out = append(out, p.Pid)
	}
	return out, nil
}

// Kill sends SIGKILL to every process left in the cgroup and waits a
// little for them to go, so that Delete can remove the directories.
func (c *Cgroup) Kill() error {
	for i := 0; i < 100; i++ {
		pids, err := c.Pids()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("kill cgroup %s: processes remain", c.path)
}

// Delete removes the cgroup; it must be empty.
func (c *Cgroup) Delete() error {
	var err error
	if c.v2 != nil {
		err = c.v2.Delete()
	} else {
		err = c.v1.Delete()
	}
	if err != nil {
		return fmt.Errorf("delete cgroup %s: %w", c.path, err)
	}
	return nil
}

func checkPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("cgroup path %q: must be absolute and clean", p)
	}
	return nil
}

func swapAccounting() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// OOMKills counts the processes the kernel's OOM killer has killed in the
// cgroup so far; comparing counts before and after tells whether a
// container's end was an OOM kill.
func (c *Cgroup) OOMKills() uint64 {
	p := filepath.Join("/sys/fs/cgroup/memory", c.path, "memory.oom_control")
	if c.v2 != nil {
		p = filepath.Join("/sys/fs/cgroup", c.path, "memory.events")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

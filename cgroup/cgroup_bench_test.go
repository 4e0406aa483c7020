package cgroup

import (
	"fmt"
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BenchmarkCreate is one container's share of a run: its cgroup with
// limits, made and deleted.
func BenchmarkCreate(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	lim := int64(512_000_000)
	shares := uint64(512)
	pids := int64(2048)
	for i := 0; i < b.N; i++ {
		p := fmt.Sprintf("/bocker-bench/c%d-%d", os.Getpid(), i)
		cg, err := Create(p, &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: &lim},
			CPU:    &specs.LinuxCPU{Shares: &shares},
			Pids:   &specs.LinuxPids{Limit: &pids},
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := cg.Delete(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if cg, err := Load("/bocker-bench"); err == nil {
		_ = cg.Delete()
	}
}

package seccomp

import (
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// archInfo is one system call ABI: its audit arch (what the kernel puts
// in seccomp_data.arch) and its syscall numbers, sorted by name.
type archInfo struct {
	arch  specs.Arch
	audit uint32
	// is64: arguments are 64 bits wide. For a 32-bit ABI the kernel
	// zero-extends them, so only the low halves are compared.
	is64 bool
	// x32Bit: x86_64, whose audit arch the x32 ABI shares; x32 calls are
	// told apart by bit 30 of the number. They are not supported (no
	// table), so they get the bad-arch action.
	x32Bit   bool
	syscalls []sysnum
}

type sysnum struct {
	name string
	nr   uint32
}

// lookup resolves a syscall name; ok is false for a name this ABI lacks.
func (a *archInfo) lookup(name string) (nr uint32, ok bool) {
	i := sort.Search(len(a.syscalls), func(i int) bool { return a.syscalls[i].name >= name })
	if i < len(a.syscalls) && a.syscalls[i].name == name {
		return a.syscalls[i].nr, true
	}
	return 0, false
}

// SyscallNumber returns name's number for the running architecture.
func SyscallNumber(name string) (uint32, bool) {
	if len(nativeArches) == 0 {
		return 0, false
	}
	return nativeArches[0].lookup(name)
}

package seccomp

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// reference says what s answers for d, straight from the spec and not
// through BPF: the compiler must agree with it on every input.
func reference(t testing.TB, s *specs.LinuxSeccomp, known []*archInfo, d data) uint32 {
	t.Helper()
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		t.Fatal(err)
	}
	var arch *archInfo
	if d.arch == known[0].audit {
		arch = known[0]
	}
	for _, k := range known[1:] {
		if k.audit == d.arch && slices.Contains(s.Architectures, k.arch) {
			arch = k
		}
	}
	if arch == nil {
		return badArchAction
	}
	if arch.x32Bit && d.nr >= x32Bit && d.nr != 0xffffffff {
		return badArchAction
	}
	var uncond *uint32
	named, maxNr := false, uint32(0)
	for _, sc := range s.Syscalls {
		act, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range sc.Names {
			nr, ok := arch.lookup(name)
			if !ok {
				continue
			}
			named, maxNr = true, max(maxNr, nr)
			if nr != d.nr {
				continue
			}
			if len(sc.Args) == 0 {
				if uncond == nil {
					uncond = &act
				}
			}
		}
	}
	// Conditional rules go first, in order; the first match decides.
	for _, sc := range s.Syscalls {
		if len(sc.Args) == 0 || !slices.ContainsFunc(sc.Names, func(n string) bool {
			nr, ok := arch.lookup(n)
			return ok && nr == d.nr
		}) {
			continue
		}
		act, _ := action(sc.Action, sc.ErrnoRet)
		idx := map[uint]int{}
		for _, a := range sc.Args {
			idx[a.Index]++
		}
		repeated := false
		for _, n := range idx {
			repeated = repeated || n > 1
		}
		all, any := true, false
		for _, a := range sc.Args {
			v := d.args[a.Index]
			if !arch.is64 {
				v = uint64(uint32(v))
			}
			m := compare(a, v)
			all, any = all && m, any || m
		}
		if (repeated && any) || (!repeated && all) {
			return act
		}
	}
	if uncond != nil {
		return *uncond
	}
	if named && denies(def) && d.nr > maxNr {
		return unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	}
	return def
}

func compare(a specs.LinuxSeccompArg, v uint64) bool {
	switch a.Op {
	case specs.OpEqualTo:
		return v == a.Value
	case specs.OpNotEqual:
		return v != a.Value
	case specs.OpLessThan:
		return v < a.Value
	case specs.OpLessEqual:
		return v <= a.Value
	case specs.OpGreaterThan:
		return v > a.Value
	case specs.OpGreaterEqual:
		return v >= a.Value
	case specs.OpMaskedEqual:
		return v&a.Value == a.ValueTwo
	}
	panic(a.Op)
}

func uptr(v uint) *uint { return &v }

func needTables(t testing.TB) {
	if len(nativeArches) == 0 {
		t.Skip("no syscall table for this architecture")
	}
}

// check runs prog on d and compares with the reference.
func check(t *testing.T, prog []unix.SockFilter, s *specs.LinuxSeccomp, d data) {
	t.Helper()
	got, err := run(prog, d)
	if err != nil {
		t.Fatalf("run %+v: %v", d, err)
	}
	if want := reference(t, s, nativeArches, d); got != want {
		t.Fatalf("%+v: filter returns %#x, want %#x", d, got, want)
	}
}

// interesting are argument values where 32-bit halves go wrong.
var interesting = []uint64{
	0, 1, 2, 7, 8, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
	1 << 32, 1<<32 | 1, 1<<32 | 0xffffffff, 2 << 32, 0xffffffff << 32,
	0xffffffff_fffffffe, 0xffffffff_ffffffff, 0x12345678_9abcdef0,
}

func inputs(arch *archInfo, nr uint32, r *rand.Rand, vals []uint64) []data {
	var ds []data
	for range 40 {
		d := data{nr: nr, arch: arch.audit}
		for i := range d.args {
			if r.IntN(3) == 0 {
				d.args[i] = r.Uint64()
			} else {
				d.args[i] = vals[r.IntN(len(vals))]
			}
			if !arch.is64 {
				d.args[i] = uint64(uint32(d.args[i]))
			}
		}
		ds = append(ds, d)
	}
	return ds
}

func TestDefaultProfile(t *testing.T) {
	needTables(t)
	for _, caps := range [][]string{dockerCaps, append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN")} {
		s := DefaultFor(caps)
		prog, err := Compile(s)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("caps %d: %d syscall rules, %d instructions", len(caps), len(s.Syscalls), len(prog))
		r := rand.New(rand.NewPCG(1, 2))
		vals := slices.Clone(interesting)
		for _, sc := range s.Syscalls {
			for _, a := range sc.Args {
				vals = append(vals, a.Value, a.ValueTwo, a.Value|a.ValueTwo, a.Value-1, a.Value+1)
			}
		}
		for _, arch := range nativeArches {
			for nr := range uint32(1100) {
				for _, d := range inputs(arch, nr, r, vals) {
					check(t, prog, s, d)
				}
			}
			for _, nr := range []uint32{x32Bit, x32Bit | 39, 0xfffffffe, 0xffffffff, 0x0f0005} {
				check(t, prog, s, data{nr: nr, arch: arch.audit})
			}
		}
		check(t, prog, s, data{nr: 1, arch: unix.AUDIT_ARCH_PPC64LE})
	}
}

// TestDefaultDenies pins a few of Docker's decisions on the native ABI.
func TestDefaultDenies(t *testing.T) {
	needTables(t)
	prog, err := Compile(Default())
	if err != nil {
		t.Fatal(err)
	}
	eperm := uint32(unix.SECCOMP_RET_ERRNO | unix.EPERM)
	for _, tc := range []struct {
		name string
		args [6]uint64
		want uint32
	}{
		{"getpid", [6]uint64{}, unix.SECCOMP_RET_ALLOW},
		{"keyctl", [6]uint64{}, eperm},
		{"add_key", [6]uint64{}, eperm},
		{"mount", [6]uint64{}, eperm},
		{"unshare", [6]uint64{unix.CLONE_NEWUSER}, eperm},
		{"reboot", [6]uint64{}, eperm},
		{"personality", [6]uint64{0}, unix.SECCOMP_RET_ALLOW},
		{"personality", [6]uint64{8}, unix.SECCOMP_RET_ALLOW},
		{"personality", [6]uint64{0xffffffff}, unix.SECCOMP_RET_ALLOW},
		{"personality", [6]uint64{1<<32 | 0xffffffff}, eperm},
		{"personality", [6]uint64{addrNoRandomize}, eperm},
		{"clone3", [6]uint64{}, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	} {
		nr, ok := SyscallNumber(tc.name)
		if !ok {
			continue // not on this architecture
		}
		got, err := run(prog, data{nr: nr, arch: nativeArches[0].audit, args: tc.args})
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s%v = %#x, want %#x", tc.name, tc.args[:1], got, tc.want)
		}
	}
}

func allNames(arch *archInfo) []string {
	var names []string
	for _, s := range arch.syscalls {
		names = append(names, s.name)
	}
	return names
}

// TestLongJumps gives every syscall its own argument checks, so the
// search tree spans thousands of instructions and needs trampolines.
func TestLongJumps(t *testing.T) {
	needTables(t)
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(uint(unix.EXDEV))}
	for _, n := range allNames(nativeArches[0]) {
		nr, _ := nativeArches[0].lookup(n)
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names: []string{n}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: uint64(nr), Op: specs.OpEqualTo}},
		})
	}
	prog, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	long := 0
	for _, in := range prog {
		if in.Code == unix.BPF_JMP|unix.BPF_JA {
			long++
		}
	}
	t.Logf("%d syscalls: %d instructions, %d long jumps", len(s.Syscalls), len(prog), long)
	if long == 0 || len(prog) < 1000 {
		t.Fatalf("expected a program long enough to need trampolines: %d instructions, %d JAs", len(prog), long)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, arch := range nativeArches {
		for nr := range uint32(600) {
			vals := append(slices.Clone(interesting), uint64(nr))
			for _, d := range inputs(arch, nr, r, vals) {
				check(t, prog, s, d)
			}
		}
	}
}

func TestTooLong(t *testing.T) {
	needTables(t)
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	for i := range 2000 {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names: []string{"getpid"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: uint64(i) << 32, Op: specs.OpEqualTo}},
		})
	}
	if _, err := Compile(s); err == nil {
		t.Fatal("a 2000-rule filter compiled under 4096 instructions?")
	}
}

// TestArgs covers each operator where the high half decides.
func TestArgs(t *testing.T) {
	needTables(t)
	nr, _ := SyscallNumber("getpid")
	arch := nativeArches[0]
	for _, tc := range []struct {
		arg  specs.LinuxSeccompArg
		in   uint64
		want bool
	}{
		{specs.LinuxSeccompArg{Op: specs.OpEqualTo, Value: 1<<32 | 5}, 5, false},
		{specs.LinuxSeccompArg{Op: specs.OpEqualTo, Value: 1<<32 | 5}, 1<<32 | 5, true},
		{specs.LinuxSeccompArg{Op: specs.OpNotEqual, Value: 5}, 1<<32 | 5, true},
		{specs.LinuxSeccompArg{Op: specs.OpGreaterThan, Value: 1 << 32}, 0xffffffff, false},
		{specs.LinuxSeccompArg{Op: specs.OpGreaterThan, Value: 0xffffffff}, 1 << 32, true},
		{specs.LinuxSeccompArg{Op: specs.OpGreaterEqual, Value: 1<<32 | 7}, 2 << 32, true},
		{specs.LinuxSeccompArg{Op: specs.OpLessThan, Value: 1 << 32}, 0xffffffff, true},
		{specs.LinuxSeccompArg{Op: specs.OpLessThan, Value: 5}, 1<<32 | 1, false},
		{specs.LinuxSeccompArg{Op: specs.OpLessEqual, Value: 1<<32 | 5}, 1<<32 | 5, true},
		{specs.LinuxSeccompArg{Op: specs.OpLessEqual, Value: 1<<32 | 5}, 1<<32 | 6, false},
		// MASKED_EQ: Value is the mask, ValueTwo what the masked bits must be.
		{specs.LinuxSeccompArg{Op: specs.OpMaskedEqual, Value: 0x7e020000, ValueTwo: 0}, unix.CLONE_NEWUSER, false},
		{specs.LinuxSeccompArg{Op: specs.OpMaskedEqual, Value: 0x7e020000, ValueTwo: 0}, unix.CLONE_VM | unix.CLONE_FS, true},
		{specs.LinuxSeccompArg{Op: specs.OpMaskedEqual, Value: 0xff << 32, ValueTwo: 3 << 32}, 3<<32 | 0xffff, true},
		{specs.LinuxSeccompArg{Op: specs.OpMaskedEqual, Value: 0xff << 32, ValueTwo: 3 << 32}, 4<<32 | 0xffff, false},
		{specs.LinuxSeccompArg{Op: specs.OpMaskedEqual, Value: 0xf, ValueTwo: 0x10}, 0x10, false}, // unsatisfiable
	} {
		for idx := range uint(6) {
			arg := tc.arg
			arg.Index = idx
			s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{
				Names: []string{"getpid"}, Action: specs.ActErrno, ErrnoRet: uptr(9), Args: []specs.LinuxSeccompArg{arg},
			}}}
			prog, err := Compile(s)
			if err != nil {
				t.Fatal(err)
			}
			d := data{nr: nr, arch: arch.audit}
			d.args[idx] = tc.in
			got, err := run(prog, d)
			if err != nil {
				t.Fatal(err)
			}
			if matched := got == unix.SECCOMP_RET_ERRNO|9; matched != tc.want {
				t.Errorf("%s %#x vs %#x (%#x) at arg %d: matched=%v, want %v", arg.Op, tc.in, arg.Value, arg.ValueTwo, idx, matched, tc.want)
			}
			check(t, prog, s, d)
		}
	}
}

// TestRandom compares random profiles against the reference.
func TestRandom(t *testing.T) {
	needTables(t)
	r := rand.New(rand.NewPCG(5, 6))
	names := []string{"read", "write", "getpid", "personality", "clone", "socket", "ioctl", "no_such_call", "_llseek", "mmap"}
	ops := knownOps
	acts := []specs.LinuxSeccompAction{specs.ActAllow, specs.ActErrno, specs.ActKillProcess, specs.ActLog, specs.ActTrace, specs.ActKill, specs.ActTrap}
	for iter := range 300 {
		s := &specs.LinuxSeccomp{DefaultAction: acts[r.IntN(len(acts))]}
		if r.IntN(2) == 0 {
			s.Architectures = []specs.Arch{specs.ArchX86, specs.ArchX32, specs.ArchARM}
		}
		for range r.IntN(12) {
			sc := specs.LinuxSyscall{Action: acts[r.IntN(len(acts))]}
			for range 1 + r.IntN(3) {
				sc.Names = append(sc.Names, names[r.IntN(len(names))])
			}
			if sc.Action == specs.ActErrno && r.IntN(2) == 0 {
				sc.ErrnoRet = uptr(uint(r.IntN(200)))
			}
			for range r.IntN(4) {
				sc.Args = append(sc.Args, specs.LinuxSeccompArg{
					Index: uint(r.IntN(3)), Op: ops[r.IntN(len(ops))],
					Value: interesting[r.IntN(len(interesting))], ValueTwo: interesting[r.IntN(len(interesting))],
				})
			}
			s.Syscalls = append(s.Syscalls, sc)
		}
		prog, err := Compile(s)
		if err != nil {
			t.Fatalf("profile %d: %v", iter, err)
		}
		for _, arch := range nativeArches {
			for _, n := range names {
				nr, ok := arch.lookup(n)
				if !ok {
					continue
				}
				vals := slices.Clone(interesting)
				for _, sc := range s.Syscalls {
					for _, a := range sc.Args {
						vals = append(vals, a.Value+1, a.Value-1, a.ValueTwo)
					}
				}
				for _, d := range inputs(arch, nr, r, vals) {
					d.args[3] = 0
					check(t, prog, s, d)
				}
			}
			check(t, prog, s, data{nr: 1000, arch: arch.audit})
		}
	}
}

func TestErrors(t *testing.T) {
	needTables(t)
	for _, s := range []*specs.LinuxSeccomp{
		{DefaultAction: "SCMP_ACT_BOGUS"},
		{DefaultAction: specs.ActAllow, DefaultErrnoRet: uptr(1)},
		{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}},
		{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6}}}}},
		{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Op: "SCMP_CMP_BOGUS"}}}}},
		{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(1 << 16)},
	} {
		if _, err := Compile(s); err == nil {
			t.Errorf("%+v compiled", s)
		}
	}
	if _, err := Compile(nil); err == nil {
		t.Error("nil profile compiled")
	}
	_, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActNotify})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("notify: %v, want ErrUnsupported", err)
	}
}

func BenchmarkCompileDefault(b *testing.B) {
	needTables(b)
	s := Default()
	for b.Loop() {
		if _, err := Compile(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDefaultAndCompile(b *testing.B) {
	needTables(b)
	for b.Loop() {
		if _, err := Compile(DefaultFor(dockerCaps)); err != nil {
			b.Fatal(err)
		}
	}
}

// addrNoRandomize is ADDR_NO_RANDOMIZE, a persona Docker does not allow.
const addrNoRandomize = 0x0040000

package seccomp

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxInsns is the kernel's limit on a filter's length (BPF_MAXINSNS).
const maxInsns = 4096

// Offsets into struct seccomp_data. Arguments are 64-bit; every ABI we
// have a table for is little-endian, so the low half comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func argLo(i uint) uint32 { return offArgs + 8*uint32(i) }
func argHi(i uint) uint32 { return offArgs + 8*uint32(i) + 4 }

// x32Bit marks an x32 ABI system call on x86_64 (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// ErrUnsupported is returned for what the runtime spec allows but this
// package cannot do: an architecture without a syscall table here, or
// SCMP_ACT_NOTIFY (it needs a listener process).
var ErrUnsupported = errors.New("not supported")

// badArchAction answers a system call made through an ABI the profile
// does not list (an i386 int 0x80 under an x86_64-only profile, or any
// x32 call): such calls bypass every rule, so the process dies.
const badArchAction = unix.SECCOMP_RET_KILL_PROCESS

// rule is one OR-ed alternative for a syscall: all conds must hold.
type rule struct {
	action uint32
	conds  []specs.LinuxSeccompArg
}

// call is everything the profile says about one syscall number. The
// conditional rules are tried in profile order and the first that
// matches decides; when none does, fallback (the syscall's rule without
// arguments, or else the default action) does.
type call struct {
	nr       uint32
	rules    []rule
	fallback uint32
	uncond   bool // fallback came from a rule without arguments
}

// Compile turns s into a BPF program for the running architecture: the
// native ABI and those of s.Architectures this package knows (i386 on
// x86_64, arm on arm64). Unknown syscall names are skipped, as libseccomp
// skips them, so one profile serves kernels and ABIs of every age.
func Compile(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	return compile(s, nativeArches)
}

func compile(s *specs.LinuxSeccomp, known []*archInfo) ([]unix.SockFilter, error) {
	if s == nil {
		return nil, errors.New("no seccomp profile to compile")
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("seccomp on this architecture: %w", ErrUnsupported)
	}
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	// The native ABI is always filtered, listed or not (libseccomp
	// always adds it); another ABI only when listed, so its calls are
	// otherwise killed.
	arches := []*archInfo{known[0]}
	for _, name := range s.Architectures {
		for _, k := range known[1:] {
			if k.arch == name && !slices.Contains(arches, k) {
				arches = append(arches, k)
			}
		}
	}
	a := newAsm()
	sections := make([]label, len(arches))
	for i := len(arches) - 1; i >= 0; i-- {
		calls, err := collect(s, arches[i], def)
		if err != nil {
			return nil, err
		}
		sections[i] = a.section(arches[i], calls, def)
	}
	next := a.ret(badArchAction)
	for i := len(arches) - 1; i >= 0; i-- {
		next = a.jump(unix.BPF_JEQ, arches[i].audit, sections[i], next)
	}
	a.load(offArch)
	prog := a.program()
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("seccomp filter of %d instructions exceeds the kernel's limit of %d", len(prog), maxInsns)
	}
	return prog, nil
}

// action is the filter's return value for a spec action.
func action(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	// runc's default errno for ERRNO and TRACE without errnoRet.
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		if *errnoRet > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d does not fit in 16 bits", *errnoRet)
		}
		data = uint32(*errnoRet)
	}
	switch act {
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | data, nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | data, nil
	}
	if errnoRet != nil {
		return 0, fmt.Errorf("errnoRet with action %s: only %s and %s take one", act, specs.ActErrno, specs.ActTrace)
	}
	switch act {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActKill, specs.ActKillThread:
		// libseccomp's SCMP_ACT_KILL is the thread variant.
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, fmt.Errorf("action %s: %w", act, ErrUnsupported)
	}
	return 0, fmt.Errorf("unknown seccomp action %q", act)
}

var knownOps = []specs.LinuxSeccompOperator{
	specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
	specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual,
}

// collect gathers the rules of s that name a syscall of arch, by number.
func collect(s *specs.LinuxSeccomp, arch *archInfo, def uint32) ([]*call, error) {
	// One entry per syscall named; Docker's profile names about 400.
	byNr := make(map[uint32]*call, len(arch.syscalls))
	pool := make([]call, 0, len(arch.syscalls))
	for _, sc := range s.Syscalls {
		act, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("rule for %v: %w", sc.Names, err)
		}
		var counts [6]int
		for _, arg := range sc.Args {
			if arg.Index >= uint(len(counts)) {
				return nil, fmt.Errorf("rule for %v: argument index %d out of range", sc.Names, arg.Index)
			}
			if !slices.Contains(knownOps, arg.Op) {
				return nil, fmt.Errorf("rule for %v: unknown operator %q", sc.Names, arg.Op)
			}
			counts[arg.Index]++
		}
		var rules []rule
		if slices.ContainsFunc(counts[:], func(n int) bool { return n > 1 }) {
			// Two comparisons of one argument are alternatives, not
			// both required: runc's reading (runc#2735), which profiles
			// written for Docker rely on.
			for _, arg := range sc.Args {
				rules = append(rules, rule{act, []specs.LinuxSeccompArg{arg}})
			}
		} else if len(sc.Args) > 0 {
			rules = []rule{{act, sc.Args}}
		}
		for _, name := range sc.Names {
			nr, ok := arch.lookup(name)
			if !ok {
				continue
			}
			c := byNr[nr]
			if c == nil {
				if len(pool) == cap(pool) {
					pool = make([]call, 0, 16) // earlier calls keep the old array
				}
				pool = append(pool, call{nr: nr, fallback: def})
				c = &pool[len(pool)-1]
				byNr[nr] = c
			}
			if rules == nil {
				if !c.uncond {
					c.uncond, c.fallback = true, act
				}
				continue
			}
			c.rules = append(c.rules, rules...)
		}
	}
	calls := make([]*call, 0, len(byNr))
	for _, c := range byNr {
		// Trailing alternatives that end where no match ends change
		// nothing.
		for n := len(c.rules); n > 0 && c.rules[n-1].action == c.fallback; n-- {
			c.rules = c.rules[:n-1]
		}
		calls = append(calls, c)
	}
	slices.SortFunc(calls, func(a, b *call) int { return cmp.Compare(a.nr, b.nr) })
	return calls, nil
}

// outcome is what a run of syscall numbers leads to: a RET, or a call's
// argument checks.
type outcome struct {
	ret  uint32
	call *call
}

// segment is a run of syscall numbers from start to the next segment's.
type segment struct {
	start uint32
	out   outcome
}

// segments partitions the syscall numbers 0..2^32-1 into runs with one
// outcome each, merging neighbours: a profile allows long runs of
// consecutive syscalls, so this is far shorter than one test per call.
func segments(arch *archInfo, calls []*call, def uint32) []segment {
	segs := []segment{{0, outcome{ret: def}}}
	add := func(start uint32, o outcome) {
		if n := len(segs); segs[n-1].start == start {
			segs = segs[:n-1]
		}
		if n := len(segs); n > 0 && segs[n-1].out.call == nil && o.call == nil && segs[n-1].out.ret == o.ret {
			return
		}
		segs = append(segs, segment{start, o})
	}
	for _, c := range calls {
		if len(c.rules) > 0 {
			add(c.nr, outcome{call: c})
		} else {
			add(c.nr, outcome{ret: c.fallback})
		}
		add(c.nr+1, outcome{ret: def})
	}
	// Like runc, answer syscalls newer than any the profile names with
	// ENOSYS rather than the default EPERM: a C library then falls back
	// to the older call it knows (clone3 to clone, say) instead of failing.
	tail := outcome{ret: def}
	if denies(def) && len(calls) > 0 {
		tail = outcome{ret: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)}
		add(calls[len(calls)-1].nr+1, tail)
	}
	if arch.x32Bit {
		add(x32Bit, outcome{ret: badArchAction})
		// -1 is no x32 call: it is what a tracer sets to skip a call.
		add(0xffffffff, tail)
	}
	return segs
}

// denies reports whether a default action refuses the call, so that an
// unknown new syscall may as well be refused with ENOSYS.
func denies(def uint32) bool {
	switch def & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ERRNO, unix.SECCOMP_RET_KILL_THREAD, unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_RET_TRAP:
		return true
	}
	return false
}

// section emits the filter for one ABI: load the syscall number, then a
// binary search over the segments.
func (a *asm) section(arch *archInfo, calls []*call, def uint32) label {
	root := a.search(arch, segments(arch, calls, def))
	a.at(root)
	return a.load(offNr)
}

// search emits a binary search tree of JGEs over segs, A holding the
// syscall number: about log2(len(segs)) comparisons per system call.
func (a *asm) search(arch *archInfo, segs []segment) label {
	if len(segs) == 1 {
		if c := segs[0].out.call; c != nil {
			return a.body(arch, c)
		}
		return a.ret(segs[0].out.ret)
	}
	mid := len(segs) / 2
	hi := a.search(arch, segs[mid:])
	lo := a.search(arch, segs[:mid])
	return a.jump(unix.BPF_JGE, segs[mid].start, hi, lo)
}

// body emits a call's argument checks.
func (a *asm) body(arch *archInfo, c *call) label {
	next := a.ret(c.fallback)
	for i := len(c.rules) - 1; i >= 0; i-- {
		r := c.rules[i]
		ok := a.ret(r.action)
		for j := len(r.conds) - 1; j >= 0; j-- {
			ok = a.cond(arch.is64, r.conds[j], ok, next)
		}
		next = ok
	}
	return next
}

// cond emits one 64-bit argument comparison going to t if it holds and
// to f if not. BPF words are 32 bits: the high halves decide unless
// they are equal, then the low halves do. On a 32-bit ABI the high half
// is zero, so its test is settled here and not emitted.
func (a *asm) cond(is64 bool, arg specs.LinuxSeccompArg, t, f label) label {
	v, v2 := arg.Value, arg.ValueTwo
	lo, hi := uint32(v), uint32(v>>32)
	if arg.Op == specs.OpMaskedEqual {
		// Value is the mask, ValueTwo the value (libseccomp's order).
		wantHi := uint32(v2 >> 32)
		if !is64 || hi == 0 {
			if wantHi != 0 {
				return f
			}
			return a.masked(argLo(arg.Index), lo, uint32(v2), t, f)
		}
		low := a.masked(argLo(arg.Index), lo, uint32(v2), t, f)
		return a.masked(argHi(arg.Index), hi, wantHi, low, f)
	}

	// Where a high half below or above hi leads; equal, the low half decides.
	var below, above label
	switch arg.Op {
	case specs.OpEqualTo:
		below, above = f, f
	case specs.OpNotEqual:
		below, above = t, t
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		below, above = f, t
	case specs.OpLessThan, specs.OpLessEqual:
		below, above = t, f
	}
	if !is64 && hi != 0 {
		return below
	}
	var low label
	switch arg.Op {
	case specs.OpEqualTo:
		low = a.jump(unix.BPF_JEQ, lo, t, f)
	case specs.OpNotEqual:
		low = a.jump(unix.BPF_JEQ, lo, f, t)
	case specs.OpGreaterThan:
		low = a.jump(unix.BPF_JGT, lo, t, f)
	case specs.OpGreaterEqual:
		low = a.jump(unix.BPF_JGE, lo, t, f)
	case specs.OpLessThan:
		low = a.jump(unix.BPF_JGE, lo, f, t)
	case specs.OpLessEqual:
		low = a.jump(unix.BPF_JGT, lo, f, t)
	}
	a.at(low)
	low = a.load(argLo(arg.Index))
	if !is64 {
		return low
	}
	// Nothing is below 0 or above 2^32-1: one JEQ does.
	if hi == 0 {
		below = above
	} else if hi == 0xffffffff {
		above = below
	}
	eq := a.jump(unix.BPF_JEQ, hi, low, below)
	if above != below {
		eq = a.jump(unix.BPF_JGT, hi, above, eq)
	}
	a.at(eq)
	return a.load(argHi(arg.Index))
}

// masked emits (word at off & mask) == want, settled without code when
// the mask is empty.
func (a *asm) masked(off, mask, want uint32, t, f label) label {
	if mask == 0 {
		return pick(want == 0, t, f)
	}
	j := a.jump(unix.BPF_JEQ, want, t, f)
	if mask != 0xffffffff {
		a.at(j)
		a.and(mask)
	}
	return a.load(off)
}

func pick(c bool, t, f label) label {
	if c {
		return t
	}
	return f
}

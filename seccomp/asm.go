package seccomp

import (
	"slices"

	"golang.org/x/sys/unix"
)

// asm builds a classic BPF program back to front. Every jump in a
// seccomp filter goes forward, so by the time a jump is emitted its
// targets exist and their distances are known: a target more than 255
// instructions away gets a JA trampoline (32-bit offset) right after
// the jump, and nothing ever needs patching.
//
// A label is an instruction's index counted from the program's end.
type asm struct {
	rev  []unix.SockFilter // the program, last instruction first
	rets map[uint32]label  // the latest RET of each value, for reuse
}

type label int

// maxShortJump is the reach of a conditional jump's 8-bit offsets.
const maxShortJump = 255

func newAsm() *asm { return &asm{rets: map[uint32]label{}} }

func (a *asm) emit(code uint16, jt, jf uint8, k uint32) label {
	a.rev = append(a.rev, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
	return a.top()
}

// top is the label of the instruction emitted last: the one that the
// next emitted instruction falls through to.
func (a *asm) top() label { return label(len(a.rev) - 1) }

// dist is the jump offset from the next emitted instruction to l.
func (a *asm) dist(l label) int { return len(a.rev) - int(l) - 1 }

// at makes l the fall-through of the next instruction, with a JA if
// it is not already.
func (a *asm) at(l label) label {
	if l == a.top() {
		return l
	}
	return a.emit(unix.BPF_JMP|unix.BPF_JA, 0, 0, uint32(a.dist(l)))
}

// load loads the 32-bit word at off of struct seccomp_data into A.
func (a *asm) load(off uint32) label {
	return a.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0, 0, off)
}

// and masks A with k.
func (a *asm) and(k uint32) label {
	return a.emit(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0, 0, k)
}

// ret returns k; a RET already emitted nearby is reused, so that the
// many "allow" outcomes of a profile share a few instructions.
func (a *asm) ret(k uint32) label {
	if l, ok := a.rets[k]; ok && a.dist(l) <= maxShortJump/2 {
		return l
	}
	l := a.emit(unix.BPF_RET|unix.BPF_K, 0, 0, k)
	a.rets[k] = l
	return l
}

// jump compares A with k (op is BPF_JEQ, BPF_JGT or BPF_JGE) and goes to
// jt if true, jf if false.
func (a *asm) jump(op uint16, k uint32, jt, jf label) label {
	if jt == jf {
		return a.at(jt)
	}
	if a.dist(jt) > maxShortJump {
		jt = a.at(jt)
	}
	if a.dist(jf) > maxShortJump {
		jf = a.at(jf)
	}
	return a.emit(unix.BPF_JMP|op|unix.BPF_K, uint8(a.dist(jt)), uint8(a.dist(jf)), k)
}

// program is the finished program, first instruction first.
func (a *asm) program() []unix.SockFilter {
	p := slices.Clone(a.rev)
	slices.Reverse(p)
	return p
}

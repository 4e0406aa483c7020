package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// data is a struct seccomp_data for the test interpreter.
type data struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

func (d *data) word(off uint32) (uint32, error) {
	switch {
	case off == offNr:
		return d.nr, nil
	case off == offArch:
		return d.arch, nil
	case off >= offArgs && off < offArgs+48 && off%4 == 0:
		a := d.args[(off-offArgs)/8]
		if (off-offArgs)%8 == 4 {
			return uint32(a >> 32), nil
		}
		return uint32(a), nil
	}
	return 0, fmt.Errorf("load of offset %d", off)
}

// run interprets prog as the kernel would, for the instructions this
// package emits, and checks what the kernel's verifier checks: every
// jump lands inside the program and it ends in a RET.
func run(prog []unix.SockFilter, d data) (uint32, error) {
	if len(prog) == 0 || len(prog) > maxInsns {
		return 0, fmt.Errorf("program of %d instructions", len(prog))
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			w, err := d.word(in.K)
			if err != nil {
				return 0, fmt.Errorf("pc %d: %w", pc, err)
			}
			acc = w
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_RET | unix.BPF_K:
			return in.K, nil
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var ok bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = acc == in.K
			case unix.BPF_JGT:
				ok = acc > in.K
			case unix.BPF_JGE:
				ok = acc >= in.K
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			return 0, fmt.Errorf("pc %d: unexpected opcode %#x", pc, in.Code)
		}
		if pc+1 >= len(prog) {
			return 0, fmt.Errorf("pc %d: jumps past the end", pc)
		}
	}
	return 0, fmt.Errorf("fell off the end")
}

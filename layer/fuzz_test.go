package layer

import (
	"archive/tar"
	"bytes"
	"testing"
)

// fuzzMaxBytes bounds how much file data one fuzz input may ask Unpack to
// write: the fuzzer is here to find escapes, not to fill the disk.
const fuzzMaxBytes = 1 << 20

// FuzzUnpack feeds mutated archives to Unpack in a sandbox (a layer dir
// beside a victim file and a victim dir, two levels down) and fails if
// anything outside the layer dir appeared, changed or went away, or the
// layer dir stopped being a dir, whatever Unpack returned. The seeds are
// the hostile table's tricks, with relative targets since the sandbox
// moves each run.
//
// Each run makes and removes real directories, so the fuzzer's default
// minimization can use up a short -fuzztime; for more executions use e.g.
//
//	TMPDIR=/dev/shm go test ./layer/ -run '^$' -fuzz FuzzUnpack -fuzztime 60s -fuzzminimizetime 100x
func FuzzUnpack(f *testing.F) {
	seeds := [][]ent{
		{reg("../escape", "x")},
		{reg("/escape", "x"), reg("a/../b", "x")},
		{symEnt("link", ".."), reg("link/escape", "x")},
		{symEnt("link", "../victimdir"), reg("link/inner", "pwned")},
		{symEnt("a", "b"), symEnt("b", "c/../.."), dirEnt("c/"), reg("a/escape", "x")},
		{dirEnt("d/"), symEnt("d/up", "../.."), reg("d/up/escape", "x")},
		{symEnt("link", "../victim"), reg("link", "pwned").mode(0o4777)},
		{symEnt("link", "../victim"), dirEnt("link").mode(0o777)},
		{dirEnt("d/"), dirEnt("d/sub/").mtime(entTime), symEnt("d", "../victimdir")},
		{linkEnt("h", "../victim")},
		{symEnt("link", ".."), linkEnt("h", "link/victim")},
		{symEnt("link", "../victimdir"), linkEnt("h", "link"), reg("h/inner", "pwned")},
		{reg("f", "inside"), symEnt("link", "../victim"), linkEnt("link", "f")},
		{reg("../.wh.victim", ""), reg(".wh..", ""), reg(".wh...", "")},
		{symEnt("link", ".."), reg("link/.wh.victim", ""), reg("link/"+whOpaque, "")},
		{symEnt(".wh.victim", "../victim"), linkEnt(".wh.x", "../victim"), dirEnt("d/" + whOpaque + "/")},
		{reg("f", "x"), reg("f/"+whOpaque, ""), reg(".wh.f/x", "")},
		{dirEnt("d/"), symEnt("d/out", "../../victimdir"), reg("d", "file"), dirEnt("d/"), reg("d/victim", "in")},
		{fifoEnt("p"), devEnt("sda", tar.TypeBlock, 8, 0), devEnt("wh", tar.TypeChar, 0, 0)},
		{dirEnt("d/").pax(paxXattr+"trusted.overlay.redirect", "../victimdir").pax(paxXattr+"user.x", "y")},
		{reg("big", "0123456789abcdef"), reg("big", "")},
		{reg("a", "hello"), dirEnt("d/"), reg("d/b", "x")},
		{symEnt("link", "/tmp"), linkEnt("h", "link/x")},
		{reg("f", "x"), linkEnt("h", "f"), symEnt("s", "f")},
		{dirEnt("d/"), reg("d/.wh.x", ""), reg("d/"+whOpaque, ""), reg(".wh.d", "")},
		{dirEnt("d/").pax(paxXattr+"user.a", "b"), symEnt("d", "..")},
	}
	for _, s := range seeds {
		f.Add(buildTar(f, s...))
	}
	f.Add(concat(rawHeader("f", tar.TypeReg, 1<<20), []byte("short")))
	f.Add([]byte{})
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		if totalSize(data) > fuzzMaxBytes {
			t.Skip("input asks for too much file data")
		}
		s := newSandbox(t)
		before := s.outside(t)
		_, _ = Unpack(bytes.NewReader(data), s.layer) // errors are fine; escapes are not
		diffStates(t, before, s.outside(t))
		if st := stateOf(t, s.layer); st.Type != "dir" {
			t.Fatalf("layer dir became a %s", st.Type)
		}
	})
}

package layer

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Building archives by hand.
// ---------------------------------------------------------------------------

// ent is one archive entry for buildTar.
type ent struct {
	hdr  tar.Header
	body string
}

var entTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func reg(name, body string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, body: body}
}
func dirEnt(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}
func symEnt(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}
func linkEnt(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}
func fifoEnt(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o644}}
}
func devEnt(name string, typ byte, major, minor int64) ent {
	return ent{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o644, Devmajor: major, Devminor: minor}}
}

// with returns e changed by f, for one-off fields.
func (e ent) with(f func(h *tar.Header)) ent { f(&e.hdr); return e }

func (e ent) mode(m int64) ent       { return e.with(func(h *tar.Header) { h.Mode = m }) }
func (e ent) mtime(t time.Time) ent  { return e.with(func(h *tar.Header) { h.ModTime = t }) }
func (e ent) owner(uid, gid int) ent { return e.with(func(h *tar.Header) { h.Uid, h.Gid = uid, gid }) }
func (e ent) pax(k, v string) ent {
	return e.with(func(h *tar.Header) {
		recs := map[string]string{k: v}
		for k, v := range h.PAXRecords {
			recs[k] = v
		}
		h.PAXRecords = recs
	})
}

// foreign gives e an owner that is not the test process when running as
// root, so that a chown through a symlink would be visible.
func (e ent) foreign() ent {
	if !isRoot() {
		return e
	}
	return e.owner(4321, 4321)
}

// buildTar writes ents as a PAX archive. Entries owned by 0:0 are given
// the test's own uid/gid when not running as root, so that Unpack's chown
// succeeds without privileges.
func buildTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeXGlobalHeader {
			// Only Name and PAXRecords may be set on a global header.
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatalf("writing global header: %v", err)
			}
			continue
		}
		if h.ModTime.IsZero() {
			h.ModTime = entTime
		}
		if h.Uid == 0 && h.Gid == 0 {
			h.Uid, h.Gid = os.Geteuid(), os.Getegid()
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawHeader builds a ustar header block by hand, for headers archive/tar
// refuses to write (oversized PAX data, lying sizes).
func rawHeader(name string, typeflag byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], fmt.Sprintf("%07o\x00", os.Geteuid()))
	copy(b[116:124], fmt.Sprintf("%07o\x00", os.Getegid()))
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", entTime.Unix()))
	b[156] = typeflag
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	for i := 148; i < 156; i++ {
		b[i] = ' '
	}
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// padBlock pads b with zeros to a whole number of 512-byte blocks.
func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

func endMarker() []byte { return make([]byte, 1024) }

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// makeRemovable lets t.TempDir's cleanup delete trees an archive left
// read-only, which matters when not running as root.
func makeRemovable(t testing.TB, dir string) {
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	})
}

// newLayerDir returns an empty directory to unpack into.
func newLayerDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	makeRemovable(t, d)
	return d
}

func unpackEnts(t testing.TB, dir string, ents ...ent) error {
	t.Helper()
	_, err := Unpack(bytes.NewReader(buildTar(t, ents...)), dir)
	return err
}

// ---------------------------------------------------------------------------
// A layer dir with things next to it that a hostile archive must not reach.
// ---------------------------------------------------------------------------

type sandbox struct {
	top       string // everything under here is watched, except layer
	parent    string // top/outer/parent, holds layer and the victims
	layer     string
	victim    string // a file next to the layer
	victimDir string // a dir next to the layer, with a file and a subdir
}

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	top := t.TempDir()
	// Nest the layer two levels down so "../../x" escapes stay watched.
	s := sandbox{top: top, parent: filepath.Join(top, "outer", "parent")}
	s.layer = filepath.Join(s.parent, "layer")
	s.victim = filepath.Join(s.parent, "victim")
	s.victimDir = filepath.Join(s.parent, "victimdir")
	if err := os.MkdirAll(s.layer, 0o755); err != nil {
		t.Fatal(err)
	}
	makeRemovable(t, s.layer)
	writeFile(t, s.victim, "precious\n", 0o644)
	mkdir(t, s.victimDir, 0o755)
	writeFile(t, filepath.Join(s.victimDir, "inner"), "inner\n", 0o644)
	mkdir(t, filepath.Join(s.victimDir, "sub"), 0o755)
	for _, p := range []string{filepath.Join(s.victimDir, "sub"), filepath.Join(s.victimDir, "inner"), s.victimDir, s.victim, s.layer, s.parent} {
		setMtime(t, p, time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	return s
}

// outside snapshots everything under top except the layer dir's contents.
func (s sandbox) outside(t testing.TB) map[string]fileState {
	t.Helper()
	layerRel, _ := filepath.Rel(s.top, s.layer)
	st := treeState(t, s.top, func(rel string) bool { return rel == layerRel })
	// The layer dir's own entry in parent must stay a plain directory, but
	// its times and mode are the archive's business.
	st[layerRel] = fileState{Type: stateOf(t, s.layer).Type}
	return st
}

func diffStates(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	var names []string
	for k := range before {
		names = append(names, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b, inB := before[n]
		a, inA := after[n]
		switch {
		case !inA:
			t.Errorf("OUTSIDE LAYER: %s was removed", n)
		case !inB:
			t.Errorf("OUTSIDE LAYER: %s appeared: %+v", n, a)
		case !reflect.DeepEqual(a, b):
			t.Errorf("OUTSIDE LAYER: %s changed:\n before %+v\n after  %+v", n, b, a)
		}
	}
}

// hostRel is where an absolute host path lands inside a layer.
func hostRel(abs string) string { return strings.TrimPrefix(abs, "/") }

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

type outcome int

const (
	mustFail    outcome = iota // Unpack returns an error
	mustSucceed                // Unpack succeeds (and the write stayed inside)
	mayFail                    // either is fine; only containment matters
)

// TestUnpackHostile feeds archives that try to reach outside the layer dir
// and checks that nothing outside it changed, whatever Unpack returns.
func TestUnpackHostile(t *testing.T) {
	cases := []struct {
		name  string
		root  bool // needs privileges (mknod, foreign owners)
		ents  func(s sandbox) []ent
		want  outcome
		check func(t *testing.T, s sandbox) // extra checks inside the layer
	}{
		// Path traversal in names: any ".." element is refused outright.
		{name: "dotdot", want: mustFail, ents: func(s sandbox) []ent { return []ent{reg("../escape", "x")} }},
		{name: "dotdot after dir", want: mustFail, ents: func(s sandbox) []ent { return []ent{reg("a/../../escape", "x")} }},
		{name: "dotdot three up", want: mustFail, ents: func(s sandbox) []ent { return []ent{reg("../../../escape", "x")} }},
		{name: "dotdot overwriting victim", want: mustFail, ents: func(s sandbox) []ent { return []ent{reg("../victim", "pwned")} }},
		{name: "dotdot dir entry", want: mustFail, ents: func(s sandbox) []ent { return []ent{dirEnt("../newdir/")} }},
		// Strict: even a ".." that would stay inside is an error.
		{name: "dotdot staying inside", want: mustFail, ents: func(s sandbox) []ent { return []ent{reg("a/../b", "x")} }},
		{name: "absolute dotdot", want: mustFail, ents: func(s sandbox) []ent { return []ent{reg("/../escape", "x")} }},

		// Absolute names are taken relative to the layer.
		{name: "absolute name lands inside", want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{reg("/escape", "x")} },
			check: func(t *testing.T, s sandbox) {
				wantFile(t, filepath.Join(s.layer, "escape"), "x")
			}},
		{name: "absolute host path of victim lands inside", want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{reg(s.victim, "pwned")} },
			check: func(t *testing.T, s sandbox) {
				wantFile(t, filepath.Join(s.layer, hostRel(s.victim)), "pwned")
			}},

		// Writing through a symlink planted by an earlier entry.
		{name: "file through symlink to dotdot", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", ".."), reg("link/escape", "x")} }},
		{name: "file through absolute symlink to parent", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.parent), reg("link/escape", "x")} }},
		{name: "overwrite victim through symlink dir", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.parent), reg("link/victim", "pwned")} }},
		{name: "overwrite victim through relative symlink dir", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", "../victimdir"), reg("link/inner", "pwned")} }},
		{name: "mkdir through symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.victimDir), dirEnt("link/newdir/")} }},
		{name: "implicit parent through symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.victimDir), reg("link/new/deep", "x")} }},
		{name: "chained symlinks", want: mustFail,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("a", "b"), symEnt("b", "c/../.."), dirEnt("c/"), reg("a/escape", "x")}
			}},
		{name: "symlink inside dir pointing up twice", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{dirEnt("d/"), symEnt("d/up", "../.."), reg("d/up/escape", "x")} }},
		{name: "symlink loop", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("loop", "loop"), reg("loop/x", "x")} }},
		{name: "fifo through symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.parent), fifoEnt("link/fifo")} }},
		{name: "symlink through symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.parent), symEnt("link/evil", "/")} }},

		// An entry with the name of an earlier symlink replaces the link;
		// its mode, owner, xattrs and times must not reach the target.
		{name: "regular entry over symlink to victim", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("link", s.victim), reg("link", "pwned").mode(0o4777).foreign().pax(paxXattr+"user.pwn", "1")}
			},
			check: func(t *testing.T, s sandbox) { wantFile(t, filepath.Join(s.layer, "link"), "pwned") }},
		{name: "dir entry over symlink to victim dir", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("link", s.victimDir), dirEnt("link/").mode(0o777).foreign().mtime(entTime)}
			},
			check: func(t *testing.T, s sandbox) { wantType(t, filepath.Join(s.layer, "link"), "dir") }},
		{name: "dir entry over relative symlink to victim file", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("link", "../victim"), dirEnt("link").mode(0o777).foreign()}
			},
			check: func(t *testing.T, s sandbox) { wantType(t, filepath.Join(s.layer, "link"), "dir") }},
		{name: "fifo over symlink to victim", want: mustSucceed,
			ents:  func(s sandbox) []ent { return []ent{symEnt("link", s.victim), fifoEnt("link").mode(0o777).foreign()} },
			check: func(t *testing.T, s sandbox) { wantType(t, filepath.Join(s.layer, "link"), "fifo") }},
		{name: "device over symlink to victim", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("link", s.victim), devEnt("link", tar.TypeChar, 1, 3).mode(0o777).foreign()}
			},
			check: func(t *testing.T, s sandbox) { wantMissing(t, filepath.Join(s.layer, "link")) }},
		{name: "whiteout node over symlink to victim", root: true, want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("link", s.victim), devEnt("link", tar.TypeChar, 0, 0).mode(0o777).foreign()}
			},
			check: func(t *testing.T, s sandbox) { wantType(t, filepath.Join(s.layer, "link"), "char") }},
		{name: "block device of a host disk skipped", want: mustSucceed,
			ents:  func(s sandbox) []ent { return []ent{devEnt("sda", tar.TypeBlock, 8, 0).mode(0o666)} },
			check: func(t *testing.T, s sandbox) { wantMissing(t, filepath.Join(s.layer, "sda")) }},
		{name: "symlink over symlink to victim", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("link", s.victim), symEnt("link", "elsewhere").foreign().mtime(entTime)}
			}},
		{name: "hardlink over symlink to victim", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{reg("f", "inside"), symEnt("link", s.victim), linkEnt("link", "f")}
			},
			check: func(t *testing.T, s sandbox) { wantFile(t, filepath.Join(s.layer, "link"), "inside") }},
		// Directory times are set after all entries; by then the dir may
		// have been replaced by a symlink out of the layer.
		{name: "dir time after dir replaced by symlink", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{dirEnt("d/").mtime(entTime), symEnt("d", s.victimDir)}
			},
			check: func(t *testing.T, s sandbox) { wantType(t, filepath.Join(s.layer, "d"), "symlink") }},
		{name: "nested dir time after parent replaced by symlink", want: mayFail,
			ents: func(s sandbox) []ent {
				return []ent{dirEnt("d/"), dirEnt("d/sub/").mtime(entTime), symEnt("d", s.victimDir)}
			}},
		{name: "nested dir time after parent replaced by relative symlink", want: mayFail,
			ents: func(s sandbox) []ent {
				return []ent{dirEnt("d/"), dirEnt("d/sub/").mtime(entTime), symEnt("d", "../victimdir")}
			}},

		// Hard links must name a file inside the layer.
		{name: "hardlink dotdot", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{linkEnt("h", "../victim")} }},
		{name: "hardlink absolute host path", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{linkEnt("h", s.victim)} }},
		{name: "hardlink through absolute symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.parent), linkEnt("h", "link/victim")} }},
		{name: "hardlink through relative symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", ".."), linkEnt("h", "link/victim")} }},
		{name: "hardlink placed through symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{reg("f", "x"), symEnt("link", s.parent), linkEnt("link/h", "f")} }},
		{name: "hardlink to layer root", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{linkEnt("h", "./")} }},
		{name: "hardlink to dir", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{dirEnt("d/"), linkEnt("h", "d")} }},
		// linkat does not follow a symlink, so this links the symlink
		// itself: h is a second name of the link, not of the victim.
		{name: "hardlink to symlink to victim", want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.victim), linkEnt("h", "link")} },
			check: func(t *testing.T, s sandbox) {
				st := stateOf(t, filepath.Join(s.layer, "h"))
				if st.Type != "symlink" || st.Link != s.victim {
					t.Errorf("h = %+v, want a hard link of the symlink", st)
				}
			}},
		{name: "write through hardlinked symlink", want: mustFail,
			ents: func(s sandbox) []ent {
				return []ent{symEnt("link", s.victimDir), linkEnt("h", "link"), reg("h/inner", "pwned")}
			}},

		// Whiteouts must only delete inside the layer.
		{name: "whiteout dotdot", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{reg("../.wh.victim", "")} }},
		{name: "whiteout of dot", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{reg(".wh..", "")} }},
		{name: "whiteout of dotdot", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{reg(".wh...", "")} }},
		{name: "whiteout of empty name", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{reg("d/.wh.", "")} }},
		{name: "whiteout through absolute symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.parent), reg("link/.wh.victim", "")} }},
		{name: "whiteout through relative symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", ".."), reg("link/.wh.victim", "")} }},
		{name: "whiteout of dir through symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.parent), reg("link/.wh.victimdir", "")} }},
		{name: "whiteout of symlink removes only the link", root: true, want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.victimDir), reg(".wh.link", "")} },
			check: func(t *testing.T, s sandbox) {
				if st := stateOf(t, filepath.Join(s.layer, "link")); !isWhiteout(st) {
					t.Errorf("link = %+v, want a whiteout", st)
				}
			}},
		{name: "whiteout of absolute host path lands inside", root: true, want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{reg(filepath.Join(s.parent, ".wh.victim"), "")} },
			check: func(t *testing.T, s sandbox) {
				if st := stateOf(t, filepath.Join(s.layer, hostRel(s.victim))); !isWhiteout(st) {
					t.Errorf("whiteout = %+v, want char 0/0 inside the layer", st)
				}
			}},

		// The opaque marker sets a trusted.* xattr on its directory; that
		// directory must be inside the layer.
		{name: "opaque through absolute symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", s.victimDir), reg("link/"+whOpaque, "")} }},
		{name: "opaque through relative symlink", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", "../victimdir"), reg("link/"+whOpaque, "")} }},
		{name: "opaque dotdot", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{reg("../"+whOpaque, "")} }},
		{name: "opaque through symlink to parent", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{symEnt("link", ".."), reg("link/"+whOpaque, "")} }},

		// Whiteout markers in odd places: as directories, links, under a
		// file, whited out themselves, or with children.
		{name: "opaque marker as a directory entry", root: true, want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{dirEnt("d/"), dirEnt("d/" + whOpaque + "/")} },
			check: func(t *testing.T, s sandbox) {
				wantMissing(t, filepath.Join(s.layer, "d", whOpaque))
				if x := allXattrs(t, filepath.Join(s.layer, "d"))[opaqueKey]; x != "y" {
					t.Errorf("d is not opaque")
				}
			}},
		{name: "opaque marker as a symlink to victim dir", root: true, want: mustSucceed,
			ents:  func(s sandbox) []ent { return []ent{symEnt("d/"+whOpaque, s.victimDir)} },
			check: func(t *testing.T, s sandbox) { wantMissing(t, filepath.Join(s.layer, "d", whOpaque)) }},
		{name: "opaque marker under a file", want: mayFail,
			ents: func(s sandbox) []ent { return []ent{reg("f", "x"), reg("f/"+whOpaque, "")} }},
		{name: "opaque marker with children", want: mayFail,
			ents: func(s sandbox) []ent { return []ent{reg("d/"+whOpaque+"/x", "x")} }},
		{name: "whiteout as a symlink to victim", root: true, want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{symEnt(".wh.victim", s.victim)} },
			check: func(t *testing.T, s sandbox) {
				if st := stateOf(t, filepath.Join(s.layer, "victim")); !isWhiteout(st) {
					t.Errorf("victim in layer = %+v, want a whiteout", st)
				}
			}},
		// A .wh. name is a whiteout whatever its type: the link target
		// is never looked at.
		{name: "whiteout as a hard link to victim", root: true, want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{linkEnt(".wh.x", s.victim)} },
			check: func(t *testing.T, s sandbox) {
				if st := stateOf(t, filepath.Join(s.layer, "x")); !isWhiteout(st) {
					t.Errorf("x = %+v, want a whiteout", st)
				}
			}},
		{name: "whiteout of a whiteout", root: true, want: mayFail,
			ents: func(s sandbox) []ent { return []ent{reg(".wh..wh.victim", ""), reg(".wh..wh..opq", "")} }},
		{name: "whiteout name with a slash in it", root: true, want: mayFail,
			ents: func(s sandbox) []ent { return []ent{reg(".wh.victimdir/inner", ""), reg(".wh./victim", "")} }},
		{name: "whiteout with dotdot after it", want: mustFail,
			ents: func(s sandbox) []ent { return []ent{reg(".wh.x/../../victim", "")} }},
		{name: "whiteout through doubled slashes", root: true, want: mustSucceed,
			ents: func(s sandbox) []ent { return []ent{reg("//d//.wh.victim", "")} },
			check: func(t *testing.T, s sandbox) {
				if st := stateOf(t, filepath.Join(s.layer, "d", "victim")); !isWhiteout(st) {
					t.Errorf("d/victim = %+v, want a whiteout", st)
				}
			}},

		// A file over a directory and a directory over a file, where the
		// replaced one was a way out.
		{name: "file over dir holding a symlink out", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{dirEnt("d/"), symEnt("d/out", s.victimDir), reg("d", "file")}
			},
			check: func(t *testing.T, s sandbox) { wantFile(t, filepath.Join(s.layer, "d"), "file") }},
		{name: "dir over file then write into it", want: mustSucceed,
			ents:  func(s sandbox) []ent { return []ent{reg("d", "file"), dirEnt("d/"), reg("d/victim", "inside")} },
			check: func(t *testing.T, s sandbox) { wantFile(t, filepath.Join(s.layer, "d", "victim"), "inside") }},

		// Entries naming the layer root itself are skipped, so an archive
		// cannot chmod or chown the directory it is unpacked into.
		{name: "root entry ignored", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{dirEnt("./").mode(0o777).foreign(), dirEnt("/").mode(0o777), reg(".", "x"), symEnt("./", s.parent)}
			},
			check: func(t *testing.T, s sandbox) {
				if st := stateOf(t, s.layer); st.Type != "dir" || st.Mode != 0o755 {
					t.Errorf("layer dir = %+v, want untouched 0755 dir", st)
				}
			}},

		// xattrs that would steer the host's overlayfs are dropped.
		{name: "overlay redirect xattr dropped", want: mustSucceed,
			ents: func(s sandbox) []ent {
				return []ent{dirEnt("d/").pax(paxXattr+"trusted.overlay.redirect", s.victimDir).pax(paxXattr+opaqueKey, "y")}
			},
			check: func(t *testing.T, s sandbox) {
				if x := allXattrs(t, filepath.Join(s.layer, "d")); len(x) != 0 {
					t.Errorf("d has xattrs %v, want none", x)
				}
			}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				requireRoot(t)
			}
			s := newSandbox(t)
			data := buildTar(t, tc.ents(s)...)
			before := s.outside(t)

			_, err := Unpack(bytes.NewReader(data), s.layer)
			t.Logf("Unpack: %v", err)

			diffStates(t, before, s.outside(t))
			switch {
			case tc.want == mustFail && err == nil:
				t.Errorf("Unpack succeeded, want an error")
			case tc.want == mustSucceed && err != nil:
				t.Errorf("Unpack: %v, want success", err)
			}
			if err == nil && tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func wantFile(t *testing.T, p, content string) {
	t.Helper()
	st := stateOf(t, p)
	if st.Type != "reg" {
		t.Fatalf("%s is a %s, want a regular file", p, st.Type)
	}
	b, _ := os.ReadFile(p)
	if string(b) != content {
		t.Errorf("%s = %q, want %q", p, b, content)
	}
}

func wantMissing(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (%v), want nothing there", p, err)
	}
}

func wantType(t *testing.T, p, typ string) {
	t.Helper()
	if st := stateOf(t, p); st.Type != typ {
		t.Errorf("%s is a %s, want %s", p, st.Type, typ)
	}
}

// TestUnpackEntries checks what each kind of entry becomes on disk, and
// how an entry replaces what an earlier one left.
func TestUnpackEntries(t *testing.T) {
	t1 := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	cases := []struct {
		name    string
		root    bool
		ents    []ent
		wantErr string // substring; "" means success
		check   func(t *testing.T, dir string)
	}{
		{name: "regular file", ents: []ent{reg("f", "data").mode(0o640).mtime(t1)},
			check: func(t *testing.T, dir string) {
				st := stateOf(t, filepath.Join(dir, "f"))
				wantFile(t, filepath.Join(dir, "f"), "data")
				if st.Mode != 0o640 || st.Mtime != t1.Unix() {
					t.Errorf("f = %+v, want mode 0640 mtime %d", st, t1.Unix())
				}
			}},
		{name: "setuid survives chown", ents: []ent{reg("f", "x").mode(0o6755)},
			check: func(t *testing.T, dir string) {
				if st := stateOf(t, filepath.Join(dir, "f")); st.Mode != 0o755|fs.ModeSetuid|fs.ModeSetgid {
					t.Errorf("f mode %v, want setuid+setgid 0755", st.Mode)
				}
			}},
		{name: "foreign owner", root: true, ents: []ent{reg("f", "x").owner(1234, 5678).mode(0o4755), symEnt("l", "f").owner(1234, 5678)},
			check: func(t *testing.T, dir string) {
				for _, n := range []string{"f", "l"} {
					if st := stateOf(t, filepath.Join(dir, n)); st.Uid != 1234 || st.Gid != 5678 {
						t.Errorf("%s owner %d:%d, want 1234:5678", n, st.Uid, st.Gid)
					}
				}
				if st := stateOf(t, filepath.Join(dir, "f")); st.Mode&fs.ModeSetuid == 0 {
					t.Errorf("f lost setuid after chown: %v", st.Mode)
				}
			}},
		{name: "implicit parents", ents: []ent{reg("a/b/c", "x")},
			check: func(t *testing.T, dir string) {
				for _, d := range []string{"a", "a/b"} {
					if st := stateOf(t, filepath.Join(dir, d)); st.Type != "dir" || st.Mode != 0o755 {
						t.Errorf("%s = %+v, want a 0755 dir", d, st)
					}
				}
			}},
		// Mode is applied after creation, so a read-only dir still gets
		// its children (root bypasses the permission anyway).
		{name: "read-only dir with children", root: true, ents: []ent{dirEnt("ro/").mode(0o555), reg("ro/f", "x")},
			check: func(t *testing.T, dir string) {
				if st := stateOf(t, filepath.Join(dir, "ro")); st.Mode != 0o555 {
					t.Errorf("ro mode %v, want 0555", st.Mode)
				}
			}},
		{name: "symlink target kept as text", ents: []ent{symEnt("abs", "/nonexistent/abs"), symEnt("rel", "../../up").mtime(t1)},
			check: func(t *testing.T, dir string) {
				if st := stateOf(t, filepath.Join(dir, "abs")); st.Link != "/nonexistent/abs" {
					t.Errorf("abs -> %q", st.Link)
				}
				if st := stateOf(t, filepath.Join(dir, "rel")); st.Link != "../../up" || st.Mtime != t1.Unix() {
					t.Errorf("rel = %+v, want -> ../../up with mtime %d", st, t1.Unix())
				}
			}},
		{name: "hard link", ents: []ent{reg("a", "x"), linkEnt("b", "a"), linkEnt("c", "/a")},
			check: func(t *testing.T, dir string) {
				a, b, c := stateOf(t, filepath.Join(dir, "a")), stateOf(t, filepath.Join(dir, "b")), stateOf(t, filepath.Join(dir, "c"))
				if a.Ino != b.Ino || a.Ino != c.Ino || a.Nlink != 3 {
					t.Errorf("a, b, c not one inode: %d %d %d nlink %d", a.Ino, b.Ino, c.Ino, a.Nlink)
				}
			}},
		{name: "hard link to missing target", ents: []ent{linkEnt("b", "nope")}, wantErr: "no such file"},
		{name: "fifo", ents: []ent{fifoEnt("p").mode(0o600)},
			check: func(t *testing.T, dir string) {
				if st := stateOf(t, filepath.Join(dir, "p")); st.Type != "fifo" || st.Mode != 0o600 {
					t.Errorf("p = %+v", st)
				}
			}},
		{name: "unknown type", ents: []ent{{hdr: tar.Header{Typeflag: 'Z', Name: "z"}}}, wantErr: "unsupported entry type"},
		{name: "pax global header ignored", ents: []ent{{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "hi"}}}, reg("f", "x")},
			check: func(t *testing.T, dir string) {
				names := dirNames(t, dir)
				if !reflect.DeepEqual(names, []string{"f"}) {
					t.Errorf("layer holds %q, want only f", names)
				}
			}},
		// A global header is metadata. Its name is not a path to replace.
		{name: "pax global header does not delete files", ents: []ent{reg("keep", "x"), {hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "keep", PAXRecords: map[string]string{"comment": "hi"}}}},
			check: func(t *testing.T, dir string) { wantFile(t, filepath.Join(dir, "keep"), "x") }},

		// Replacement: a later entry wins, but two directories merge.
		{name: "file replaces file", ents: []ent{reg("f", "old"), reg("f", "new")},
			check: func(t *testing.T, dir string) { wantFile(t, filepath.Join(dir, "f"), "new") }},
		{name: "dir replaces file", ents: []ent{reg("f", "old"), dirEnt("f/")},
			check: func(t *testing.T, dir string) { wantType(t, filepath.Join(dir, "f"), "dir") }},
		{name: "file replaces dir tree", ents: []ent{dirEnt("d/"), reg("d/x", "x"), reg("d", "file")},
			check: func(t *testing.T, dir string) { wantFile(t, filepath.Join(dir, "d"), "file") }},
		{name: "dirs merge", ents: []ent{dirEnt("d/").mode(0o700), reg("d/x", "x"), dirEnt("d/").mode(0o750)},
			check: func(t *testing.T, dir string) {
				wantFile(t, filepath.Join(dir, "d", "x"), "x")
				if st := stateOf(t, filepath.Join(dir, "d")); st.Mode != 0o750 {
					t.Errorf("d mode %v, want the later entry's 0750", st.Mode)
				}
			}},
		{name: "symlink replaces dir", ents: []ent{dirEnt("d/"), reg("d/x", "x"), symEnt("d", "elsewhere")},
			check: func(t *testing.T, dir string) { wantType(t, filepath.Join(dir, "d"), "symlink") }},
		{name: "file through symlink to inside dir", ents: []ent{dirEnt("real/"), symEnt("alias", "real"), reg("alias/f", "x")},
			check: func(t *testing.T, dir string) {
				wantFile(t, filepath.Join(dir, "real", "f"), "x")
				wantType(t, filepath.Join(dir, "alias"), "symlink")
			}},

		// Whiteouts and opaque markers become their overlayfs forms.
		{name: "whiteout removes tree", root: true, ents: []ent{dirEnt("d/"), reg("d/x", "x"), reg(".wh.d", "")},
			check: func(t *testing.T, dir string) {
				if st := stateOf(t, filepath.Join(dir, "d")); !isWhiteout(st) {
					t.Errorf("d = %+v, want char 0/0", st)
				}
			}},
		{name: "whiteout of missing name", root: true, ents: []ent{reg("a/b/.wh.gone", "")},
			check: func(t *testing.T, dir string) {
				if st := stateOf(t, filepath.Join(dir, "a/b/gone")); !isWhiteout(st) {
					t.Errorf("a/b/gone = %+v, want char 0/0", st)
				}
				if _, err := os.Lstat(filepath.Join(dir, "a/b/.wh.gone")); err == nil {
					t.Errorf(".wh. file left on disk")
				}
			}},
		{name: "opaque keeps the dir's entries", root: true, ents: []ent{dirEnt("d/"), reg("d/"+whOpaque, ""), reg("d/x", "x")},
			check: func(t *testing.T, dir string) {
				if x := allXattrs(t, filepath.Join(dir, "d"))[opaqueKey]; x != "y" {
					t.Errorf("d %s = %q, want y", opaqueKey, x)
				}
				wantFile(t, filepath.Join(dir, "d", "x"), "x")
				if names := dirNames(t, filepath.Join(dir, "d")); !reflect.DeepEqual(names, []string{"x"}) {
					t.Errorf("d holds %q, want only x", names)
				}
			}},
		{name: "opaque for implicit dir", root: true, ents: []ent{reg("new/"+whOpaque, "")},
			check: func(t *testing.T, dir string) {
				if x := allXattrs(t, filepath.Join(dir, "new"))[opaqueKey]; x != "y" {
					t.Errorf("new %s = %q, want y", opaqueKey, x)
				}
			}},
		{name: "opaque at layer root", root: true, ents: []ent{reg(whOpaque, "")},
			check: func(t *testing.T, dir string) {
				if x := allXattrs(t, dir)[opaqueKey]; x != "y" {
					t.Errorf("layer root %s = %q, want y", opaqueKey, x)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				requireRoot(t)
			}
			dir := newLayerDir(t)
			err := unpackEnts(t, dir, tc.ents...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Unpack: %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if tc.check != nil {
				tc.check(t, dir)
			}
		})
	}
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

// TestUnpackXattrs: only user.* and security.capability come out of a
// layer; trusted.* (overlay redirects, whiteouts), security.selinux and
// system.* (ACLs) are host policy and are dropped.
func TestUnpackXattrs(t *testing.T) {
	dir := newLayerDir(t)
	// Probe that the file system takes user xattrs at all.
	writeFile(t, filepath.Join(dir, "probe"), "", 0o644)
	setXattr(t, filepath.Join(dir, "probe"), "user.probe", "1")
	os.Remove(filepath.Join(dir, "probe"))

	e := reg("f", "x").
		pax(paxXattr+"user.keep", "kept").
		pax(paxXattr+"user.empty", "").
		pax(paxXattr+"trusted.overlay.redirect", "/etc").
		pax(paxXattr+"trusted.overlay.opaque", "y").
		pax(paxXattr+"trusted.other", "t").
		pax(paxXattr+"security.selinux", "system_u:object_r:shadow_t:s0").
		pax(paxXattr+"system.posix_acl_access", "\x02\x00\x00\x00").
		pax("comment", "not an xattr")
	// A v2 file capability granting cap_net_bind_service (bit 10),
	// permitted and effective. Set after chown, which would clear it.
	var capv2 [20]byte
	binary.LittleEndian.PutUint32(capv2[0:], 0x02000001)
	binary.LittleEndian.PutUint32(capv2[4:], 1<<10)
	if isRoot() {
		e = e.owner(1234, 1234).pax(paxXattr+"security.capability", string(capv2[:]))
	}
	if err := unpackEnts(t, dir, e); err != nil {
		t.Fatal(err)
	}
	got := allXattrs(t, filepath.Join(dir, "f"))
	if got["user.keep"] != "kept" {
		t.Errorf("user.keep = %q, want kept", got["user.keep"])
	}
	if v, ok := got["user.empty"]; !ok || v != "" {
		t.Errorf("user.empty = %q (present %v), want empty value kept", v, ok)
	}
	if isRoot() {
		c := got["security.capability"]
		// The kernel may store it as v3 in a user namespace; the
		// permitted mask sits at the same offset either way.
		if len(c) < 8 || binary.LittleEndian.Uint32([]byte(c[4:8])) != 1<<10 {
			t.Errorf("security.capability = %x, want cap_net_bind_service kept", c)
		}
	}
	for k := range got {
		if k != "user.keep" && k != "user.empty" && k != "security.capability" {
			t.Errorf("xattr %s = %q leaked into the layer", k, got[k])
		}
	}
}

// TestUnpackDevices documents what Unpack does with device entries: it
// creates them as given, any major/minor, with the archive's mode. A
// layer may hold /dev/sda; containment is the runtime's job. Without
// privileges mknod fails and so does Unpack.
// TestUnpackDevices: device nodes are skipped, replacing what was there,
// except the 0/0 character device that is a whiteout; fifos are made.
func TestUnpackDevices(t *testing.T) {
	dir := newLayerDir(t)
	err := unpackEnts(t, dir,
		reg("sda", "earlier file"),
		devEnt("null", tar.TypeChar, 1, 3).mode(0o666),
		devEnt("sda", tar.TypeBlock, 8, 0).mode(0o660),
		devEnt("mem", tar.TypeChar, 1, 1).mode(0o640),
		devEnt("wh", tar.TypeChar, 0, 0).mode(0o600),
		fifoEnt("fifo").mode(0o620),
	)
	if !isRoot() {
		// mknod of the whiteout needs privileges.
		if err == nil {
			t.Fatal("Unpack of a whiteout node succeeded without privileges")
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, typ string
		rdev      uint64
		mode      fs.FileMode
	}{
		{"wh", "char", 0, 0o600}, // an explicit 0/0 device is a whiteout too
		{"fifo", "fifo", 0, 0o620},
	} {
		st := stateOf(t, filepath.Join(dir, c.name))
		if st.Type != c.typ || st.Rdev != c.rdev || st.Mode != c.mode {
			t.Errorf("%s = %s rdev %#x mode %v, want %s rdev %#x mode %v",
				c.name, st.Type, st.Rdev, st.Mode, c.typ, c.rdev, c.mode)
		}
	}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"fifo", "wh"}) {
		t.Errorf("layer holds %q, want only fifo and wh: devices skipped", names)
	}
}

// TestUnpackTimes: mtimes come from the archive, directories' are set
// after their contents so later entries do not disturb them, and the
// last entry for a path wins for its time as it does for its mode.
func TestUnpackTimes(t *testing.T) {
	t1 := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := time.Date(2015, 6, 6, 6, 6, 6, 0, time.UTC)
	mtimeOf := func(t *testing.T, p string) time.Time {
		t.Helper()
		st := stateOf(t, p)
		return time.Unix(st.Mtime, st.MtNsec).UTC()
	}
	cases := []struct {
		name  string
		ents  []ent
		check map[string]time.Time
	}{
		{name: "dir times survive later children",
			ents:  []ent{dirEnt("d/").mtime(t1), dirEnt("d/e/").mtime(t2), reg("d/f", "x").mtime(t2), reg("d/e/g", "y").mtime(t1)},
			check: map[string]time.Time{"d": t1, "d/e": t2, "d/f": t2, "d/e/g": t1}},
		{name: "repeated dir entry: last wins",
			ents:  []ent{dirEnt("d/").mtime(t1), dirEnt("d/").mtime(t2)},
			check: map[string]time.Time{"d": t2}},
		{name: "dir replaced by file keeps the file's time",
			ents:  []ent{dirEnt("d/").mtime(t1), reg("d", "x").mtime(t2)},
			check: map[string]time.Time{"d": t2}},
		{name: "dir with subdir replaced by file",
			ents:  []ent{dirEnt("d/").mtime(t1), dirEnt("d/sub/").mtime(t1), reg("d", "x").mtime(t2)},
			check: map[string]time.Time{"d": t2}},
		{name: "before 1970",
			ents:  []ent{reg("old", "x").mtime(time.Date(1960, 2, 3, 4, 5, 6, 0, time.UTC))},
			check: map[string]time.Time{"old": time.Date(1960, 2, 3, 4, 5, 6, 0, time.UTC)}},
		// ext4, xfs and btrfs hold such times; Tar writes them (PAX), so
		// Unpack must restore them rather than overflow int64 nanoseconds.
		{name: "after 2262",
			ents:  []ent{reg("future", "x").mtime(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)), dirEnt("fd/").mtime(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC))},
			check: map[string]time.Time{"future": time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "fd": time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := newLayerDir(t)
			if err := unpackEnts(t, dir, tc.ents...); err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			for p, want := range tc.check {
				if got := mtimeOf(t, filepath.Join(dir, p)); !got.Equal(want) {
					t.Errorf("%s mtime %v, want %v", p, got, want)
				}
			}
		})
	}
}

// TestUnpackDiffID: the diff ID covers every byte of the stream, the
// padding GNU tar adds after the end marker included, so it matches the
// digest a registry computes over the uncompressed blob.
func TestUnpackDiffID(t *testing.T) {
	plain := buildTar(t, reg("a", "hello"), dirEnt("d/"))
	padded := append(append([]byte(nil), plain...), make([]byte, 10240-len(plain)%10240)...)
	// Bytes after the end marker are not archive content, but they are
	// part of the blob and so of its digest.
	trailing := append(append([]byte(nil), plain...), "trailing garbage"...)

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"plain", plain},
		{"padded to 10240", padded},
		{"trailing bytes", trailing},
		// An empty stream reads as an archive without entries.
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// iotest-style one-byte reads check nothing depends on how
			// the reader chunks the stream.
			id, err := Unpack(&oneByteReader{bytes.NewReader(tc.data)}, newLayerDir(t))
			if err != nil {
				t.Fatal(err)
			}
			if want := sha256Hex(tc.data); id != want {
				t.Errorf("diffID %s, want %s", id, want)
			}
		})
	}

	t.Run("reader error", func(t *testing.T) {
		boom := errors.New("boom")
		r := io.MultiReader(bytes.NewReader(plain[:600]), &errReader{boom})
		id, err := Unpack(r, newLayerDir(t))
		if !errors.Is(err, boom) || id != "" {
			t.Errorf("Unpack = %q, %v; want \"\", boom", id, err)
		}
	})
	t.Run("reader error after end marker", func(t *testing.T) {
		boom := errors.New("boom")
		r := io.MultiReader(bytes.NewReader(plain), &errReader{boom})
		if _, err := Unpack(r, newLayerDir(t)); !errors.Is(err, boom) {
			t.Errorf("Unpack: %v; want boom: the digest is incomplete", err)
		}
	})
}

type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// TestUnpackTruncated cuts an archive at various points. A cut inside a
// header or inside file data is an error. A cut exactly at an entry
// boundary cannot be told from an archive without an end marker, which
// archive/tar accepts; the diff ID then differs from the full one, which
// is what callers that know the expected diff ID rely on.
func TestUnpackTruncated(t *testing.T) {
	full := buildTar(t, reg("a", strings.Repeat("A", 1000)), reg("b", "hello"))
	// Layout: a hdr [0,512) data [512,1536) b hdr [1536,2048) data [2048,2560) end [2560,3584).
	if len(full) != 3584 {
		t.Fatalf("archive is %d bytes, layout assumptions broken", len(full))
	}
	fullID := sha256Hex(full)
	for _, tc := range []struct {
		name    string
		cut     int
		wantErr bool
	}{
		{"inside first header", 100, true},
		{"after first header", 512, true},
		{"inside first data", 700, true},
		{"inside second header", 1600, true},
		{"inside second data", 2050, true},
		{"inside end marker", 3000, true},
		{"at entry boundary", 1536, false},
		// archive/tar reads a short final padding as a clean end; all of
		// a's data was there.
		{"inside padding after data", 1520, false},
		{"without end marker", 2560, false},
		{"empty", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := Unpack(bytes.NewReader(full[:tc.cut]), newLayerDir(t))
			t.Logf("Unpack: %v", err)
			if tc.wantErr {
				if err == nil {
					t.Errorf("Unpack of %d/%d bytes succeeded", tc.cut, len(full))
				}
				return
			}
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if id == fullID {
				t.Errorf("truncated archive has the full archive's diffID")
			}
		})
	}
}

// TestUnpackOversized: headers that claim huge names or sizes must fail
// cleanly, without panicking or allocating what they claim.
func TestUnpackOversized(t *testing.T) {
	bigName := strings.Repeat("n", 2<<20)
	paxRec := func(k, v string) string {
		// A PAX record's length counts its own digits.
		rec := " " + k + "=" + v + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		return fmt.Sprint(n) + rec
	}
	bigPAX := paxRec("path", bigName)
	sizeRec := paxRec("size", "4611686018427387904") // 2^62
	negRec := paxRec("size", "-1")
	cases := []struct {
		name    string
		data    []byte
		partial bool // the header itself is valid; f exists, its data is short
	}{
		{name: "pax path over 1MiB", data: concat(rawHeader("PaxHeaders/f", tar.TypeXHeader, int64(len(bigPAX))),
			padBlock([]byte(bigPAX)), rawHeader("f", tar.TypeReg, 0), endMarker())},
		{name: "gnu long name over 1MiB", data: concat(rawHeader("././@LongLink", tar.TypeGNULongName, int64(len(bigName))),
			padBlock([]byte(bigName)), rawHeader("f", tar.TypeReg, 0), endMarker())},
		{name: "pax record length beyond data", data: concat(rawHeader("PaxHeaders/f", tar.TypeXHeader, 32),
			padBlock([]byte("99999999999999999 path=x\n")), rawHeader("f", tar.TypeReg, 0), endMarker())},
		{name: "pax header size claims 8GiB", data: concat(rawHeader("PaxHeaders/f", tar.TypeXHeader, 1<<33-1),
			padBlock([]byte(paxRec("path", "x"))), endMarker())},
		{name: "pax size record 2^62 without data", partial: true, data: concat(rawHeader("PaxHeaders/f", tar.TypeXHeader, int64(len(sizeRec))),
			padBlock([]byte(sizeRec)), rawHeader("f", tar.TypeReg, 0), endMarker())},
		{name: "file size 8GiB without data", partial: true, data: concat(rawHeader("f", tar.TypeReg, 1<<33-1), []byte("short"))},
		{name: "bad checksum", data: func() []byte {
			b := rawHeader("f", tar.TypeReg, 0)
			b[0] = 'g'
			return concat(b, endMarker())
		}()},
		{name: "negative pax size", data: concat(rawHeader("PaxHeaders/f", tar.TypeXHeader, int64(len(negRec))),
			padBlock([]byte(negRec)), rawHeader("f", tar.TypeReg, 0), endMarker())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := newLayerDir(t)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Unpack(bytes.NewReader(tc.data), dir)
			runtime.ReadMemStats(&after)
			t.Logf("Unpack: %v", err)
			if err == nil {
				t.Errorf("Unpack succeeded, want an error")
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
				t.Errorf("Unpack allocated %d MiB for a %d KiB input", n>>20, len(tc.data)>>10)
			}
			if names := dirNames(t, dir); len(names) > 0 && !tc.partial {
				t.Errorf("layer holds %q after a rejected header", names)
			}
		})
	}
}

// TestUnpackSparseExpansion: archive/tar would expand a PAX (GNU 1.0)
// sparse file's holes into written zeros, GNU.sparse.realsize bytes with
// no limit, so a few KiB of archive could fill the disk. Sparse entries
// are refused.
func TestUnpackSparseExpansion(t *testing.T) {
	const realsize = 16 << 20
	paxData := ""
	for _, kv := range [][2]string{
		{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", "f"}, {"GNU.sparse.realsize", fmt.Sprint(realsize)},
	} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		paxData += fmt.Sprint(len(rec)+2) + rec // all records here are 10-99 bytes
	}
	sparseMap := padBlock([]byte("1\n0\n5\n")) // one data extent: offset 0, length 5
	body := append(sparseMap, "hello"...)
	data := concat(rawHeader("PaxHeaders/f", tar.TypeXHeader, int64(len(paxData))), padBlock([]byte(paxData)),
		rawHeader("GNUSparseFile.0/f", tar.TypeReg, int64(len(body))), padBlock(body), endMarker())

	dir := newLayerDir(t)
	_, err := Unpack(bytes.NewReader(data), dir)
	if err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Fatalf("Unpack of a sparse file: %v, want it refused", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("layer holds %q after a refused sparse file", names)
	}
}

// TestCleanName pins the path rules: leading "/" stripped, any ".."
// element refused, NUL refused, the root maps to "".
func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"a", "a", false},
		{"a/b/", "a/b", false},
		{"./a//b/./c", "a/b/c", false},
		{"/abs/path", "abs/path", false},
		{"///x", "x", false},
		{".", "", false},
		{"./", "", false},
		{"/", "", false},
		{"", "", false},
		{"..", "", true},
		{"../a", "", true},
		{"a/..", "", true},
		{"a/../b", "", true},
		{"/../a", "", true},
		{"a/b/../../..", "", true},
		{"a\x00b", "", true},
		{"...", "...", false},
		{"..a", "..a", false},
		{"a..", "a..", false},
		{`a\..\b`, `a\..\b`, false}, // backslash is an ordinary byte on Linux
	} {
		got, err := cleanName(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// totalSize is the sum of entry sizes archive/tar reports for data, as
// far as it can be parsed. Sparse entries report their expanded size.
func totalSize(data []byte) int64 {
	tr := tar.NewReader(bytes.NewReader(data))
	var n int64
	for {
		h, err := tr.Next()
		if err != nil {
			return n
		}
		if h.Size > 0 {
			n += h.Size
		}
		if n > fuzzMaxBytes {
			return n
		}
	}
}

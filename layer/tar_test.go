package layer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------------------
// Helpers shared by tar_test.go and unpack_test.go.
// ---------------------------------------------------------------------------

func isRoot() bool { return os.Geteuid() == 0 }

// requireRoot skips t when the test needs privileges: chown to other users,
// mknod of devices and whiteouts, or trusted.* xattrs.
func requireRoot(t testing.TB) {
	t.Helper()
	if !isRoot() {
		t.Skip("needs root (chown, mknod or trusted.* xattrs)")
	}
}

func writeFile(t testing.TB, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// WriteFile is subject to the umask and cannot set setuid bits. Note
	// os.Chmod wants fs.ModeSetuid, not the raw 04000 bit.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, p string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func mknod(t testing.TB, p string, mode uint32, major, minor uint32) {
	t.Helper()
	if err := unix.Mknod(p, mode, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatalf("mknod %s: %v", p, err)
	}
}

func lchown(t testing.TB, p string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// setMtime sets atime and mtime of p without following a symlink.
func setMtime(t testing.TB, p string, mt time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(mt.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("utimes %s: %v", p, err)
	}
}

// setXattr sets an attribute, skipping the test when the file system of
// the temp dir does not support user xattrs.
func setXattr(t testing.TB, p, key, val string) {
	t.Helper()
	err := unix.Lsetxattr(p, key, []byte(val), 0)
	if errors.Is(err, unix.ENOTSUP) {
		t.Skipf("file system does not support xattr %s", key)
	}
	if err != nil {
		t.Fatalf("setxattr %s %s: %v", p, key, err)
	}
}

// allXattrs lists every attribute of p, trusted.* included.
func allXattrs(t testing.TB, p string) map[string]string {
	t.Helper()
	sz, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || sz == 0 {
		return nil
	}
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	out := map[string]string{}
	for _, k := range strings.Split(string(buf[:sz]), "\x00") {
		if k == "" {
			continue
		}
		v, err := getXattr(p, k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// fileState is everything about one file that a layer must carry, plus
// Ino and Nlink so callers can check hard links.
type fileState struct {
	Type    string
	Mode    fs.FileMode // permission, setuid, setgid and sticky bits
	Uid     uint32
	Gid     uint32
	Rdev    uint64
	Size    int64
	Content string // sha256 of a regular file
	Link    string // symlink target
	Mtime   int64  // seconds
	MtNsec  int64
	Xattrs  map[string]string
	Ino     uint64
	Nlink   uint64
}

func stateOf(t testing.TB, p string) fileState {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	s := fileState{
		Mode:   fs.FileMode(st.Mode & 0o777),
		Uid:    st.Uid,
		Gid:    st.Gid,
		Mtime:  st.Mtim.Sec,
		MtNsec: st.Mtim.Nsec,
		Xattrs: allXattrs(t, p),
		Ino:    st.Ino,
		Nlink:  uint64(st.Nlink),
	}
	if st.Mode&unix.S_ISUID != 0 {
		s.Mode |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		s.Mode |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		s.Mode |= fs.ModeSticky
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		s.Type, s.Size = "reg", st.Size
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		s.Content = hex.EncodeToString(sum[:])
	case unix.S_IFDIR:
		s.Type = "dir"
	case unix.S_IFLNK:
		s.Type = "symlink"
		l, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		s.Link = l
	case unix.S_IFIFO:
		s.Type = "fifo"
	case unix.S_IFCHR:
		s.Type, s.Rdev = "char", st.Rdev
	case unix.S_IFBLK:
		s.Type, s.Rdev = "block", st.Rdev
	case unix.S_IFSOCK:
		s.Type = "socket"
	default:
		s.Type = fmt.Sprintf("mode %o", st.Mode)
	}
	return s
}

// treeState maps every path under dir (relative, slash separated, the root
// itself as ".") to its state. skip prunes a subtree.
func treeState(t testing.TB, dir string, skip func(rel string) bool) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		out[rel] = stateOf(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tarBytes(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Tar(dir, &buf); err != nil {
		t.Fatalf("Tar(%s): %v", dir, err)
	}
	return buf.Bytes()
}

type tarEntry struct {
	Hdr  *tar.Header
	Body string
}

// readTar decodes an archive with the standard library, the way a
// registry or Docker would see it.
func readTar(t testing.TB, data []byte) []tarEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []tarEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading archive: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr, string(b)})
	}
}

func entryNames(ents []tarEntry) []string {
	var names []string
	for _, e := range ents {
		names = append(names, e.Hdr.Name)
	}
	return names
}

func findEntry(t testing.TB, ents []tarEntry, name string) tarEntry {
	t.Helper()
	for _, e := range ents {
		if e.Hdr.Name == name {
			return e
		}
	}
	t.Fatalf("archive has no entry %q; entries: %q", name, entryNames(ents))
	return tarEntry{}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// ---------------------------------------------------------------------------
// A source tree with every kind of file a layer carries.
// ---------------------------------------------------------------------------

// base time for source mtimes; each file gets its own offset and a
// sub-second part so that truncation to seconds is visible.
var baseTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// buildTree fills dir with a tree covering the kinds of files a layer
// holds. Privileged parts (foreign owners, devices, whiteouts, opaque
// dirs, trusted.* xattrs) are added only when withRoot is set.
func buildTree(t testing.TB, dir string, withRoot bool) {
	t.Helper()
	j := func(p string) string { return filepath.Join(dir, p) }

	writeFile(t, j("file.txt"), "hello, layer\n", 0o644)
	setXattr(t, j("file.txt"), "user.foo", "bar")
	writeFile(t, j("secret"), "s3cr3t", 0o600)
	writeFile(t, j("setuid-bin"), "#!/bin/true\n", 0o755|fs.ModeSetuid)
	writeFile(t, j("empty"), "", 0o444)
	writeFile(t, j("big"), strings.Repeat("0123456789abcdef", 4096+3), 0o640)

	mkdir(t, j("dir"), 0o755)
	setXattr(t, j("dir"), "user.dirattr", "d")
	mkdir(t, j("dir/sub"), 0o700)
	writeFile(t, j("dir/sub/deep.txt"), "deep", 0o644)
	mkdir(t, j("sticky"), 0o777|fs.ModeSticky)

	symlink(t, "file.txt", j("rel-link"))
	symlink(t, "does/not/exist", j("dangling"))
	symlink(t, "/etc/passwd", j("abs-link")) // must stay text, never resolved
	symlink(t, "../file.txt", j("dir/up-link"))

	writeFile(t, j("dir/hard1"), "linked content", 0o640)
	if err := os.Link(j("dir/hard1"), j("hard2")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(j("pipe"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(j("pipe"), 0o640); err != nil {
		t.Fatal(err)
	}

	if withRoot {
		writeFile(t, j("owned"), "theirs", 0o644)
		lchown(t, j("owned"), 1234, 5678)
		// chown clears setuid, so chmod after it, as a package manager would.
		writeFile(t, j("owned-setuid"), "suid", 0o644)
		lchown(t, j("owned-setuid"), 1234, 5678)
		if err := os.Chmod(j("owned-setuid"), 0o755|fs.ModeSetuid|fs.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		mkdir(t, j("owned-dir"), 0o750)
		lchown(t, j("owned-dir"), 1234, 5678)
		symlink(t, "owned", j("owned-link"))
		lchown(t, j("owned-link"), 1234, 5678)

		mknod(t, j("devnull"), unix.S_IFCHR|0o666, 1, 3)
		mknod(t, j("loopdev"), unix.S_IFBLK|0o660, 7, 0)

		// A trusted.* attribute belongs to the host and must not travel.
		setXattr(t, j("file.txt"), "trusted.hostonly", "x")

		// overlayfs whiteouts and an opaque directory.
		mknod(t, j("gone"), unix.S_IFCHR, 0, 0)
		mknod(t, j("dir/gone2"), unix.S_IFCHR, 0, 0)
		mkdir(t, j("opq"), 0o755)
		writeFile(t, j("opq/kept"), "kept", 0o644)
		setXattr(t, j("opq"), opaqueKey, "y")
	}

	// Set mtimes last and deepest first: creating entries changes the
	// mtime of their parent directory.
	var paths []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		setMtime(t, p, baseTime.Add(time.Duration(i)*time.Hour+123456789*time.Nanosecond))
	}
}

// isWhiteout reports whether s is an overlayfs whiteout.
func isWhiteout(s fileState) bool { return s.Type == "char" && s.Rdev == 0 }

// wantAfterUnpack is what Unpack should make of a source file: mtime in
// whole seconds, trusted.* xattrs gone except the opaque marker, and for
// whiteouts only "char 0/0" (their mode, owner and time are not carried).
func wantAfterUnpack(s fileState) fileState {
	s.MtNsec = 0
	s.Ino = 0
	s.Nlink = 0
	for k := range s.Xattrs {
		if strings.HasPrefix(k, "trusted.") && k != opaqueKey {
			delete(s.Xattrs, k)
		}
	}
	if len(s.Xattrs) == 0 {
		s.Xattrs = nil
	}
	if isWhiteout(s) {
		return fileState{Type: "char"}
	}
	return s
}

func compareTrees(t *testing.T, src, dst map[string]fileState) {
	t.Helper()
	for name, s := range src {
		if name == "." {
			continue // Tar does not carry the layer root itself.
		}
		d, ok := dst[name]
		if !ok {
			t.Errorf("%s: missing after unpack", name)
			continue
		}
		want, got := wantAfterUnpack(s), wantAfterUnpack(d)
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s:\n got  %+v\n want %+v", name, got, want)
		}
		if d.MtNsec != 0 && !isWhiteout(d) {
			t.Errorf("%s: mtime has %dns, want whole seconds", name, d.MtNsec)
		}
	}
	for name := range dst {
		if _, ok := src[name]; !ok {
			t.Errorf("%s: appeared after unpack", name)
		}
	}
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

// TestRoundTrip packs a tree with Tar, unpacks it with Unpack and checks
// every file comes back with content, mode, owner, link target, hard
// links, mtime (seconds) and xattrs intact.
func TestRoundTrip(t *testing.T) {
	for _, withRoot := range []bool{false, true} {
		name := "unprivileged"
		if withRoot {
			name = "privileged"
		}
		t.Run(name, func(t *testing.T) {
			if withRoot {
				requireRoot(t)
			}
			src, dst := t.TempDir(), t.TempDir()
			buildTree(t, src, withRoot)
			before := treeState(t, src, nil)

			data := tarBytes(t, src)
			id, err := Unpack(bytes.NewReader(data), dst)
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if want := sha256Hex(data); id != want {
				t.Errorf("diffID = %s, want sha256 of the archive %s", id, want)
			}

			// Tar must not have changed the source.
			if after := treeState(t, src, nil); !reflect.DeepEqual(before, after) {
				t.Errorf("Tar modified its source tree")
			}
			got := treeState(t, dst, nil)
			// Device nodes are packed but not unpacked (see unpack.go).
			for _, dev := range []string{"devnull", "loopdev"} {
				if _, ok := got[dev]; ok {
					t.Errorf("%s: device node unpacked", dev)
				}
				delete(before, dev)
			}
			compareTrees(t, before, got)

			// The hard link pair shares one inode in the copy as well.
			h1, h2 := got["dir/hard1"], got["hard2"]
			if h1.Ino != h2.Ino || h1.Nlink != 2 {
				t.Errorf("hard links not preserved: dir/hard1 ino %d nlink %d, hard2 ino %d nlink %d",
					h1.Ino, h1.Nlink, h2.Ino, h2.Nlink)
			}
			// Symlink targets are text; the absolute one must not have
			// been resolved against the host.
			if l := got["abs-link"].Link; l != "/etc/passwd" {
				t.Errorf("abs-link -> %q, want /etc/passwd", l)
			}
			if withRoot {
				if x := got["opq"].Xattrs[opaqueKey]; x != "y" {
					t.Errorf("opq: %s = %q, want y", opaqueKey, x)
				}
				if _, ok := got["file.txt"].Xattrs["trusted.hostonly"]; ok {
					t.Errorf("trusted.hostonly travelled through the layer")
				}
				if s := got["owned-setuid"]; s.Mode&fs.ModeSetuid == 0 || s.Uid != 1234 {
					t.Errorf("owned-setuid = %+v, want setuid kept after chown to 1234", s)
				}
			}
		})
	}
}

// TestTarFormat reads Tar's output with archive/tar and checks the
// encoding promised to registries and Docker: lexical order, numeric
// owners only, mtimes in seconds, hard links by inode, xattrs as
// SCHILY.xattr records, and overlay whiteouts as .wh. files.
func TestTarFormat(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	buildTree(t, src, true)
	ents := readTar(t, tarBytes(t, src))

	names := entryNames(ents)
	// Names are sorted by path element (the order of filepath.WalkDir);
	// a whiteout keeps the position of the device it stands for, and the
	// opaque marker follows its directory.
	want := []string{
		"abs-link", "big", "dangling", "devnull",
		"dir/", "dir/.wh.gone2", "dir/hard1", "dir/sub/", "dir/sub/deep.txt", "dir/up-link",
		"empty", "file.txt", ".wh.gone", "hard2", "loopdev",
		"opq/", "opq/.wh..wh..opq", "opq/kept",
		"owned", "owned-dir/", "owned-link", "owned-setuid",
		"pipe", "rel-link", "secret", "setuid-bin", "sticky/",
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("entry order:\n got  %q\n want %q", names, want)
	}

	for _, e := range ents {
		h := e.Hdr
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q/%q, want numeric owners only", h.Name, h.Uname, h.Gname)
		}
		if h.ModTime.Nanosecond() != 0 {
			t.Errorf("%s: mtime %v not truncated to seconds", h.Name, h.ModTime)
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: atime/ctime recorded; they would break digest stability", h.Name)
		}
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, paxXattr+"trusted.") {
				t.Errorf("%s: host attribute %s in archive", h.Name, k)
			}
		}
	}

	fi, err := os.Lstat(filepath.Join(src, "file.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f := findEntry(t, ents, "file.txt")
	if !f.Hdr.ModTime.Equal(fi.ModTime().Truncate(time.Second)) {
		t.Errorf("file.txt mtime %v, want %v", f.Hdr.ModTime, fi.ModTime().Truncate(time.Second))
	}
	if f.Body != "hello, layer\n" || f.Hdr.Typeflag != tar.TypeReg {
		t.Errorf("file.txt: type %q body %q", f.Hdr.Typeflag, f.Body)
	}
	if v := f.Hdr.PAXRecords["SCHILY.xattr.user.foo"]; v != "bar" {
		t.Errorf("file.txt: SCHILY.xattr.user.foo = %q, want bar", v)
	}

	if h := findEntry(t, ents, "owned").Hdr; h.Uid != 1234 || h.Gid != 5678 {
		t.Errorf("owned: uid/gid %d/%d, want 1234/5678", h.Uid, h.Gid)
	}
	if h := findEntry(t, ents, "setuid-bin").Hdr; h.Mode&0o7777 != 0o4755 {
		t.Errorf("setuid-bin: mode %o, want 4755", h.Mode)
	}
	if h := findEntry(t, ents, "abs-link").Hdr; h.Typeflag != tar.TypeSymlink || h.Linkname != "/etc/passwd" {
		t.Errorf("abs-link: type %q linkname %q", h.Typeflag, h.Linkname)
	}
	// WalkDir meets dir/hard1 before hard2, so hard2 is the link.
	if h := findEntry(t, ents, "dir/hard1").Hdr; h.Typeflag != tar.TypeReg || h.Size != int64(len("linked content")) {
		t.Errorf("dir/hard1: type %q size %d, want the file itself", h.Typeflag, h.Size)
	}
	if h := findEntry(t, ents, "hard2").Hdr; h.Typeflag != tar.TypeLink || h.Linkname != "dir/hard1" || h.Size != 0 {
		t.Errorf("hard2: type %q linkname %q size %d, want a hard link to dir/hard1", h.Typeflag, h.Linkname, h.Size)
	}
	if h := findEntry(t, ents, "pipe").Hdr; h.Typeflag != tar.TypeFifo {
		t.Errorf("pipe: type %q, want fifo", h.Typeflag)
	}
	if h := findEntry(t, ents, "devnull").Hdr; h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 3 {
		t.Errorf("devnull: type %q dev %d:%d, want char 1:3", h.Typeflag, h.Devmajor, h.Devminor)
	}
	if h := findEntry(t, ents, "loopdev").Hdr; h.Typeflag != tar.TypeBlock || h.Devmajor != 7 || h.Devminor != 0 {
		t.Errorf("loopdev: type %q dev %d:%d, want block 7:0", h.Typeflag, h.Devmajor, h.Devminor)
	}
	for _, wh := range []string{".wh.gone", "dir/.wh.gone2", "opq/.wh..wh..opq"} {
		e := findEntry(t, ents, wh)
		if e.Hdr.Typeflag != tar.TypeReg || e.Hdr.Size != 0 {
			t.Errorf("%s: type %q size %d, want an empty regular file", wh, e.Hdr.Typeflag, e.Hdr.Size)
		}
	}
	if h := findEntry(t, ents, "opq/").Hdr; h.PAXRecords[paxXattr+opaqueKey] != "" {
		t.Errorf("opq/: opaque attribute written as an xattr instead of a marker file")
	}

	// Unpacking restores the overlay forms.
	dst := t.TempDir()
	if _, err := FromDir(src, dst); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"gone", "dir/gone2"} {
		if s := stateOf(t, filepath.Join(dst, p)); !isWhiteout(s) {
			t.Errorf("%s after unpack: %s rdev %d, want char 0/0", p, s.Type, s.Rdev)
		}
	}
	if x := allXattrs(t, filepath.Join(dst, "opq"))[opaqueKey]; x != "y" {
		t.Errorf("opq after unpack: %s = %q, want y", opaqueKey, x)
	}
	if _, err := os.Lstat(filepath.Join(dst, "opq", whOpaque)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("opaque marker file left in the unpacked tree (err %v)", err)
	}
}

// TestDigestStability: a tree always packs to the same bytes, the diff ID
// is the sha256 of those bytes, and a tree copied with FromDir packs to
// exactly the same bytes again. The last property is what lets a stored
// (unpacked) layer be exported later under the diff ID it was stored as.
func TestDigestStability(t *testing.T) {
	cases := []struct {
		name     string
		withRoot bool
		remove   []string // files taken out of the tree built by buildTree
	}{
		{name: "unprivileged"},
		// Unpack skips device nodes (see unpack.go), so a tree with them
		// does not survive a copy: they are taken out here.
		{name: "owners opaque dirs", withRoot: true, remove: []string{"gone", "dir/gone2", "devnull", "loopdev"}},
		// Unpack creates a whiteout without the archive's mtime, so Tar of
		// the copy carries the time of the unpack instead of the source's.
		{name: "whiteouts", withRoot: true, remove: []string{"devnull", "loopdev"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.withRoot {
				requireRoot(t)
			}
			src := t.TempDir()
			buildTree(t, src, tc.withRoot)
			for _, p := range tc.remove {
				if err := os.Remove(filepath.Join(src, p)); err != nil {
					t.Fatal(err)
				}
			}

			first, second := tarBytes(t, src), tarBytes(t, src)
			if !bytes.Equal(first, second) {
				t.Fatalf("Tar of the same tree differs between runs (%d vs %d bytes)", len(first), len(second))
			}
			id, err := Unpack(bytes.NewReader(first), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if want := sha256Hex(first); id != want {
				t.Errorf("Unpack diffID %s, want %s", id, want)
			}

			cp := t.TempDir()
			cpID, err := FromDir(src, cp)
			if err != nil {
				t.Fatalf("FromDir: %v", err)
			}
			if cpID != id {
				t.Errorf("FromDir diffID %s, want %s", cpID, id)
			}
			again := tarBytes(t, cp)
			if !bytes.Equal(first, again) {
				diffArchives(t, first, again)
				t.Errorf("Tar of a FromDir copy differs from Tar of its source; diffIDs %s vs %s",
					id, sha256Hex(again))
			}
		})
	}
}

// diffArchives logs the first entries where two archives disagree.
func diffArchives(t *testing.T, a, b []byte) {
	t.Helper()
	ea, eb := readTar(t, a), readTar(t, b)
	for i := 0; i < len(ea) && i < len(eb); i++ {
		ha, hb := *ea[i].Hdr, *eb[i].Hdr
		if !reflect.DeepEqual(ha, hb) || ea[i].Body != eb[i].Body {
			t.Logf("entry %d differs:\n source %+v\n copy   %+v", i, ha, hb)
		}
	}
	if len(ea) != len(eb) {
		t.Logf("entry count %d vs %d", len(ea), len(eb))
	}
}

// TestTarSkipsSockets: a container's upper dir often holds a leftover
// Unix socket (/run/*.sock, /tmp/.X11-unix). Sockets cannot be archived;
// Docker and containerd skip them with a warning so commit still works.
// Tar should not fail the whole layer because of one.
func TestTarSkipsSockets(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a", 0o644)
	l, err := net.Listen("unix", filepath.Join(src, "daemon.sock"))
	if err != nil {
		t.Skipf("cannot create unix socket: %v", err)
	}
	defer l.Close()

	var buf bytes.Buffer
	if err := Tar(src, &buf); err != nil {
		t.Fatalf("Tar of a tree with a socket: %v", err)
	}
	if names := entryNames(readTar(t, buf.Bytes())); !reflect.DeepEqual(names, []string{"a"}) {
		t.Errorf("entries %q, want only \"a\"", names)
	}
}

// TestTarErrors: a missing source directory is an error, not an empty layer.
func TestTarErrors(t *testing.T) {
	var buf bytes.Buffer
	if err := Tar(filepath.Join(t.TempDir(), "missing"), &buf); err == nil {
		t.Error("Tar of a missing dir succeeded")
	}
	if _, err := FromDir(filepath.Join(t.TempDir(), "missing"), t.TempDir()); err == nil {
		t.Error("FromDir from a missing dir succeeded")
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a", 0o644)
	if _, err := FromDir(src, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FromDir into a missing dir succeeded")
	}
}

// TestTarEmptyDir: an empty tree is a valid layer of just the end marker.
func TestTarEmptyDir(t *testing.T) {
	data := tarBytes(t, t.TempDir())
	if len(readTar(t, data)) != 0 {
		t.Error("empty dir produced entries")
	}
	if len(data) != 1024 {
		t.Errorf("empty layer is %d bytes, want 1024 (two zero blocks)", len(data))
	}
}

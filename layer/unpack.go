package layer

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Unpack extracts the layer archive r into dir and returns its diff ID,
// the sha256 of every byte read, padding included. Every path is resolved
// inside dir through os.Root, so no entry, symlink or hard link in a
// hostile archive can touch a file outside it.
func Unpack(r io.Reader, dir string) (string, error) {
	h := sha256.New()
	tee := io.TeeReader(r, h)
	if err := unpack(tee, dir); err != nil {
		return "", fmt.Errorf("unpack layer: %w", err)
	}
	// The tar reader stops at the end marker; the digest covers the rest.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", fmt.Errorf("unpack layer: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// dirTimes holds directory mtimes to set once every entry is in, since
// later entries change them. A repeated directory's last entry wins; a
// path that is replaced or whited out takes its own times with it.
type dirTimes struct {
	order []string
	mtime map[string]time.Time
}

func (d *dirTimes) set(name string, t time.Time) {
	if _, ok := d.mtime[name]; !ok {
		d.order = append(d.order, name)
	}
	d.mtime[name] = t
}

func (d *dirTimes) forget(p string) {
	for name := range d.mtime {
		if name == p || strings.HasPrefix(name, p+"/") || p == "." {
			delete(d.mtime, name)
		}
	}
}

func unpack(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	dirs := &dirTimes{mtime: map[string]time.Time{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		// A global header names no file: cleaning its name could make it
		// replace one.
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		if sparse(hdr) {
			// archive/tar expands a sparse file's holes into written
			// zeros with no limit: a few KiB of archive could ask for
			// terabytes of disk. Image builders never write sparse tars.
			return fmt.Errorf("%s: sparse files are not supported in layers", hdr.Name)
		}
		if err := entry(root, tr, hdr, name, dirs); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		// A marker (.wh.*) is no directory, whatever its type says.
		if hdr.Typeflag == tar.TypeDir && !strings.HasPrefix(path.Base(name), whPrefix) {
			dirs.set(name, hdr.ModTime)
		}
	}
	for _, name := range dirs.order {
		t, ok := dirs.mtime[name]
		if !ok {
			continue
		}
		if err := at(root, name, func(fd int, base string) error {
			return setTime(fd, base, t)
		}); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func sparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// cleanName turns an archive path into a clean relative path, "" for the
// layer root. A ".." that climbs out is an error, not something to fix up.
func cleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("bad path %q in layer", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("path %q in layer leaves the layer", name)
		}
	}
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	return clean, nil
}

func entry(root *os.Root, tr *tar.Reader, hdr *tar.Header, name string, dirs *dirTimes) error {
	parent, base := path.Split(name)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "."
	}
	if parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	if base == whOpaque {
		d, err := root.Open(parent)
		if err != nil {
			return err
		}
		defer d.Close()
		if err := unix.Fsetxattr(int(d.Fd()), opaqueKey, []byte("y"), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", opaqueKey, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whPrefix) {
		gone := strings.TrimPrefix(base, whPrefix)
		if gone == "" || gone == "." || gone == ".." {
			return fmt.Errorf("bad whiteout")
		}
		target := path.Join(parent, gone)
		if err := root.RemoveAll(target); err != nil {
			return err
		}
		dirs.forget(target)
		return at(root, target, func(fd int, b string) error {
			if err := unix.Mknodat(fd, b, unix.S_IFCHR, 0); err != nil {
				return err
			}
			// The whiteout's time is the archive's, so a layer packed
			// again gives the same diff ID.
			return setTime(fd, b, hdr.ModTime)
		})
	}

	// A new entry replaces what an earlier one left, except that two
	// directories merge.
	if fi, err := root.Lstat(name); err == nil {
		if !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := root.RemoveAll(name); err != nil {
				return err
			}
			dirs.forget(name)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case tar.TypeReg, tar.TypeRegA:
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return err
		}
		if target == "" {
			return fmt.Errorf("hard link to the layer root")
		}
		if err := root.Link(target, name); err != nil {
			return err
		}
		// A hard link shares its target's inode: owner and mode are set.
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		// Device nodes are skipped, all but the 0/0 character device that
		// is overlayfs's whiteout: a container gets a fresh /dev, so a
		// device elsewhere in an image serves nothing but reaching the
		// host's disks or memory (a block 8:0 opens the host's sda), and
		// skipping them also lets an unprivileged bocker unpack any layer.
		// What the entry replaced is gone all the same.
		isWhiteout := hdr.Typeflag == tar.TypeChar && hdr.Devmajor == 0 && hdr.Devminor == 0
		if hdr.Typeflag != tar.TypeFifo && !isWhiteout {
			return nil
		}
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		if err := at(root, name, func(fd int, b string) error {
			return unix.Mknodat(fd, b, kind|0o600, 0)
		}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported entry type %q", strconv.QuoteRune(rune(hdr.Typeflag)))
	}

	return at(root, name, func(fd int, b string) error {
		if err := unix.Fchownat(fd, b, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		for k, v := range hdr.PAXRecords {
			key, ok := strings.CutPrefix(k, paxXattr)
			if !ok || !allowedXattr(key) {
				continue
			}
			if err := setXattrAt(fd, b, key, v); err != nil {
				return err
			}
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// chown clears setuid bits, so the mode goes on after it.
			if err := unix.Fchmodat(fd, b, mode, 0); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			return setTime(fd, b, hdr.ModTime)
		}
		return nil
	})
}

// allowedXattr keeps attributes a layer may carry. trusted.overlay.* would
// let an archive forge redirects and whiteouts in the host's overlay.
func allowedXattr(key string) bool {
	return strings.HasPrefix(key, "user.") || key == "security.capability"
}

// at runs fn with an fd of name's parent directory, opened inside root,
// and name's last element.
func at(root *os.Root, name string, fn func(fd int, base string) error) error {
	parent, base := path.Split(name)
	if parent == "" {
		parent = "."
	}
	if base == "" {
		base = "."
	}
	if name == "." {
		parent, base = ".", "."
	}
	d, err := root.Open(parent)
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), base)
}

func setTime(fd int, base string, t time.Time) error {
	// UnixNano overflows past 2262; seconds and nanoseconds do not.
	ts := unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	if err := unix.UtimesNanoAt(fd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setXattrAt sets an attribute on base in the directory fd without
// following a final symlink; /proc/self/fd gives the *at form the kernel lacks.
func setXattrAt(fd int, base, key, val string) error {
	p := "/proc/self/fd/" + strconv.Itoa(fd) + "/" + base
	if err := unix.Lsetxattr(p, key, []byte(val), 0); err != nil {
		return fmt.Errorf("set xattr %s: %w", key, err)
	}
	return nil
}

// FromDir packs src into a new layer unpacked in dst and returns its diff ID.
func FromDir(src, dst string) (string, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(Tar(src, pw)) }()
	id, err := Unpack(pr, dst)
	pr.CloseWithError(io.ErrClosedPipe)
	return id, err
}

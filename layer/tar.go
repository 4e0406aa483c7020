// Package layer turns directories into layer archives and back. An archive
// is an OCI/Docker image layer: a tar stream whose overlayfs whiteouts are
// written as ".wh." files, so layers move between bocker, registries and
// Docker unchanged.
package layer

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whPrefix  = ".wh."
	whOpaque  = ".wh..wh..opq"
	opaqueKey = "trusted.overlay.opaque"
	paxXattr  = "SCHILY.xattr."
)

// Tar writes dir as a layer archive to w. Entries are in lexical order
// with numeric owners only, so the same tree always gives the same digest.
func Tar(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		// A socket is a live endpoint, not content: docker and tar skip it.
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		// overlayfs records a deletion as a 0/0 character device.
		if fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 {
			dirName, base := filepath.Split(rel)
			return tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeReg, Name: dirName + whPrefix + base,
				Mode: 0o644, ModTime: fi.ModTime().Truncate(time.Second), Format: tar.FormatPAX,
			})
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		hdr.Uname, hdr.Gname = "", ""
		hdr.ModTime = fi.ModTime().Truncate(time.Second)
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := seen[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				seen[key] = rel
			}
		}
		xattrs, opaque, err := readXattrs(p)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		for k, v := range xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[paxXattr+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		if fi.IsDir() && opaque {
			return tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeReg, Name: rel + "/" + whOpaque,
				Mode: 0o644, ModTime: hdr.ModTime, Format: tar.FormatPAX,
			})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return tw.Close()
}

// readXattrs returns the extended attributes of p worth carrying in a
// layer, and whether overlayfs marked p opaque. trusted.* attributes
// belong to the host's overlay mounts and never travel.
func readXattrs(p string) (map[string]string, bool, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err == unix.ERANGE {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("list xattrs: %w", err)
	}
	var out map[string]string
	opaque := false
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val, err := getXattr(p, name)
		if err != nil {
			return nil, false, err
		}
		if name == opaqueKey {
			opaque = val == "y"
			continue
		}
		if strings.HasPrefix(name, "trusted.") {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = val
	}
	return out, opaque, nil
}

func getXattr(p, name string) (string, error) {
	sz, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return "", fmt.Errorf("get xattr %s: %w", name, err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", fmt.Errorf("get xattr %s: %w", name, err)
	}
	return string(buf[:sz]), nil
}

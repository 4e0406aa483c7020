package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Every path inside the container's root is opened with RESOLVE_IN_ROOT:
// a symlink in the image (say /proc -> /) then resolves inside the
// container's root, never on the host, before pivot_root as after it.

func openIn(root int, p string, flags uint64) (int, error) {
	fd, err := unix.Openat2(root, p, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// mkdirAllIn makes p and its parents inside root and returns an O_PATH fd of it.
func mkdirAllIn(root int, p string) (int, error) {
	p = filepath.Clean("/" + p)
	fd, err := openIn(root, p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) || p == "/" {
		return fd, err
	}
	parent, err := mkdirAllIn(root, filepath.Dir(p))
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	if err := unix.Mkdirat(parent, filepath.Base(p), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, &os.PathError{Op: "mkdir", Path: p, Err: err}
	}
	return openIn(root, p, unix.O_PATH|unix.O_DIRECTORY)
}

// createFileIn makes sure p exists inside root as a file (the target of a
// file bind mount) and returns an O_PATH fd of it.
func createFileIn(root int, p string) (int, error) {
	p = filepath.Clean("/" + p)
	if fd, err := openIn(root, p, unix.O_PATH); err == nil {
		return fd, nil
	}
	parent, err := mkdirAllIn(root, filepath.Dir(p))
	if err != nil {
		return -1, err
	}
	unix.Close(parent)
	fd, err := openIn(root, p, unix.O_CREAT|unix.O_WRONLY)
	if err != nil {
		return -1, err
	}
	unix.Close(fd)
	return openIn(root, p, unix.O_PATH)
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"dirsync": {false, unix.MS_DIRSYNC}, "remount": {false, unix.MS_REMOUNT},
	"mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"atime": {true, unix.MS_NOATIME}, "noatime": {false, unix.MS_NOATIME},
	"diratime": {true, unix.MS_NODIRATIME}, "nodiratime": {false, unix.MS_NODIRATIME},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
}

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits OCI mount options into mount(2) flags,
// propagation flags and the file system's own data string.
func parseMountOptions(opts []string) (flags uintptr, prop []uintptr, data string) {
	var d []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			prop = append(prop, p)
			continue
		}
		d = append(d, o)
	}
	return flags, prop, strings.Join(d, ",")
}

// mountIn performs one OCI mount with its destination inside root.
func mountIn(root int, m specs.Mount) error {
	flags, prop, data := parseMountOptions(m.Options)
	typ := m.Type
	if typ == "bind" {
		flags |= unix.MS_BIND
		typ = ""
	}
	var dst int
	var err error
	if flags&unix.MS_BIND != 0 {
		fi, serr := os.Stat(m.Source)
		if serr != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Source, m.Destination, serr)
		}
		if fi.IsDir() {
			dst, err = mkdirAllIn(root, m.Destination)
		} else {
			dst, err = createFileIn(root, m.Destination)
		}
	} else {
		dst, err = mkdirAllIn(root, m.Destination)
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	defer unix.Close(dst)
	target := fdPath(dst)
	first := flags
	if flags&unix.MS_BIND != 0 {
		first = flags & (unix.MS_BIND | unix.MS_REC)
	}
	if err := unix.Mount(m.Source, target, typ, first, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
	}
	// A bind mount ignores most flags until it is remounted; that is how
	// a read-only bind becomes read-only.
	if flags&unix.MS_BIND != 0 && flags&^(unix.MS_BIND|unix.MS_REC) != 0 {
		if err := remountIn(root, m.Destination, flags&^unix.MS_REC); err != nil {
			return err
		}
	}
	if len(prop) == 0 {
		return nil
	}
	// dst still names the directory under the new mount; reopen the
	// path to reach the mount itself.
	mnt, err := openIn(root, m.Destination, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
	}
	defer unix.Close(mnt)
	for _, p := range prop {
		if err := unix.Mount("", fdPath(mnt), "", p, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}

// remountIn re-applies flags to the mount at p, keeping the flags the
// kernel locked on it (nosuid, nodev, noexec) that we must not clear.
func remountIn(root int, p string, flags uintptr) error {
	fd, err := openIn(root, p, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("remount %s: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err == nil {
		flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	}
	if err := unix.Mount("", fdPath(fd), "", flags|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("remount %s: %w", p, err)
	}
	return nil
}

func makeDevice(root int, d specs.LinuxDevice) error {
	parent, err := mkdirAllIn(root, filepath.Dir(d.Path))
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.Path, err)
	}
	defer unix.Close(parent)
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	default:
		return fmt.Errorf("create device %s: unknown type %q", d.Path, d.Type)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	name := filepath.Base(d.Path)
	_ = unix.Unlinkat(parent, name, 0)
	if err := unix.Mknodat(parent, name, typ|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
		return fmt.Errorf("create device %s: %w", d.Path, err)
	}
	// mknod honours the umask; the spec's mode is exact.
	if err := unix.Fchmodat(parent, name, perm, 0); err != nil {
		return fmt.Errorf("chmod device %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(parent, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown device %s: %w", d.Path, err)
	}
	return nil
}

// devSymlinks are the links Docker puts in /dev.
var devSymlinks = [][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}, {"/proc/kcore", "core"},
}

func makeDevSymlinks(root int) error {
	dev, err := mkdirAllIn(root, "/dev")
	if err != nil {
		return fmt.Errorf("open /dev: %w", err)
	}
	defer unix.Close(dev)
	for _, l := range devSymlinks {
		_ = unix.Unlinkat(dev, l[1], 0)
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return fmt.Errorf("link /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// maskPaths runs after pivot_root, so the paths are the container's own.
func maskPaths(paths []string) error {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return fmt.Errorf("mask %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

func readonlyPaths(paths []string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		var st unix.Statfs_t
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		if err := unix.Statfs(p, &st); err == nil {
			flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		}
		if err := unix.Mount("", p, "", flags, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

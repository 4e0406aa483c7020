package container

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// lookupUser resolves "name", "name:group", "uid:group" or "name:gid"
// against the container's own /etc/passwd and /etc/group. It runs after
// pivot_root, so the files are the image's and no link in them can reach
// the host's.
func lookupUser(spec string) (specs.User, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	var u specs.User
	uid, err := strconv.ParseUint(name, 10, 32)
	if err == nil {
		u.UID = uint32(uid)
		// A numeric user that the image also lists gets its group.
		if f, ok := findEntry("/etc/passwd", func(f []string) bool { return f[2] == name }, 4); ok {
			if g, err := strconv.ParseUint(f[3], 10, 32); err == nil {
				u.GID = uint32(g)
			}
		}
	} else {
		f, ok := findEntry("/etc/passwd", func(f []string) bool { return f[0] == name }, 4)
		if !ok {
			return u, fmt.Errorf("user %q: no such user in the image's /etc/passwd", name)
		}
		id, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return u, fmt.Errorf("user %q: bad /etc/passwd entry", name)
		}
		u.UID, u.GID = uint32(id), uint32(gid)
	}
	if hasGroup {
		if g, err := strconv.ParseUint(group, 10, 32); err == nil {
			u.GID = uint32(g)
		} else {
			f, ok := findEntry("/etc/group", func(f []string) bool { return f[0] == group }, 3)
			if !ok {
				return u, fmt.Errorf("group %q: no such group in the image's /etc/group", group)
			}
			g, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				return u, fmt.Errorf("group %q: bad /etc/group entry", group)
			}
			u.GID = uint32(g)
		}
	}
	return u, nil
}

// findEntry returns the first colon-separated line of file with at least
// n fields that match accepts. A missing file matches nothing.
func findEntry(file string, match func([]string) bool, n int) ([]string, bool) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= n && match(fields) {
			return fields, true
		}
	}
	return nil, false
}

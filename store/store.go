// Package store keeps bocker's on-disk state under one root directory:
// image and container records, the content-addressed layers they share,
// and the lock that serialises changes between concurrent bockers.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/uuid"
)

// DefaultRoot is used when BOCKER_ROOT is unset.
const DefaultRoot = "/var/lib/bocker"

// ErrNotFound is returned when no record matches an id or prefix.
var ErrNotFound = errors.New("not found")

// ErrAmbiguous is returned when a prefix matches more than one record.
var ErrAmbiguous = errors.New("ambiguous prefix")

// ImageConfig is the part of an OCI image config that a run honours.
// Field names follow the OCI image spec so records read like image configs.
type ImageConfig struct {
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
	User       string   `json:"User,omitempty"`
	// Created is when the image was built, as its config says; the
	// record's own Created is when it came into this store.
	Created time.Time `json:"Created,omitzero"`
}

// Image is an image record: an ordered list of layers, base first.
type Image struct {
	ID      string      `json:"id"`
	Source  string      `json:"source"`
	Layers  []string    `json:"layers"`
	Config  ImageConfig `json:"config"`
	Created time.Time   `json:"created"`
	// Digest is the manifest digest of a pulled or loaded image.
	Digest string `json:"digest,omitempty"`
}

// Container states as kept in a record.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
)

// Container is a container record. Layers is copied from the image at
// creation so that removing the image never breaks the container.
type Container struct {
	ID        string      `json:"id"`
	Image     string      `json:"image"`
	Source    string      `json:"source"`
	Command   string      `json:"command"`
	Layers    []string    `json:"layers"`
	Config    ImageConfig `json:"config"`
	Env       []string    `json:"env"`
	Cwd       string      `json:"cwd"`
	State     string      `json:"state"`
	Pid       int         `json:"pid,omitempty"`
	StartTime uint64      `json:"start_time,omitempty"`
	ExitCode  int         `json:"exit_code"`
	Cgroup    string      `json:"cgroup"`
	Created   time.Time   `json:"created"`
	Started   time.Time   `json:"started,omitzero"`
	Finished  time.Time   `json:"finished,omitzero"`

	Name       string   `json:"name,omitempty"`
	OOMKilled  bool     `json:"oom_killed,omitempty"`
	Detached   bool     `json:"detached,omitempty"`
	AutoRemove bool     `json:"auto_remove,omitempty"`
	Network    string   `json:"network,omitempty"`
	IP         string   `json:"ip,omitempty"`
	Ports      []string `json:"ports,omitempty"`
	// MonitorPid is the bocker process that waits for the container: the
	// foreground run or a detached container's monitor.
	MonitorPid int `json:"monitor_pid,omitempty"`
}

// Store is an opened BOCKER_ROOT.
type Store struct {
	Root string
	lock *flock.Flock
}

// Open creates the root's layout when missing and returns the store.
func Open(root string) (*Store, error) {
	if root == "" {
		root = DefaultRoot
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolve store root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create store root %s: %w", abs, err)
	}
	// The root holds container filesystems and logs: nobody but root reads them.
	if err := os.Chmod(abs, 0o700); err != nil {
		return nil, fmt.Errorf("chmod store root %s: %w", abs, err)
	}
	for _, d := range []string{"images", "containers", "layers", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("create store dir %s: %w", d, err)
		}
	}
	return &Store{Root: abs, lock: flock.New(filepath.Join(abs, "lock"))}, nil
}

// Lock takes the store-wide exclusive lock. Changes to records and layers
// happen under it; long work (extraction, running) happens outside it.
func (s *Store) Lock() (unlock func(), err error) {
	if err := s.lock.Lock(); err != nil {
		return nil, fmt.Errorf("lock store %s: %w", s.Root, err)
	}
	return func() { _ = s.lock.Unlock() }, nil
}

// NewID returns prefix followed by 32 random hex digits.
func NewID(prefix string) string {
	return prefix + strings.ReplaceAll(uuid.NewString(), "-", "")
}

// ValidName reports whether s can name a record: no path separators, no
// dot-only names, nothing a shell or a path join could misread.
func ValidName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 128 {
		return false
	}
	for _, r := range s {
		ok := r == '_' || r == '-' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// LayerDir is where the layer with the given diff ID lives.
func (s *Store) LayerDir(diffID string) string {
	return filepath.Join(s.Root, "layers", LayerName(diffID))
}

// LayerName is the directory name of a layer relative to Root/layers.
func LayerName(diffID string) string {
	return strings.TrimPrefix(diffID, "sha256:")
}

// HasLayer reports whether the layer is already stored.
func (s *Store) HasLayer(diffID string) bool {
	_, err := os.Stat(s.LayerDir(diffID))
	return err == nil
}

// TempDir makes a scratch directory inside the store, on the same file
// system as the layers so that a finished layer is renamed, not copied.
// Its name carries our pid so GC can tell abandoned ones from live ones.
func (s *Store) TempDir() (string, error) {
	d, err := os.MkdirTemp(filepath.Join(s.Root, "tmp"), strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("create temp dir: %w", err)
	}
	return d, nil
}

// CommitLayer moves a finished, verified layer directory into place.
// The caller holds the lock. If the layer already exists the new copy is
// dropped: content addressing makes them equal.
func (s *Store) CommitLayer(tmp, diffID string) error {
	dst := s.LayerDir(diffID)
	if s.HasLayer(diffID) {
		return os.RemoveAll(tmp)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("store layer %s: %w", diffID, err)
	}
	return syncDir(filepath.Dir(dst))
}

func (s *Store) imagePath(id string) string {
	return filepath.Join(s.Root, "images", id+".json")
}

// ContainerDir is the directory of a container: record, log, upper, work.
func (s *Store) ContainerDir(id string) string {
	return filepath.Join(s.Root, "containers", id)
}

// PutImage writes an image record atomically. The caller holds the lock.
func (s *Store) PutImage(img *Image) error {
	return writeJSON(s.imagePath(img.ID), img)
}

// GetImage reads an image by exact id.
func (s *Store) GetImage(id string) (*Image, error) {
	var img Image
	if err := readJSON(s.imagePath(id), &img); err != nil {
		return nil, err
	}
	return &img, nil
}

// DeleteImage removes an image record. Layers go with the next GC.
func (s *Store) DeleteImage(id string) error {
	if err := os.Remove(s.imagePath(id)); err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	return nil
}

// Images lists image records sorted by creation time.
func (s *Store) Images() ([]*Image, error) {
	ids, err := s.list("images", ".json")
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, id := range ids {
		img, err := s.GetImage(id)
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, img)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// PutContainer writes a container record atomically but without fsync:
// the rename keeps a reader (and a crash of bocker) from ever seeing a
// torn record, and after a power loss no container is running anyway,
// while the syncs cost a run several milliseconds on slow disks.
func (s *Store) PutContainer(c *Container) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", c.ID, err)
	}
	return ReplaceFile(filepath.Join(s.ContainerDir(c.ID), "record.json"), append(data, '\n'), 0o600)
}

// GetContainer reads a container by exact id.
func (s *Store) GetContainer(id string) (*Container, error) {
	var c Container
	if err := readJSON(filepath.Join(s.ContainerDir(id), "record.json"), &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Containers lists container records sorted by creation time.
func (s *Store) Containers() ([]*Container, error) {
	ids, err := s.list("containers", "")
	if err != nil {
		return nil, err
	}
	var out []*Container
	for _, id := range ids {
		c, err := s.GetContainer(id)
		if err != nil {
			continue // half-created or being removed
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// DeleteContainer removes a container's directory. The record goes first,
// so a crash halfway leaves a directory GC removes, never a record that
// points at missing files.
func (s *Store) DeleteContainer(id string) error {
	dir := s.ContainerDir(id)
	if c, err := s.GetContainer(id); err == nil && c.Name != "" {
		s.ReleaseName(c.Name, id)
	}
	if err := os.Remove(filepath.Join(dir, "record.json")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove container record %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

func (s *Store) list(sub, suffix string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Root, sub))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", sub, err)
	}
	var ids []string
	for _, e := range ents {
		name := e.Name()
		if suffix != "" {
			if !strings.HasSuffix(name, suffix) {
				continue
			}
			name = strings.TrimSuffix(name, suffix)
		}
		if strings.HasPrefix(name, ".") {
			continue
		}
		ids = append(ids, name)
	}
	return ids, nil
}

// ResolveImage maps an id or unique prefix to an image id.
func (s *Store) ResolveImage(ref string) (string, error) {
	ids, err := s.list("images", ".json")
	if err != nil {
		return "", err
	}
	return resolve(ref, ids)
}

// ClaimName reserves name for container id; it fails when the name is
// taken. The caller holds the lock.
func (s *Store) ClaimName(name, id string) error {
	if !ValidName(name) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("invalid container name %q: use letters, digits, '_', '-' and '.'", name)
	}
	dir := filepath.Join(s.Root, "names")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create names dir: %w", err)
	}
	p := filepath.Join(dir, name)
	if b, err := os.ReadFile(p); err == nil {
		// A name whose container is gone (a crash between claim and
		// record) is free again.
		if _, err := os.Stat(filepath.Join(s.ContainerDir(string(b)), "record.json")); err == nil {
			return fmt.Errorf("container name %q is already in use by %s", name, b)
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("free stale name %s: %w", name, err)
		}
	}
	if err := WriteFileAtomic(p, []byte(id), 0o600); err != nil {
		return fmt.Errorf("claim name %s: %w", name, err)
	}
	return nil
}

// ReleaseName frees name if it still belongs to id.
func (s *Store) ReleaseName(name, id string) {
	p := filepath.Join(s.Root, "names", name)
	if b, err := os.ReadFile(p); err == nil && string(b) == id {
		_ = os.Remove(p)
	}
}

// ResolveContainer maps a name, an id or a unique id prefix to a
// container id. Names match exactly and win over prefixes, as in Docker.
func (s *Store) ResolveContainer(ref string) (string, error) {
	if ValidName(ref) && !strings.HasPrefix(ref, ".") {
		if b, err := os.ReadFile(filepath.Join(s.Root, "names", ref)); err == nil {
			id := string(b)
			if _, err := os.Stat(filepath.Join(s.ContainerDir(id), "record.json")); err == nil {
				return id, nil
			}
		}
	}
	ids, err := s.list("containers", "")
	if err != nil {
		return "", err
	}
	var live []string
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(s.ContainerDir(id), "record.json")); err == nil {
			live = append(live, id)
		}
	}
	return resolve(ref, live)
}

func resolve(ref string, ids []string) (string, error) {
	if !ValidName(ref) {
		return "", ErrNotFound
	}
	var match []string
	for _, id := range ids {
		if id == ref {
			return id, nil
		}
		if strings.HasPrefix(id, ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return "", ErrNotFound
	case 1:
		return match[0], nil
	}
	return "", ErrAmbiguous
}

// GC removes layers no image or container references and scratch
// directories whose creator is gone. The caller holds the lock.
func (s *Store) GC() error {
	used := map[string]bool{}
	imgs, err := s.Images()
	if err != nil {
		return err
	}
	for _, img := range imgs {
		for _, l := range img.Layers {
			used[LayerName(l)] = true
		}
	}
	ctrs, err := s.Containers()
	if err != nil {
		return err
	}
	for _, c := range ctrs {
		for _, l := range c.Layers {
			used[LayerName(l)] = true
		}
	}
	layers, err := s.list("layers", "")
	if err != nil {
		return err
	}
	for _, l := range layers {
		if !used[l] {
			if err := os.RemoveAll(filepath.Join(s.Root, "layers", l)); err != nil {
				return fmt.Errorf("remove layer %s: %w", l, err)
			}
		}
	}
	s.gcLayerNotes()
	return s.GCTemp()
}

// GCTemp removes scratch directories whose creator is gone. It needs no
// lock: a live creator's directories are never touched.
func (s *Store) GCTemp() error {
	tmps, err := s.list("tmp", "")
	if err != nil {
		return err
	}
	for _, t := range tmps {
		pid, err := strconv.Atoi(strings.SplitN(t, "-", 2)[0])
		if err == nil && processExists(pid) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(s.Root, "tmp", t))
	}
	return nil
}

func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// writeJSON replaces path atomically: a reader sees the old or the new
// record, never a torn one, even across a crash.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(data, '\n'), 0o600)
}

// WriteFileAtomic writes data to a temp file beside path, syncs it and
// renames it over path: for what must survive a power loss (images).
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return replaceFile(path, data, mode, true)
}

// ReplaceFile is WriteFileAtomic without the syncs: atomic for readers
// and across a crash of the writer, for state that a reboot ends anyway.
func ReplaceFile(path string, data []byte, mode os.FileMode) error {
	return replaceFile(path, data, mode, false)
}

func replaceFile(path string, data []byte, mode os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	ok = true
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return ErrNotFound
		}
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

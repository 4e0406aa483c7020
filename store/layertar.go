package store

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A layer pulled from a registry is stored by the diff ID of the tar it
// came in, but bocker can only give back its own tar of the directory
// (layer.Tar), whose digest differs. The first save or push records that
// digest and the tar's size next to the layer (.tar-<diffid>), and an
// alias from it to the layer (.alias-<tar digest>), so that loading or
// pulling back what bocker wrote finds the layer it already has instead
// of storing a second copy. Both are dot files: list skips them, GC
// removes them with their layer.

func (s *Store) tarInfoPath(diffID string) string {
	return filepath.Join(s.Root, "layers", ".tar-"+LayerName(diffID))
}

func (s *Store) aliasPath(digest string) string {
	return filepath.Join(s.Root, "layers", ".alias-"+LayerName(digest))
}

// LayerTar returns the digest and size of layer.Tar of a stored layer,
// as recorded by SetLayerTar.
func (s *Store) LayerTar(diffID string) (digest string, size int64, ok bool) {
	b, err := os.ReadFile(s.tarInfoPath(diffID))
	if err != nil {
		return "", 0, false
	}
	d, n, found := strings.Cut(strings.TrimSpace(string(b)), " ")
	size, err = strconv.ParseInt(n, 10, 64)
	if !found || err != nil || !strings.HasPrefix(d, "sha256:") {
		return "", 0, false
	}
	return d, size, true
}

// SetLayerTar records the digest and size of layer.Tar of a stored layer.
func (s *Store) SetLayerTar(diffID, digest string, size int64) error {
	if err := WriteFileAtomic(s.tarInfoPath(diffID), fmt.Appendf(nil, "%s %d\n", digest, size), 0o600); err != nil {
		return fmt.Errorf("record tar of layer %s: %w", diffID, err)
	}
	if digest == diffID {
		return nil
	}
	if err := WriteFileAtomic(s.aliasPath(digest), []byte(diffID+"\n"), 0o600); err != nil {
		return fmt.Errorf("record alias of layer %s: %w", diffID, err)
	}
	return nil
}

// FindLayer returns the stored layer whose content has diff ID diffID:
// the layer of that name, or the one it is an alias of.
func (s *Store) FindLayer(diffID string) (string, bool) {
	if s.HasLayer(diffID) {
		return diffID, true
	}
	b, err := os.ReadFile(s.aliasPath(diffID))
	if err != nil {
		return "", false
	}
	target := strings.TrimSpace(string(b))
	if !strings.HasPrefix(target, "sha256:") || !s.HasLayer(target) {
		return "", false
	}
	return target, true
}

// LayerSize is the bytes of file content in a stored layer, what
// images --format json adds up; counted once, then kept beside it.
func (s *Store) LayerSize(diffID string) (int64, error) {
	p := filepath.Join(s.Root, "layers", ".size-"+LayerName(diffID))
	if b, err := os.ReadFile(p); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return n, nil
		}
	}
	var n int64
	err := filepath.WalkDir(s.LayerDir(diffID), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of layer %s: %w", diffID, err)
	}
	// A lost race with GC leaves a note that the next GC removes.
	_ = WriteFileAtomic(p, fmt.Appendf(nil, "%d\n", n), 0o600)
	return n, nil
}

// gcLayerNotes removes tar records, sizes and aliases of layers that are gone.
func (s *Store) gcLayerNotes() {
	ents, err := os.ReadDir(filepath.Join(s.Root, "layers"))
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(s.Root, "layers", e.Name())
		switch {
		case strings.HasPrefix(e.Name(), ".tar-"), strings.HasPrefix(e.Name(), ".size-"):
			_, id, _ := strings.Cut(e.Name(), "-")
			if !s.HasLayer(id) {
				_ = os.Remove(p)
			}
		case strings.HasPrefix(e.Name(), ".alias-"):
			if _, ok := s.FindLayer("sha256:" + strings.TrimPrefix(e.Name(), ".alias-")); !ok {
				_ = os.Remove(p)
			}
		}
	}
}

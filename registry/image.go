package registry

import (
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"

	"github.com/bocker/bocker/layer"
	"github.com/bocker/bocker/store"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// dirLayer is a stored layer as an uncompressed layer: layer.Tar of its
// directory, made again on every read. Tar is deterministic, so every
// read gives the bytes whose digest and size were recorded.
type dirLayer struct {
	dir    string
	diffID v1.Hash
	size   int64
	mt     types.MediaType
}

func (l *dirLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *dirLayer) Digest() (v1.Hash, error)            { return l.diffID, nil }
func (l *dirLayer) Size() (int64, error)                { return l.size, nil }
func (l *dirLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *dirLayer) Compressed() (io.ReadCloser, error)  { return l.Uncompressed() }

func (l *dirLayer) Uncompressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(layer.Tar(l.dir, pw)) }()
	return pr, nil
}

// gzipCore is the same layer for a registry: partial gzips it on the
// way out, since registries and their clients expect compressed layers.
// It has only the uncompressed methods, or partial would take it as a
// finished layer.
type gzipCore struct{ l *dirLayer }

func (g gzipCore) DiffID() (v1.Hash, error)             { return g.l.diffID, nil }
func (g gzipCore) Uncompressed() (io.ReadCloser, error) { return g.l.Uncompressed() }
func (g gzipCore) MediaType() (types.MediaType, error)  { return types.DockerLayer, nil }

// tarOf returns the digest and size of layer.Tar of a stored layer,
// computed once and then kept in the store.
func tarOf(st *store.Store, diffID string) (v1.Hash, int64, error) {
	if d, n, ok := st.LayerTar(diffID); ok {
		h, err := v1.NewHash(d)
		return h, n, err
	}
	h := sha256.New()
	cw := &countWriter{w: h}
	if err := layer.Tar(st.LayerDir(diffID), cw); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("read layer %s: %w", short(diffID), err)
	}
	d := digestOf(h)
	if err := st.SetLayerTar(diffID, d, cw.n); err != nil {
		return v1.Hash{}, 0, err
	}
	hash, err := v1.NewHash(d)
	return hash, cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Image is a stored image as a go-containerregistry image, for save and
// push: its layers are tarred from their directories (uncompressed, or
// gzipped when compress is set) and its config carries the record's
// Env, Entrypoint, Cmd, WorkingDir and User.
func Image(st *store.Store, rec *store.Image, compress bool) (v1.Image, error) {
	created := rec.Config.Created
	if created.IsZero() {
		created = rec.Created // made here: by init or commit
	}
	cf := &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			Env: rec.Config.Env, Entrypoint: rec.Config.Entrypoint, Cmd: rec.Config.Cmd,
			WorkingDir: rec.Config.WorkingDir, User: rec.Config.User,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cf)
	if err != nil {
		return nil, fmt.Errorf("image config of %s: %w", rec.ID, err)
	}
	adds := make([]mutate.Addendum, 0, len(rec.Layers))
	for _, d := range rec.Layers {
		if !st.HasLayer(d) {
			return nil, fmt.Errorf("image %s: layer %s is missing from the store", rec.ID, short(d))
		}
		h, size, err := tarOf(st, d)
		if err != nil {
			return nil, err
		}
		dl := &dirLayer{dir: st.LayerDir(d), diffID: h, size: size, mt: types.DockerUncompressedLayer}
		var l v1.Layer = dl
		if compress {
			if l, err = partial.UncompressedToLayer(gzipCore{dl}); err != nil {
				return nil, fmt.Errorf("layer %s: %w", short(d), err)
			}
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "bocker"}})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", rec.ID, err)
	}
	return img, nil
}

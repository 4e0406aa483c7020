package registry

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/bocker/bocker/store"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ErrNotArchive is a file that is neither a docker save archive nor an
// OCI layout (directory or tar).
var ErrNotArchive = errors.New("not a docker-archive or OCI layout")

const refNameAnnotation = "org.opencontainers.image.ref.name"

// Load stores the image in an archive: a docker save tar (manifest.json),
// an OCI layout tar or an OCI layout directory. Layers go through Store,
// so each is checked against the config's diff IDs and one the store has
// already is not extracted again.
func Load(ctx context.Context, st *store.Store, path string, o Options) (*store.Image, error) {
	return load(ctx, st, path, path, o)
}

// load reads the archive at path, called shown in messages.
func load(ctx context.Context, st *store.Store, path, shown string, o Options) (*store.Image, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if fi.IsDir() {
		return loadLayout(ctx, st, path, filepath.Base(path), o)
	}
	kind, err := archiveKind(path, shown)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "docker":
		return loadDocker(ctx, st, path, shown, o)
	case "oci":
		tmp, err := st.TempDir()
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := untarLayout(path, shown, tmp); err != nil {
			return nil, err
		}
		return loadLayout(ctx, st, tmp, filepath.Base(shown), o)
	}
	return nil, fmt.Errorf("load %s: %w", shown, ErrNotArchive)
}

// LoadReader is Load for a stream (stdin): the archives need random
// access, so it is copied into the store's scratch space first.
func LoadReader(ctx context.Context, st *store.Store, r io.Reader, o Options) (*store.Image, error) {
	tmp, err := st.TempDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "archive.tar")
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	_, err = io.Copy(f, ctxReader{ctx, r})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("load: read archive: %w", err)
	}
	return load(ctx, st, p, "stdin", o)
}

// archiveKind looks at the member names: docker save writes
// manifest.json (recent Docker writes an OCI layout beside it, and the
// docker form is the one every loader reads), an OCI layout oci-layout.
func archiveKind(path, shown string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	kind := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("load %s: %w: %w", shown, ErrNotArchive, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "manifest.json":
			return "docker", nil
		case "oci-layout":
			kind = "oci"
		}
	}
	if kind == "" {
		return "", fmt.Errorf("load %s: %w", shown, ErrNotArchive)
	}
	return kind, nil
}

func loadDocker(ctx context.Context, st *store.Store, path, shown string, o Options) (*store.Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("load %s: manifest.json: %w", shown, err)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("load %s: the archive holds %d images; bocker loads one", shown, len(m))
	}
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", shown, err)
	}
	source := filepath.Base(shown)
	if len(m[0].RepoTags) > 0 {
		source = m[0].RepoTags[0]
	}
	o.Uncompressed = true
	return Store(ctx, st, img, source, o)
}

var layoutMember = regexp.MustCompile(`^(oci-layout|index\.json|blobs/sha256/[0-9a-f]{64})$`)

// untarLayout unpacks the parts of an OCI layout tar that make a layout,
// by name only: anything else in the archive is ignored, so no name in it
// reaches the file system.
func untarLayout(path, shown, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o700); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load %s: %w", shown, err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg || !layoutMember.MatchString(n) {
			continue
		}
		out, err := os.OpenFile(filepath.Join(dir, filepath.FromSlash(n)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("load %s: %s: %w", shown, n, err)
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("load %s: %s: %w", shown, n, err)
		}
	}
}

// loadLayout stores the image of an OCI layout; an index in it resolves
// to this host's platform. Layout blobs carry digests, so layers are
// read compressed and checked against both digests, as a pull does.
func loadLayout(ctx context.Context, st *store.Store, dir, fallback string, o Options) (*store.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w: %w", fallback, ErrNotArchive, err)
	}
	img, desc, err := pickImage(idx, 0)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", fallback, err)
	}
	source := fallback
	if r := desc.Annotations[refNameAnnotation]; r != "" {
		source = r
	}
	o.Digest = desc.Digest.String()
	return Store(ctx, st, img, source, o)
}

// pickImage finds the image for this host in an index: the first image,
// or in a nested index the one for linux and this architecture.
func pickImage(idx v1.ImageIndex, depth int) (v1.Image, v1.Descriptor, error) {
	if depth > 4 {
		return nil, v1.Descriptor{}, errors.New("indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, d := range im.Manifests {
		if d.Platform != nil && !d.Platform.Satisfies(want) {
			continue
		}
		switch {
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			return img, d, err
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, v1.Descriptor{}, err
			}
			img, cd, err := pickImage(child, depth+1)
			if err == nil && cd.Annotations[refNameAnnotation] == "" && d.Annotations[refNameAnnotation] != "" {
				cd.Annotations = map[string]string{refNameAnnotation: d.Annotations[refNameAnnotation]}
			}
			return img, cd, err
		}
	}
	return nil, v1.Descriptor{}, fmt.Errorf("no image for linux/%s in the layout", runtime.GOARCH)
}

// Save writes a stored image to w as a docker save archive, the form
// docker, podman and skopeo all load. It is tagged with its source when
// that is a reference, else bocker/<id>.
func Save(st *store.Store, rec *store.Image, w io.Writer) error {
	img, err := Image(st, rec, false)
	if err != nil {
		return err
	}
	var ref name.Reference
	if t, err := name.NewTag(rec.Source); err == nil && !strings.HasPrefix(rec.Source, "/") {
		ref = t
	} else if t, err := name.NewTag("bocker/" + strings.ToLower(rec.ID)); err == nil {
		ref = t
	} else {
		d, err := img.Digest()
		if err != nil {
			return fmt.Errorf("save %s: %w", rec.ID, err)
		}
		if ref, err = name.NewDigest("bocker@" + d.String()); err != nil {
			return fmt.Errorf("save %s: %w", rec.ID, err)
		}
	}
	if err := tarball.Write(ref, img, w); err != nil {
		return fmt.Errorf("save %s: %w", rec.ID, err)
	}
	return nil
}

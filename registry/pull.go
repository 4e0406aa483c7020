// Package registry moves images between the store and OCI registries
// through go-containerregistry: it owns references, the transport rules,
// verification and progress. It depends on store and layer, never the
// other way.
package registry

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/bocker/bocker/layer"
	"github.com/bocker/bocker/store"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// ErrNotFound is a name, tag or digest the registry does not have.
var ErrNotFound = errors.New("image not found")

// Options tune a pull; the zero value is what bocker pull uses.
type Options struct {
	// Progress gets a line or a bar per layer; nil for none.
	Progress io.Writer
	// Idle is how long a download may send nothing (default 30 s).
	Idle time.Duration
	// Jobs is how many layers download at once (default 4).
	Jobs int
	// Uncompressed reads layers through Uncompressed and checks them
	// against the config's diff IDs only: for archives, whose layers
	// have no digest of their own to check, and where asking for one
	// would compress every layer just to hash it.
	Uncompressed bool
	// Digest is recorded as the image's digest instead of img.Digest(),
	// which for an archive may mean compressing every layer.
	Digest string
}

// insecureHosts are the registries plain http may reach: loopback always,
// plus BOCKER_INSECURE_REGISTRIES (comma or space separated host[:port]).
func insecureHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	// An address, not a prefix: 127.0.0.1.example.com is a public name.
	if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
		return true
	}
	for _, s := range strings.FieldsFunc(os.Getenv("BOCKER_INSECURE_REGISTRIES"), func(r rune) bool { return r == ',' || r == ' ' }) {
		if s == host || s == h {
			return true
		}
	}
	return false
}

// ParseReference reads busybox, busybox:1.36, alpine@sha256:…,
// ghcr.io/o/r:t or 127.0.0.1:5000/x:y; Docker Hub and :latest by default.
func ParseReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		// StrictValidation refuses a missing tag; the default fills it in.
		if ref, err = name.ParseReference(s); err != nil {
			return nil, fmt.Errorf("invalid reference %q: %w", s, err)
		}
	}
	if reg := ref.Context().RegistryStr(); insecureHost(reg) && !strings.HasPrefix(reg, "localhost") && !strings.HasPrefix(reg, "127.") {
		return name.ParseReference(s, name.Insecure)
	}
	return ref, nil
}

func remoteOptions(ctx context.Context, o Options) []remote.Option {
	idle := o.Idle
	if idle == 0 {
		idle = 30 * time.Second
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(newTransport(idle, insecureHost)),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithUserAgent("bocker"),
		// A refused or broken registry should fail fast, not back off.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}
}

// notFound tells a missing repository, tag or digest from other failures.
func notFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, "NOT_FOUND":
				return true
			}
		}
	}
	return strings.Contains(fmt.Sprint(err), "no child with platform")
}

// Pull fetches ref into the store as a new image and returns it. Layers
// already stored (by diff ID) are not downloaded again; a layer becomes
// visible only once complete and verified, and the image record is
// written last, so a pull killed at any point leaves nothing but scratch
// directories that the store's GC removes.
func Pull(ctx context.Context, st *store.Store, refStr string, o Options) (*store.Image, error) {
	ref, err := ParseReference(refStr)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, remoteOptions(ctx, o)...)
	if err != nil {
		if notFound(err) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("pull %s: %w", refStr, err)
	}
	return Store(ctx, st, img, refStr, o)
}

// Store puts a go-containerregistry image (from a registry or an archive)
// into the store under source. An image already stored under the same
// source and digest, with the same layers, is returned as it is: pulling
// what is here changes nothing.
func Store(ctx context.Context, st *store.Store, img v1.Image, source string, o Options) (*store.Image, error) {
	// Scratch directories of pulls that were killed go first, so a
	// host that pulls often does not fill up with them.
	if err := st.GCTemp(); err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read image config of %s: %w", source, err)
	}
	digest := o.Digest
	if digest == "" && !o.Uncompressed {
		d, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("digest of %s: %w", source, err)
		}
		digest = d.String()
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("layers of %s: %w", source, err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff IDs in its config", source, len(layers), len(cfg.RootFS.DiffIDs))
	}
	prog := newProgress(o.Progress)
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	diffIDs := make([]string, len(layers))
	fetching := map[string]bool{}
	for i, l := range layers {
		diffIDs[i] = cfg.RootFS.DiffIDs[i].String()
		if have, ok := st.FindLayer(diffIDs[i]); ok {
			prog.present(diffIDs[i])
			diffIDs[i] = have
			continue
		}
		// An image may hold one layer twice: fetch it once.
		if fetching[diffIDs[i]] {
			continue
		}
		fetching[diffIDs[i]] = true
		i, l := i, l
		g.Go(func() error { return fetchLayer(gctx, st, l, diffIDs[i], prog, o.Uncompressed) })
	}
	err = g.Wait()
	prog.wait()
	if err != nil {
		return nil, err
	}
	unlock, err := st.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A concurrent rm of another image may have collected a layer we
	// found present: check again under the lock.
	for _, d := range diffIDs {
		if !st.HasLayer(d) {
			return nil, fmt.Errorf("layer %s vanished during the pull; pull again", short(d))
		}
	}
	conf := store.ImageConfig{
		Env: cfg.Config.Env, Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd,
		WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User,
		Created: cfg.Created.Time.UTC(),
	}
	if digest != "" {
		imgs, err := st.Images()
		if err != nil {
			return nil, err
		}
		for _, old := range imgs {
			if old.Source == source && old.Digest == digest && slices.Equal(old.Layers, diffIDs) && reflect.DeepEqual(old.Config, conf) {
				return old, nil
			}
		}
	}
	rec := &store.Image{
		ID: store.NewID("img_"), Source: source, Layers: diffIDs, Created: time.Now().UTC(),
		Digest: digest, Config: conf,
	}
	if err := st.PutImage(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// fetchLayer streams one layer: compressed bytes hashed against the
// manifest's digest, decompressed and extracted as they arrive, the
// extracted stream hashed against the config's diff ID.
func fetchLayer(ctx context.Context, st *store.Store, l v1.Layer, diffID string, prog *progress, uncompressed bool) error {
	tmp, err := st.TempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create layer dir: %w", err)
	}
	if uncompressed {
		return unpackUncompressed(ctx, st, l, dir, diffID, prog)
	}
	want, err := l.Digest()
	if err != nil {
		return fmt.Errorf("layer digest: %w", err)
	}
	size, _ := l.Size()
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("fetch layer %s: %w", short(want.String()), err)
	}
	defer rc.Close()
	h := sha256.New()
	counted := prog.track(want.String(), size, io.TeeReader(ctxReader{ctx, rc}, h))
	br := bufio.NewReaderSize(counted, 64<<10)
	plain, closeFn, err := decompress(br)
	if err != nil {
		prog.fail(want.String())
		return fmt.Errorf("layer %s: %w", short(want.String()), err)
	}
	got, err := layer.Unpack(plain, dir)
	closeFn()
	if err == nil {
		// The decompressor may stop before the compressed stream ends.
		_, err = io.Copy(io.Discard, br)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("download cut short: %w", err)
	}
	if err != nil {
		prog.fail(want.String())
		return fmt.Errorf("layer %s: %w", short(want.String()), err)
	}
	if d := digestOf(h); d != want.String() {
		prog.fail(want.String())
		return fmt.Errorf("layer %s: downloaded blob has digest %s: refused", short(want.String()), d)
	}
	if got != diffID {
		prog.fail(want.String())
		return fmt.Errorf("layer %s: content has diff ID %s, the config says %s: refused", short(want.String()), got, diffID)
	}
	return commit(st, dir, diffID, want.String(), prog)
}

// unpackUncompressed extracts a layer of an archive, whose one check is
// that its content has the config's diff ID.
func unpackUncompressed(ctx context.Context, st *store.Store, l v1.Layer, dir, diffID string, prog *progress) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("read layer %s: %w", short(diffID), err)
	}
	defer rc.Close()
	got, err := layer.Unpack(prog.track(diffID, 0, ctxReader{ctx, rc}), dir)
	if err != nil {
		prog.fail(diffID)
		return fmt.Errorf("layer %s: %w", short(diffID), err)
	}
	if got != diffID {
		prog.fail(diffID)
		return fmt.Errorf("layer %s: content has diff ID %s: refused", short(diffID), got)
	}
	return commit(st, dir, diffID, diffID, prog)
}

func commit(st *store.Store, dir, diffID, label string, prog *progress) error {
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := st.CommitLayer(dir, diffID); err != nil {
		return err
	}
	prog.done(label)
	return nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// decompress picks gzip, zstd or none from the stream's magic number, as
// media types lie often enough that runtimes look at the bytes.
func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gunzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bocker/bocker/layer"
	"github.com/bocker/bocker/store"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// newStore is a store holding one image of two layers made from trees.
func newStore(t *testing.T) (*store.Store, *store.Image) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, files := range []map[string]string{
		{"bin/tool": "#!/bin/sh\necho tool\n", "etc/motd": "hello\n"},
		{"etc/motd": "changed\n", "data/big": strings.Repeat("0123456789", 10000)},
	} {
		src := t.TempDir()
		for name, body := range files {
			p := filepath.Join(src, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if i == 0 {
			os.Symlink("tool", filepath.Join(src, "bin", "link"))
		}
		tmp, err := st.TempDir()
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(tmp, "layer")
		os.Mkdir(dir, 0o755)
		id, err := layer.FromDir(src, dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CommitLayer(dir, id); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(tmp)
		ids = append(ids, id)
	}
	rec := &store.Image{
		ID: store.NewID("img_"), Source: "/srv/rootfs", Layers: ids, Created: time.Unix(1700000000, 0).UTC(),
		Config: store.ImageConfig{Env: []string{"A=1"}, Entrypoint: []string{"/bin/tool"}, Cmd: []string{"x"}, WorkingDir: "/data", User: "1:2"},
	}
	if err := st.PutImage(rec); err != nil {
		t.Fatal(err)
	}
	return st, rec
}

// treeDigest is the digest of layer.Tar of every layer of rec: equal for
// two stores when their images hold the same files.
func treeDigests(t *testing.T, st *store.Store, rec *store.Image) []string {
	t.Helper()
	var out []string
	for _, l := range rec.Layers {
		h := sha256.New()
		if err := layer.Tar(st.LayerDir(l), h); err != nil {
			t.Fatal(err)
		}
		out = append(out, hex.EncodeToString(h.Sum(nil)))
	}
	return out
}

func TestImageView(t *testing.T) {
	st, rec := newStore(t)
	for _, compress := range []bool{false, true} {
		img, err := Image(st, rec, compress)
		if err != nil {
			t.Fatal(err)
		}
		if compress {
			// validate reads every layer and checks digests, sizes,
			// diff IDs and the manifest against each other; it takes
			// every layer blob for gzip.
			if err := validate.Image(img); err != nil {
				t.Fatalf("compress %v: %v", compress, err)
			}
		} else {
			ls, _ := img.Layers()
			for _, l := range ls {
				rc, _ := l.Compressed()
				b, _ := io.ReadAll(rc)
				rc.Close()
				d, _ := l.Digest()
				size, _ := l.Size()
				sum := sha256.Sum256(b)
				if d.Hex != hex.EncodeToString(sum[:]) || size != int64(len(b)) {
					t.Errorf("uncompressed layer %s: %d bytes with digest %x, says %d", d, len(b), sum, size)
				}
			}
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if !reflect.DeepEqual(c.Env, rec.Config.Env) || !reflect.DeepEqual(c.Entrypoint, rec.Config.Entrypoint) ||
			!reflect.DeepEqual(c.Cmd, rec.Config.Cmd) || c.WorkingDir != "/data" || c.User != "1:2" || cf.OS != "linux" {
			t.Errorf("config %+v", cf)
		}
		// Layers made by FromDir are bocker's own tars: their digests are
		// the stored diff IDs, so no alias is needed.
		for i, d := range cf.RootFS.DiffIDs {
			if d.String() != rec.Layers[i] {
				t.Errorf("diff ID %d = %s, want the stored %s", i, d, rec.Layers[i])
			}
		}
	}
	// A missing layer is an error, not a broken archive.
	os.RemoveAll(st.LayerDir(rec.Layers[1]))
	if _, err := Image(st, rec, false); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Image with a missing layer: %v", err)
	}
}

func TestSaveLoadStores(t *testing.T) {
	st, rec := newStore(t)
	var buf bytes.Buffer
	if err := Save(st, rec, &buf); err != nil {
		t.Fatal(err)
	}
	st2, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadReader(context.Background(), st2, bytes.NewReader(buf.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Config, built(rec)) || !reflect.DeepEqual(got.Layers, rec.Layers) {
		t.Errorf("loaded %+v, saved %+v", got, rec)
	}
	if got.Source != "bocker/"+rec.ID+":latest" {
		t.Errorf("loaded source %q", got.Source)
	}
	if !reflect.DeepEqual(treeDigests(t, st2, got), treeDigests(t, st, rec)) {
		t.Errorf("loaded layers differ from the saved ones")
	}
	// Loading into the store it came from shares the layers.
	again, err := LoadReader(context.Background(), st, bytes.NewReader(buf.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.Layers, rec.Layers) {
		t.Errorf("load into the saving store: layers %v, want %v", again.Layers, rec.Layers)
	}
	// A truncated archive is refused and leaves nothing.
	st3, _ := store.Open(t.TempDir())
	if _, err := LoadReader(context.Background(), st3, bytes.NewReader(buf.Bytes()[:buf.Len()/2]), Options{}); err == nil {
		t.Error("load of half an archive succeeded")
	}
	for _, d := range []string{"images", "layers", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(st3.Root, d)); len(ents) != 0 {
			t.Errorf("refused load left %s/%d entries", d, len(ents))
		}
	}
}

// TestPushPull goes through go-containerregistry's in-memory registry on
// 127.0.0.1: push, pull into a fresh store, pull back into the first.
func TestPushPull(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/bocker/test:1"
	st, rec := newStore(t)
	ctx := context.Background()
	digest, err := Push(ctx, st, rec, ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := store.Open(t.TempDir())
	got, err := Pull(ctx, st2, ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest || !reflect.DeepEqual(got.Config, built(rec)) || !reflect.DeepEqual(got.Layers, rec.Layers) {
		t.Errorf("pulled %+v, pushed %+v as %s", got, rec, digest)
	}
	if !reflect.DeepEqual(treeDigests(t, st2, got), treeDigests(t, st, rec)) {
		t.Errorf("pulled layers differ from the pushed ones")
	}
	// The same again reuses the record; into the pushing store it finds
	// every layer.
	again, err := Pull(ctx, st2, ref, Options{})
	if err != nil || again.ID != got.ID {
		t.Errorf("second pull: %v, id %s, want %s", err, again.ID, got.ID)
	}
	back, err := Pull(ctx, st, ref, Options{})
	if err != nil || !reflect.DeepEqual(back.Layers, rec.Layers) {
		t.Errorf("pull back: %v, %+v", err, back)
	}
	if _, err := Pull(ctx, st2, strings.TrimSuffix(ref, ":1")+":nosuch", Options{}); err != ErrNotFound {
		t.Errorf("pull of a missing tag: %v, want ErrNotFound", err)
	}
}

func TestInsecureHost(t *testing.T) {
	t.Setenv("BOCKER_INSECURE_REGISTRIES", "reg.lan:5000, other")
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "127.0.0.1:5000": true, "127.1.2.3": true, "[::1]:5000": true,
		"reg.lan:5000": true, "other": true, "other:443": true,
		"reg.lan": false, "docker.io": false, "10.0.0.1:5000": false, "127.0.0.1.evil.com": false,
	} {
		if got := insecureHost(host); got != want {
			t.Errorf("insecureHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// built is the config an image made in the store travels with: its
// build time is the record's.
func built(rec *store.Image) store.ImageConfig {
	c := rec.Config
	c.Created = rec.Created.UTC()
	return c
}

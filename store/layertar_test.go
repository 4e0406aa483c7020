package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLayerNotes(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const stored, tarred = "sha256:aaaa", "sha256:bbbb"
	if err := os.Mkdir(st.LayerDir(stored), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(st.LayerDir(stored), "f"), []byte("12345"), 0o644)
	if _, ok := st.FindLayer(tarred); ok {
		t.Fatal("alias found before it was recorded")
	}
	if err := st.SetLayerTar(stored, tarred, 2048); err != nil {
		t.Fatal(err)
	}
	if d, n, ok := st.LayerTar(stored); !ok || d != tarred || n != 2048 {
		t.Errorf("LayerTar = %s %d %v", d, n, ok)
	}
	for _, q := range []string{stored, tarred} {
		if got, ok := st.FindLayer(q); !ok || got != stored {
			t.Errorf("FindLayer(%s) = %s %v, want %s", q, got, ok, stored)
		}
	}
	if n, err := st.LayerSize(stored); err != nil || n != 5 {
		t.Errorf("LayerSize = %d %v, want 5", n, err)
	}
	// Notes are not layers, and go with their layer.
	if ids, _ := st.list("layers", ""); len(ids) != 1 {
		t.Errorf("layers listed: %v", ids)
	}
	img := &Image{ID: "img_x", Layers: []string{stored}, Created: time.Now()}
	st.PutImage(img)
	if err := st.GC(); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.FindLayer(tarred); !ok {
		t.Error("GC removed the alias of a used layer")
	}
	st.DeleteImage("img_x")
	if err := st.GC(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(st.Root, "layers")); len(ents) != 0 {
		t.Errorf("after GC of the layer: %v", ents)
	}
	// A stale scratch dir goes, a live one stays.
	live, _ := st.TempDir()
	dead := filepath.Join(st.Root, "tmp", "2147483646-x")
	os.Mkdir(dead, 0o700)
	if err := st.GCTemp(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Error("GCTemp kept a dead process's scratch dir")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("GCTemp removed our own scratch dir")
	}
}

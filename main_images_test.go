package main

// save, load and push: round trips through archives and a real registry,
// checked with skopeo, the other tool that reads them.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func (e *env) created(args ...string) string {
	e.t.Helper()
	out := e.ok(args...)
	m := createdRe.FindStringSubmatch(out)
	if m == nil {
		e.t.Fatalf("bocker %q printed %q, want Created: img_…", args, out)
	}
	return m[1]
}

func (e *env) layerDirs() []string {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.root, "layers"))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range ents {
		if !strings.HasPrefix(en.Name(), ".") {
			out = append(out, en.Name())
		}
	}
	return out
}

// nothingStored fails unless the store holds no image, layer or scratch
// directory: what a refused load or pull must leave.
func (e *env) nothingStored(what string) {
	e.t.Helper()
	for _, d := range []string{"images", "layers", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(e.root, d))
		if len(ents) != 0 {
			var names []string
			for _, en := range ents {
				names = append(names, en.Name())
			}
			e.t.Errorf("%s left %s/%v", what, d, names)
		}
	}
}

func skopeoJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := exec.Command("skopeo", args...).Output()
	if err != nil {
		t.Fatalf("skopeo %v: %v", args, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
}

// TestSaveLoad: a pulled image (whiteouts, an opaque directory, a config)
// saved, loaded beside itself (layers shared), removed, loaded again from
// a file and from stdin, and through skopeo's OCI archive, runs the same.
func TestSaveLoad(t *testing.T) {
	reg := startRegistry(t)
	e := newEnv(t)
	img := baseImage(t,
		tarLayer(t, []tarEntry{{name: "etc/motd", body: "hello\n"}, {name: "opq", dir: true}, {name: "opq/old", body: "x"}}),
		tarLayer(t, []tarEntry{{name: "etc/.wh.motd"}, {name: "opq", dir: true}, {name: "opq/.wh..wh..opq"}, {name: "opq/new", body: "y"}}),
	)
	reg.push(t, "oci:"+writeLayout(t, img, nil)+":t", "saved:1")
	orig := e.created("pull", reg.addr+"/saved:1")
	want := e.ok("run", "--network", "none", orig)
	if want != "default cmd yes\ncat: can't open '/etc/motd': No such file or directory\nnew\n" {
		t.Fatalf("pulled image runs %q", want)
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "saved.tar")
	if out := e.ok("save", orig, "-o", archive); out != "" {
		t.Errorf("save printed %q", out)
	}
	var insp struct {
		Layers   []string
		RepoTags []string
		Env      []string
	}
	skopeoJSON(t, &insp, "inspect", "docker-archive:"+archive)
	if len(insp.Layers) != 3 || !strings.Contains(strings.Join(insp.Env, " "), "FROM_IMAGE=yes") {
		t.Errorf("skopeo inspect of the archive: %+v", insp)
	}

	// Loaded beside the original, it shares every layer.
	twin := e.created("load", "-i", archive)
	if n := len(e.layerDirs()); n != 3 {
		t.Errorf("%d layers after loading a saved image beside itself, want 3", n)
	}
	if out := e.ok("run", "--network", "none", twin); out != want {
		t.Errorf("loaded twin runs %q, want %q", out, want)
	}
	if out := e.ok("images"); !strings.Contains(out, twin+"\t\t"+reg.addr+"/saved:1\n") {
		t.Errorf("images after load: %q", out)
	}

	// Removed, then loaded from the file and from stdin.
	for _, c := range e.containers() {
		e.ok("rm", c)
	}
	e.ok("rm", orig)
	e.ok("rm", twin)
	if n := len(e.layerDirs()); n != 0 {
		t.Errorf("%d layers left after rm of both images", n)
	}
	back := e.created("load", archive)
	if out := e.ok("run", "--network", "none", back); out != want {
		t.Errorf("loaded image runs %q, want %q", out, want)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	c := e.cmd(nil, "load")
	c.Stdin = f
	out, err := c.Output()
	f.Close()
	m := createdRe.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("load from stdin: %v, %q", err, out)
	}
	if out := e.ok("run", "--network", "none", m[1]); out != want {
		t.Errorf("image loaded from stdin runs %q", out)
	}
	// save to stdout gives the same archive as -o.
	e.ok("save", back, "-o", archive)
	c = e.cmd(nil, "save", back)
	stdout, err := c.Output()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(archive); string(b) != string(stdout) {
		t.Errorf("save to stdout differs from save -o")
	}

	// skopeo's OCI archive and OCI directory of the saved image.
	for _, dst := range []string{"oci-archive:" + filepath.Join(dir, "oci.tar") + ":x:1", "oci:" + filepath.Join(dir, "ocidir") + ":x:1"} {
		if out, err := exec.Command("skopeo", "copy", "--insecure-policy", "docker-archive:"+archive, dst).CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy to %s: %v\n%s", dst, err, out)
		}
	}
	for _, src := range []string{filepath.Join(dir, "oci.tar"), filepath.Join(dir, "ocidir")} {
		id := e.created("load", "-i", src)
		if out := e.ok("run", "--network", "none", id); out != want {
			t.Errorf("image loaded from %s runs %q", src, out)
		}
	}
	if n := len(e.layerDirs()); n != 3 {
		t.Errorf("%d layers after loading one image four ways, want 3", n)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.root, "tmp")); len(ents) != 0 {
		t.Errorf("load left scratch directories")
	}
}

// TestLoadBad: what is not an image archive is refused with one line,
// exit 1, and nothing stored.
func TestLoadBad(t *testing.T) {
	needRoot(t)
	e := newEnv(t)
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not a tar\n"), 0o644)
	// A tar of a layer, not of an image.
	plain := filepath.Join(dir, "plain.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", plain, "./bin").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	// A docker archive whose layer does not match its config's diff ID.
	good := filepath.Join(dir, "good.tar")
	img := e.image()
	e.ok("save", img, "-o", good)
	e.ok("rm", img)
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(bad, 0o755)
	if out, err := exec.Command("tar", "-C", bad, "-xf", good).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	ls, _ := filepath.Glob(filepath.Join(bad, "*.tar"))
	if len(ls) != 1 {
		t.Fatalf("saved archive has layers %v", ls)
	}
	lb, _ := os.ReadFile(ls[0])
	lb[len(lb)/2] ^= 0xff
	os.WriteFile(ls[0], lb, 0o644)
	tampered := filepath.Join(dir, "tampered.tar")
	if out, err := exec.Command("tar", "-C", bad, "-cf", tampered, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	for _, args := range [][]string{
		{"load", junk}, {"load", plain}, {"load", "-i", filepath.Join(dir, "nosuch")}, {"load", tampered},
		{"load", "-i"}, {"load", "a", "b"}, {"save"}, {"save", "img_nosuch", "-o", filepath.Join(dir, "x.tar")},
		{"save", "img_nosuch", "-o", "/nonexistent/x.tar"},
	} {
		r := e.bk(args...)
		// One message: the script's on stdout, or one error on stderr
		// after any progress lines.
		lines := strings.Count(r.out, "\n") + strings.Count(r.err, "bocker: ")
		if r.code != 1 || lines != 1 || strings.Contains(r.err, "archive.tar") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.out, r.err)
		}
	}
	e.nothingStored("refused loads")
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); err == nil {
		t.Error("a failed save wrote its file")
	}
}

// TestPush: an image committed from a container goes to a registry,
// skopeo sees its layers and config, and a pull of it, into a fresh store
// and into the same one, runs with the committed file.
func TestPush(t *testing.T) {
	reg := startRegistry(t)
	e := newEnv(t)
	img := e.image()
	e.ok("run", "--network", "none", img, "echo committed > /f; rm /etc/motd")
	e.ok("commit", e.last(), "img_pushme")
	ref := reg.addr + "/pushed:1"
	out := e.ok("push", "img_pushme", ref)
	if !strings.HasPrefix(out, "Pushed: "+ref+"@sha256:") {
		t.Errorf("push printed %q", out)
	}
	var insp struct {
		Digest string
		Layers []string
	}
	skopeoJSON(t, &insp, "inspect", "--tls-verify=false", "docker://"+ref)
	if len(insp.Layers) != 2 || "Pushed: "+ref+"@"+insp.Digest+"\n" != out {
		t.Errorf("skopeo inspect: %+v, push said %q", insp, out)
	}
	var cfg v1.ConfigFile
	skopeoJSON(t, &cfg, "inspect", "--tls-verify=false", "--config", "docker://"+ref)
	if cfg.OS != "linux" || len(cfg.RootFS.DiffIDs) != 2 {
		t.Errorf("pushed config: %+v", cfg)
	}

	check := func(e *env, id string) {
		t.Helper()
		if out := e.ok("run", "--network", "none", id, "cat /f; ls /etc/motd 2>&1 >/dev/null | wc -l"); out != "committed\n1\n" {
			t.Errorf("pulled push runs %q", out)
		}
	}
	fresh := newEnv(t)
	check(fresh, fresh.created("pull", ref))
	// Into the store it came from: every layer is already there.
	r := e.bk("pull", ref)
	if r.code != 0 || strings.Count(r.err, "already present") != 2 {
		t.Errorf("pull back into the pushing store: exit %d, %q", r.code, r.err)
	}
	if m := createdRe.FindStringSubmatch(r.out); m != nil {
		check(e, m[1])
	}
	if n := len(e.layerDirs()); n != 2 {
		t.Errorf("%d layers after pulling back a pushed 2-layer image", n)
	}
	// A second push sends no layer again and gives the same digest.
	if again := e.ok("push", "img_pushme", ref); again != out {
		t.Errorf("second push: %q, first %q", again, out)
	}

	for _, args := range [][]string{
		{"push", "img_nosuch", ref}, {"push", "img_pushme", "BAD//ref"}, {"push", "img_pushme"},
		{"push", "img_pushme", "127.0.0.1:1/x:y"},
	} {
		r := e.bk(args...)
		if r.code != 1 || strings.Count(r.out+r.err, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.out, r.err)
		}
	}
}

// TestImagesJSON: the plain listing stays the script's two columns; the
// JSON form is one object per line with size, created and digest.
func TestImagesJSON(t *testing.T) {
	reg := startRegistry(t)
	e := newEnv(t)
	local := e.image()
	reg.push(t, "oci:"+writeLayout(t, baseImage(t, tarLayer(t, []tarEntry{{name: "five", body: "12345"}})), nil)+":t", "listed:1")
	pulled := e.created("pull", reg.addr+"/listed:1")
	if got, want := e.ok("images"), "IMAGE_ID\t\tSOURCE\n"+local+"\t\t"+rootfs+"\n"+pulled+"\t\t"+reg.addr+"/listed:1\n"; got != want {
		t.Errorf("images: %q, want %q", got, want)
	}
	var rootSize int64
	filepath.Walk(rootfs, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rootSize += fi.Size()
		}
		return nil
	})
	out := e.ok("images", "--format", "json")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("images --format json: %q", out)
	}
	type row struct {
		ID, Source, Digest string
		Created            string
		Size               int64
		Layers             int
	}
	var rows []row
	for _, l := range lines {
		var r row
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		rows = append(rows, r)
	}
	if r := rows[0]; r.ID != local || r.Source != rootfs || r.Digest != "" || r.Size != rootSize || r.Layers != 1 || r.Created == "" {
		t.Errorf("local image row %+v, want size %d", r, rootSize)
	}
	if r := rows[1]; r.ID != pulled || !strings.HasPrefix(r.Digest, "sha256:") || r.Size != rootSize+5 || r.Layers != 2 {
		t.Errorf("pulled image row %+v, want size %d", r, rootSize+5)
	}
	// Sizes are counted once and kept; they go with their layers.
	if again := e.ok("images", "--format", "json"); again != out {
		t.Errorf("second listing differs: %q", again)
	}
	for _, bad := range [][]string{{"images", "--format", "yaml"}, {"images", "extra"}, {"images", "--format"}} {
		if r := e.bk(bad...); r.code != 1 || r.out != "" || strings.Count(r.err, "\n") != 1 {
			t.Errorf("%v: exit %d, %q %q", bad, r.code, r.out, r.err)
		}
	}
	e.ok("rm", pulled)
	e.ok("rm", local)
	if ents, _ := os.ReadDir(filepath.Join(e.root, "layers")); len(ents) != 0 {
		t.Errorf("layers dir after rm of every image: %v", ents)
	}
}

// TestPullAgain: a second pull of the same reference finds the image it
// stored and prints its id, fast; scratch left by a killed pull goes.
func TestPullAgain(t *testing.T) {
	reg := startRegistry(t)
	e := newEnv(t)
	reg.push(t, "oci:"+writeLayout(t, baseImage(t), nil)+":t", "again:1")
	// Scratch of a pull killed with -9: its pid is gone.
	stale := filepath.Join(e.root, "tmp", "2147483646-1234")
	if err := os.MkdirAll(filepath.Join(stale, "layer"), 0o755); err != nil {
		t.Fatal(err)
	}
	first := e.created("pull", reg.addr+"/again:1")
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("stale scratch dir survived a pull")
	}
	start := time.Now()
	second := e.created("pull", reg.addr+"/again:1")
	took := time.Since(start)
	t.Logf("second pull: %v", took)
	if second != first {
		t.Errorf("second pull created %s, want the stored %s", second, first)
	}
	if took > 300*time.Millisecond {
		t.Errorf("second pull took %v, want under 0.3 s", took)
	}
	if n := strings.Count(e.ok("images"), "\n"); n != 2 {
		t.Errorf("%d lines in images after pulling one image twice", n)
	}
	// Another name for the same image is a record of its own.
	if other := e.created("pull", reg.addr+"/again:1@"+e.digestOf(first)); other == first {
		t.Errorf("a pull by digest reused the tag's record")
	}
}

func (e *env) digestOf(id string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, "images", id+".json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var rec struct{ Digest string }
	json.Unmarshal(b, &rec)
	return rec.Digest
}

package main

// Pulls from a real registry: Debian's docker-registry on 127.0.0.1,
// seeded by skopeo with images built from the busybox base.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type testRegistry struct {
	addr, data string
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	needRoot(t)
	for _, b := range []string{"docker-registry", "skopeo"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (scripts/deps installs it)", b)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/data\nhttp:\n  addr: %s\nlog:\n  level: error\n", dir, addr)
	if err := os.WriteFile(dir+"/config.yml", []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("docker-registry", "serve", dir+"/config.yml")
	c.Stdout, c.Stderr = io.Discard, io.Discard
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	for i := 0; ; i++ {
		if cn, err := net.Dial("tcp", addr); err == nil {
			cn.Close()
			break
		}
		if i > 100 {
			t.Fatal("registry did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &testRegistry{addr: addr, data: dir + "/data"}
}

// push copies an OCI layout into the registry with skopeo.
func (r *testRegistry) push(t *testing.T, src, dst string, extra ...string) {
	t.Helper()
	args := append([]string{"copy", "--insecure-policy", "--dest-tls-verify=false"}, extra...)
	args = append(args, src, "docker://"+r.addr+"/"+dst)
	if out, err := exec.Command("skopeo", args...).CombinedOutput(); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
}

type tarEntry struct {
	name, body string
	dir        bool
}

func tarLayer(t *testing.T, ents []tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)}
		if e.dir {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// baseImage is the busybox rootfs as one layer, plus layers that add,
// white out and make a directory opaque.
func baseImage(t *testing.T, extra ...v1.Layer) v1.Image {
	t.Helper()
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	base, err := tarball.LayerFromFile(tarPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	// OCI media types throughout: skopeo's oci: transport finds only those.
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), append([]v1.Layer{base}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: []string{"PATH=/bin", "FROM_IMAGE=yes"}, Cmd: []string{"/bin/sh", "-c", "echo default cmd $FROM_IMAGE; cat /etc/motd 2>&1; ls /opq"}, WorkingDir: "/etc"})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func writeLayout(t *testing.T, img v1.Image, idx v1.ImageIndex) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if idx != nil {
		err = p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "t"}))
	} else {
		err = p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "t"}))
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPullFromRegistry(t *testing.T) {
	reg := startRegistry(t)
	e := newEnv(t)
	layers := []v1.Layer{
		tarLayer(t, []tarEntry{{name: "etc/motd", body: "hello\n"}, {name: "opq", dir: true}, {name: "opq/old", body: "x"}}),
		tarLayer(t, []tarEntry{{name: "etc/.wh.motd"}, {name: "opq", dir: true}, {name: "opq/.wh..wh..opq"}, {name: "opq/new", body: "y"}}),
	}
	img := baseImage(t, layers...)
	dir := writeLayout(t, img, nil)
	reg.push(t, "oci:"+dir+":t", "multi:gzip")
	reg.push(t, "oci:"+dir+":t", "multi:zstd", "--dest-compress-format", "zstd")

	for _, tag := range []string{"gzip", "zstd"} {
		r := e.bk("pull", reg.addr+"/multi", tag)
		m := createdRe.FindStringSubmatch(r.out)
		if r.code != 0 || m == nil {
			t.Fatalf("pull %s: exit %d, stdout %q, stderr %q", tag, r.code, r.out, r.err)
		}
		// The image's Cmd, Env and WorkingDir; the whiteout hid motd, the
		// opaque directory hid old.
		out := e.ok("run", "--network", "none", m[1])
		want := "default cmd yes\ncat: can't open '/etc/motd': No such file or directory\nnew\n"
		if out != want {
			t.Errorf("run of pulled %s image: %q, want %q", tag, out, want)
		}
		if out := e.ok("run", "--network", "none", m[1], "pwd"); out != "/etc\n" {
			t.Errorf("WorkingDir: %q", out)
		}
	}
	// gzip and zstd of the same content share the layers by diff ID.
	ents, _ := os.ReadDir(filepath.Join(e.root, "layers"))
	if len(ents) != 3 {
		t.Errorf("%d layers stored for two pulls of one 3-layer image", len(ents))
	}
	r := e.bk("pull", reg.addr+"/multi:gzip")
	if r.code != 0 || strings.Contains(r.err, "downloading") || strings.Count(r.err, "already present") != 3 {
		t.Errorf("second pull downloaded again: %q", r.err)
	}
	if out := e.ok("images"); !strings.Contains(out, "\t\t"+reg.addr+"/multi:gzip\n") {
		t.Errorf("images SOURCE: %q", out)
	}

	for _, bad := range []struct {
		args []string
		out  string
	}{
		{[]string{"pull", reg.addr + "/multi", "nosuch"}, "No image named '" + reg.addr + "/multi:nosuch' exists\n"},
		{[]string{"pull", reg.addr + "/nosuch:1"}, "No image named '" + reg.addr + "/nosuch:1' exists\n"},
		{[]string{"pull", "BAD//ref"}, ""},
		{[]string{"pull", reg.addr + "/multi@sha256:1234"}, ""},
		{[]string{"pull", "127.0.0.1:1/x:y"}, ""},
	} {
		r := e.bk(bad.args...)
		if r.code != 1 || r.out != bad.out || (bad.out == "" && strings.Count(strings.TrimSpace(r.err), "\n") != 0) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", bad.args, r.code, r.out, r.err)
		}
	}
}

func TestPullIndexAndTamper(t *testing.T) {
	reg := startRegistry(t)
	e := newEnv(t)
	amd := baseImage(t, tarLayer(t, []tarEntry{{name: "arch", body: "amd64\n"}}))
	arm := baseImage(t, tarLayer(t, []tarEntry{{name: "arch", body: "arm64\n"}}))
	cf, _ := arm.ConfigFile()
	cf.Architecture = "arm64"
	arm, _ = mutate.ConfigFile(arm, cf)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	reg.push(t, "oci:"+writeLayout(t, nil, idx)+":t", "multiarch:1", "--all")
	if out, _ := exec.Command("uname", "-m").Output(); strings.TrimSpace(string(out)) == "x86_64" {
		m := createdRe.FindStringSubmatch(e.ok("pull", reg.addr+"/multiarch:1"))
		if m == nil {
			t.Fatal("pull of an index printed no id")
		}
		if out := e.ok("run", "--network", "none", m[1], "cat /arch"); out != "amd64\n" {
			t.Errorf("index resolved to %q, want the host's amd64", out)
		}
	}

	// A blob changed in the registry's storage is refused, nothing stored.
	tamper := baseImage(t, tarLayer(t, []tarEntry{{name: "secret", body: strings.Repeat("s", 4096)}}))
	reg.push(t, "oci:"+writeLayout(t, tamper, nil)+":t", "tamper:1")
	ls, _ := tamper.Layers()
	d, _ := ls[1].Digest()
	blob := filepath.Join(reg.data, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data")
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t)
	r := e2.bk("pull", reg.addr+"/tamper:1")
	// Progress lines, then one error.
	if r.code != 1 || r.out != "" || strings.Count(r.err, "bocker: ") != 1 || !strings.Contains(r.err, "layer") {
		t.Errorf("pull of a tampered blob: exit %d, stdout %q, stderr %q", r.code, r.out, r.err)
	}
	if out := e2.ok("images"); out != "IMAGE_ID\t\tSOURCE\n" {
		t.Errorf("tampered pull left images: %q", out)
	}
	ents, _ := os.ReadDir(filepath.Join(e2.root, "layers"))
	for _, en := range ents {
		if en.Name() == strings.TrimPrefix(d.Hex, "") {
			t.Errorf("tampered layer stored")
		}
	}
	tmps, _ := os.ReadDir(filepath.Join(e2.root, "tmp"))
	if len(tmps) != 0 {
		t.Errorf("tampered pull left scratch directories %v", tmps)
	}
}

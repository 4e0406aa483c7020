package main

// Registry failures: a fake registry on 127.0.0.1 (httptest) that serves
// one good image and breaks it in the ways real ones break. Each pull
// must print one error line, exit 1 and leave the store empty.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// faultyRegistry serves img under every repository name; the name picks
// the fault.
func faultyRegistry(t *testing.T, img v1.Image) string {
	t.Helper()
	manifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	blobs := map[string][]byte{}
	cfgName, _ := img.ConfigName()
	blobs[cfgName.String()], _ = img.RawConfigFile()
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		blobs[d.String()] = b
	}
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v2/"), "/")
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		repo, kind, id := parts[0], parts[1], parts[2]
		stall := func() {
			w.(http.Flusher).Flush()
			select {
			case <-stop:
			case <-r.Context().Done():
			}
		}
		switch kind {
		case "manifests":
			switch repo {
			case "stallmanifest":
				stall()
				return
			case "bigmanifest", "bigchunked":
				body := append(manifest[:len(manifest):len(manifest)], bytes.Repeat([]byte(" "), 5<<20)...)
				w.Header().Set("Content-Type", string(mt))
				if repo == "bigmanifest" {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				w.Write(body)
				return
			}
			w.Header().Set("Content-Type", string(mt))
			w.Header().Set("Content-Length", fmt.Sprint(len(manifest)))
			w.Write(manifest)
		case "blobs":
			b, ok := blobs[id]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			if id == cfgName.String() {
				w.Write(b)
				return
			}
			switch repo {
			case "stallblob":
				w.Write(b[:len(b)/2])
				stall()
			case "truncblob":
				// The server closes the connection when a handler
				// writes less than its Content-Length.
				w.Write(b[:len(b)/2])
			default:
				w.Write(b)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestRegistryFailures(t *testing.T) {
	needRoot(t)
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	img, err := mutate.AppendLayers(empty.Image, tarLayer(t, []tarEntry{{name: "data", body: string(big)}}))
	if err != nil {
		t.Fatal(err)
	}
	addr := faultyRegistry(t, img)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	e := newEnv(t)
	// The fake serves the good image too: the harness works.
	if r := e.bk("pull", addr+"/good:1"); r.code != 0 || !createdRe.MatchString(r.out) {
		t.Fatalf("pull of the good image: exit %d, %q %q", r.code, r.out, r.err)
	}
	for _, c := range []struct {
		name, ref, want string
	}{
		{"stalled blob", addr + "/stallblob:1", "no data from the registry for 1s"},
		{"stalled manifest", addr + "/stallmanifest:1", "timeout"},
		{"manifest over 4 MiB", addr + "/bigmanifest:1", "manifest larger than 4 MiB"},
		{"chunked manifest over 4 MiB", addr + "/bigchunked:1", "manifest larger than 4 MiB"},
		{"truncated blob", addr + "/truncblob:1", "download cut short"},
		{"unreachable registry", closed + "/x:1", "connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			start := time.Now()
			r := e.runEnv([]string{"BOCKER_PULL_TIMEOUT=1s"}, "pull", c.ref)
			took := time.Since(start)
			t.Logf("%v: %s", took.Round(time.Millisecond), r.err)
			errs := strings.Count(r.err, "bocker: ")
			if r.code != 1 || r.out != "" || errs != 1 || !strings.HasSuffix(r.err, "\n") || !strings.Contains(r.err, c.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want one error with %q", r.code, r.out, r.err, c.want)
			}
			// The error line is the last line, and there is only one.
			last := r.err[strings.LastIndex(strings.TrimSuffix(r.err, "\n"), "\n")+1:]
			if !strings.HasPrefix(last, "bocker: ") {
				t.Errorf("last stderr line %q is not the error", last)
			}
			if took > 10*time.Second {
				t.Errorf("took %v with BOCKER_PULL_TIMEOUT=1s", took)
			}
			e.nothingStored(c.name)
		})
	}
	// A pull killed with -9 halfway (here: stalled on a blob) leaves
	// scratch only, which the next pull removes as it completes.
	t.Run("killed pull", func(t *testing.T) {
		e := newEnv(t)
		c := e.cmd(nil, "pull", addr+"/stallblob:1")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			ents, _ := os.ReadDir(filepath.Join(e.root, "tmp"))
			if len(ents) > 0 {
				break
			}
			if i > 200 {
				t.Fatal("the pull made no scratch dir")
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		c.Process.Kill()
		c.Wait()
		for _, d := range []string{"images", "layers"} {
			if ents, _ := os.ReadDir(filepath.Join(e.root, d)); len(ents) != 0 {
				t.Errorf("killed pull left %s", d)
			}
		}
		id := e.created("pull", addr+"/good:1")
		if ents, _ := os.ReadDir(filepath.Join(e.root, "tmp")); len(ents) != 0 {
			t.Errorf("scratch of the killed pull survived the next pull")
		}
		e.ok("rm", id)
		e.nothingStored("rm after the killed pull")
	})
	if r := e.runEnv([]string{"BOCKER_PULL_TIMEOUT=soon"}, "pull", addr+"/good:1"); r.code != 1 || !strings.Contains(r.err, "BOCKER_PULL_TIMEOUT") {
		t.Errorf("bad BOCKER_PULL_TIMEOUT: exit %d, %q", r.code, r.err)
	}
}

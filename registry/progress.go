package registry

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progress reports layers on stderr: a bar each with bytes and speed when
// it is a terminal, a line per event otherwise (logs, CI, pipes).
type progress struct {
	w    io.Writer
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*mpb.Bar
}

func newProgress(w io.Writer) *progress {
	pr := &progress{w: w, bars: map[string]*mpb.Bar{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return pr
}

func (pr *progress) line(format string, a ...any) {
	if pr.w == nil {
		return
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	fmt.Fprintf(pr.w, format+"\n", a...)
}

func (pr *progress) present(diffID string) {
	if pr.p != nil {
		pr.p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Name(short(diffID)+": already present"))).SetTotal(0, true)
		return
	}
	pr.line("%s: already present", short(diffID))
}

// track wraps a layer's download so the bytes move its bar.
func (pr *progress) track(digest string, size int64, r io.Reader) io.Reader {
	if pr.p == nil {
		if size <= 0 {
			pr.line("%s: extracting", short(digest))
		} else {
			pr.line("%s: downloading %s", short(digest), human(size))
		}
		return r
	}
	b := pr.p.AddBar(size,
		mpb.PrependDecorators(decor.Name(short(digest)+" "), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30)),
	)
	pr.mu.Lock()
	pr.bars[digest] = b
	pr.mu.Unlock()
	pr2, err := b.ProxyReader(r)
	if err != nil {
		return r
	}
	return pr2
}

func (pr *progress) done(digest string) {
	if pr.p == nil {
		pr.line("%s: done", short(digest))
		return
	}
	pr.mu.Lock()
	b := pr.bars[digest]
	pr.mu.Unlock()
	if b != nil {
		b.SetTotal(-1, true)
	}
}

func (pr *progress) fail(digest string) {
	if pr.p == nil {
		return
	}
	pr.mu.Lock()
	b := pr.bars[digest]
	pr.mu.Unlock()
	if b != nil {
		b.Abort(false)
	}
}

func (pr *progress) wait() {
	if pr.p != nil {
		pr.p.Wait()
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

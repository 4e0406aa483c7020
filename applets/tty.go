package applets

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// ttySession joins the master of a container's pty to the caller's
// stdio: the master's output to stdout, the caller's stdin to the master
// when interactive, the local terminal in raw mode meanwhile. The pty
// itself is made inside the container (container.Config.Console).
type ttySession struct {
	master  *os.File
	in      *os.File // the caller's terminal, when stdin is one
	restore func()
	copies  sync.WaitGroup
}

func newTTY(stdin io.Reader) *ttySession {
	t := &ttySession{}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		t.in = f
	}
	return t
}

// attach is the Console callback: it runs before the command starts, so
// the size is right from the first instruction.
func (t *ttySession) attach(master *os.File) {
	t.master = master
	t.resize()
}

// pump starts the copies once the process runs; the master reads EOF
// (EIO) when the last holder of the slave is gone.
func (t *ttySession) pump(stdin io.Reader, stdout io.Writer, interactive bool) {
	if t.master == nil {
		return
	}
	t.copies.Add(1)
	go func() {
		defer t.copies.Done()
		_, _ = io.Copy(stdout, t.master)
	}()
	if !interactive || stdin == nil {
		return
	}
	if t.in != nil {
		if old, err := term.MakeRaw(int(t.in.Fd())); err == nil {
			t.restore = func() { _ = term.Restore(int(t.in.Fd()), old) }
		}
	}
	go func() { _, _ = io.Copy(t.master, stdin) }()
}

func (t *ttySession) resize() {
	if t.in != nil && t.master != nil {
		_ = pty.InheritSize(t.in, t.master)
	}
}

// close waits a little for output still in the pty, then gives the
// terminal back as it was.
func (t *ttySession) close() {
	waitCopies(&t.copies, time.Second)
	if t.restore != nil {
		t.restore()
	}
	if t.master != nil {
		t.master.Close()
	}
}

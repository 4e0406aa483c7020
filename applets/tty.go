package applets

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// ttySession joins a pty master to the caller's stdio: the master's
// output to stdout, the caller's stdin to the master when interactive,
// the local terminal in raw mode meanwhile.
type ttySession struct {
	master, slave *os.File
	in            *os.File // the caller's terminal, when stdin is one
	restore       func()
	copies        sync.WaitGroup
}

func openTTY(stdin io.Reader) (*ttySession, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, err
	}
	t := &ttySession{master: m, slave: s}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		t.in = f
		_ = pty.InheritSize(f, m)
	}
	return t, nil
}

// pump starts the copies once the process holds the slave; the parent's
// copy is closed so the master reads EOF when the process is gone.
func (t *ttySession) pump(stdin io.Reader, stdout io.Writer, interactive bool) {
	t.slave.Close()
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
	if t.in != nil {
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
	t.master.Close()
	t.slave.Close()
}

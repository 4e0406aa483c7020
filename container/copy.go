package container

import (
	"errors"
	"io"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// copyBuffers are shared by every output copy in the process: a monitor
// watching many quiet containers would otherwise hold two 32 KiB
// buffers for each (os/exec's io.Copy), where conmon's whole footprint is
// about 0.4 MiB.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pooledWriter takes a buffer only once its pipe is readable, and gives
// it back after each write. os/exec's copy from the container's pipe
// reaches ReadFrom through io.Copy.
type pooledWriter struct{ w io.Writer }

func (p pooledWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

func (p pooledWriter) ReadFrom(r io.Reader) (int64, error) {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return io.Copy(p.w, struct{ io.Reader }{r})
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return io.Copy(p.w, struct{ io.Reader }{r})
	}
	var total int64
	for {
		var buf *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			buf = copyBuffers.Get().(*[]byte)
			n, rerr = unix.Read(int(fd), *buf)
			if rerr == unix.EAGAIN {
				copyBuffers.Put(buf)
				buf = nil
				return false
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if n > 0 {
			_, werr := p.w.Write((*buf)[:n])
			total += int64(n)
			if werr != nil {
				copyBuffers.Put(buf)
				return total, werr
			}
		}
		if buf != nil {
			copyBuffers.Put(buf)
		}
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return total, err
		case n == 0:
			return total, nil
		}
	}
}

// pooled wraps w for launch; files and nil are passed to the child as
// they are.
func pooled(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	if _, ok := w.(interface{ Fd() uintptr }); ok {
		return w
	}
	return pooledWriter{w}
}

package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// A container's log is a sequence of frames, one per write of its output:
// "<unix nanoseconds> <o|e> <length>\n" and then that many bytes. The
// framing keeps output byte for byte (binary too), which stream it came
// from, and when, for logs -t, without a line-oriented format's escaping.

// Log stream tags.
const (
	Stdout byte = 'o'
	Stderr byte = 'e'
)

// LogWriter appends frames to a log file; its streams may be written from
// several goroutines.
type LogWriter struct {
	mu sync.Mutex
	f  *os.File
}

// NewLogWriter writes frames to f, which should be opened O_APPEND.
func NewLogWriter(f *os.File) *LogWriter { return &LogWriter{f: f} }

// Stream returns a writer whose writes become frames tagged s.
func (w *LogWriter) Stream(s byte) io.Writer { return streamWriter{w, s} }

type streamWriter struct {
	w *LogWriter
	s byte
}

func (sw streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	hdr := strconv.FormatInt(time.Now().UnixNano(), 10) + " " + string(sw.s) + " " + strconv.Itoa(len(p)) + "\n"
	buf := make([]byte, 0, len(hdr)+len(p))
	buf = append(append(buf, hdr...), p...)
	sw.w.mu.Lock()
	defer sw.w.mu.Unlock()
	// One write per frame: O_APPEND keeps frames whole even when a
	// restarted container's monitor and a late writer overlap.
	if _, err := sw.w.f.Write(buf); err != nil {
		return 0, fmt.Errorf("write log: %w", err)
	}
	return len(p), nil
}

// LogEntry is one frame.
type LogEntry struct {
	Time   time.Time
	Stream byte
	Data   []byte
}

// LogReader reads frames; at the end of the file it returns io.EOF and
// may be called again once more has been written (logs -f).
type LogReader struct {
	f   *os.File
	off int64
	br  *bufio.Reader
}

// NewLogReader reads frames from f from its start.
func NewLogReader(f *os.File) *LogReader { return &LogReader{f: f} }

// maxFrame bounds a frame's claimed length, so a damaged log cannot make
// a reader allocate without limit. Writes from a pipe are at most 64 KiB.
const maxFrame = 16 << 20

// Next returns the next complete frame, or io.EOF when there is none yet.
func (r *LogReader) Next() (LogEntry, error) {
	if r.br == nil {
		if _, err := r.f.Seek(r.off, io.SeekStart); err != nil {
			return LogEntry{}, fmt.Errorf("seek log: %w", err)
		}
		r.br = bufio.NewReader(r.f)
	}
	hdr, err := r.br.ReadString('\n')
	if err != nil {
		// A frame being written: start over from its header next time.
		r.br = nil
		if errors.Is(err, io.EOF) {
			return LogEntry{}, io.EOF
		}
		return LogEntry{}, fmt.Errorf("read log: %w", err)
	}
	var ns int64
	var s byte
	var n int
	if _, err := fmt.Sscanf(hdr, "%d %c %d\n", &ns, &s, &n); err != nil || n < 0 || n > maxFrame {
		return LogEntry{}, fmt.Errorf("read log: bad frame header %q", hdr)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r.br, data); err != nil {
		r.br = nil
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return LogEntry{}, io.EOF
		}
		return LogEntry{}, fmt.Errorf("read log: %w", err)
	}
	r.off += int64(len(hdr) + n)
	return LogEntry{Time: time.Unix(0, ns), Stream: s, Data: data}, nil
}

package applets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bocker/bocker/store"
)

func init() {
	register(&Applet{Name: "logs", Help: "View logs from a container:", Usage: "<container_id>", Order: 8, Run: logs})
}

var logsOptDefs = []optDef{
	{[]string{"f", "follow"}, optBool},
	{[]string{"t", "timestamps"}, optBool},
	{[]string{"tail", "n"}, optValue},
}

func logs(e *Env, args []string) error {
	o, rest, err := parseOpts("logs", args, logsOptDefs)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("usage: bocker logs [-f] [-t] [--tail N] <container_id>")
	}
	tail := -1
	if v, ok := o.vals["tail"]; ok && v != "all" {
		if tail, err = strconv.Atoi(v); err != nil || tail < 0 {
			return fmt.Errorf("logs: --tail %q: expected a number of lines", v)
		}
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	ref := rest[0]
	id, err := st.ResolveContainer(ref)
	if err != nil {
		return noContainer(ref)
	}
	f, err := os.Open(filepath.Join(st.ContainerDir(id), "log"))
	if err != nil {
		return fmt.Errorf("open log of %s: %w", id, err)
	}
	defer f.Close()
	// Both streams to stdout, interleaved as they came: the script's log
	// was its command's 2>&1, and scripts grep it.
	p := &logPrinter{out: e.Stdout, errw: e.Stdout, stamps: o.bools["t"], atLine: true}
	lr := store.NewLogReader(f)
	var backlog []store.LogEntry
	for {
		ent, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		backlog = append(backlog, ent)
	}
	if tail >= 0 {
		backlog = lastLines(backlog, tail)
	}
	for _, ent := range backlog {
		p.print(ent)
	}
	if !o.bools["f"] {
		return nil
	}
	// Follow until the container has stopped and its last output is read.
	for {
		ent, err := lr.Next()
		if err == nil {
			p.print(ent)
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		c, gerr := st.GetContainer(id)
		if gerr != nil || !running(st, c) {
			// One more read: output written just before the end.
			for {
				ent, err := lr.Next()
				if err != nil {
					return nil
				}
				p.print(ent)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logPrinter writes frames back to the streams they came from; with
// timestamps each line starts with the time its first byte was written.
type logPrinter struct {
	out, errw io.Writer
	stamps    bool
	atLine    bool
}

func (p *logPrinter) print(ent store.LogEntry) {
	w := p.out
	if ent.Stream == store.Stderr {
		w = p.errw
	}
	if !p.stamps {
		_, _ = w.Write(ent.Data)
		return
	}
	stamp := ent.Time.UTC().Format(time.RFC3339Nano) + " "
	var b bytes.Buffer
	for _, c := range ent.Data {
		if p.atLine {
			b.WriteString(stamp)
			p.atLine = false
		}
		b.WriteByte(c)
		if c == '\n' {
			p.atLine = true
		}
	}
	_, _ = w.Write(b.Bytes())
}

// lastLines keeps the frames holding the last n lines, the first cut to
// where its line starts.
func lastLines(ents []store.LogEntry, n int) []store.LogEntry {
	if n == 0 {
		return nil
	}
	lines := 0
	for i := len(ents) - 1; i >= 0; i-- {
		d := ents[i].Data
		for j := len(d) - 1; j >= 0; j-- {
			if d[j] != '\n' {
				continue
			}
			// A newline that ends the last frame closes the last line, it
			// does not start a new one.
			if i == len(ents)-1 && j == len(d)-1 {
				continue
			}
			lines++
			if lines == n {
				cut := ents[i]
				cut.Data = d[j+1:]
				return append([]store.LogEntry{cut}, ents[i+1:]...)
			}
		}
	}
	return ents
}

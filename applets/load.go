package applets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	reg "github.com/bocker/bocker/registry"
	"golang.org/x/term"
)

func init() {
	register(&Applet{Name: "load", Help: "Load an image from a docker-archive or OCI layout:", Usage: "[-i <file>]", Order: 112, Run: load})
}

// load: bocker load [-i FILE] or bocker load FILE, stdin by default;
// FILE is a docker save tar, an OCI layout tar or an OCI layout directory.
func load(e *Env, args []string) error {
	in := ""
	switch {
	case len(args) == 0:
	case len(args) == 2 && (args[0] == "-i" || args[0] == "--input"):
		in = args[1]
	case len(args) == 1 && args[0] != "-i" && args[0] != "--input":
		in = args[0]
	default:
		return errors.New("usage: bocker load [-i <file>]")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := reg.Options{Progress: e.Stderr}
	if in == "" || in == "-" {
		if f, ok := e.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return errors.New("load: no archive on stdin; use -i <file> or a pipe")
		}
		rec, err := reg.LoadReader(ctx, st, e.Stdin, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "Created: %s\n", rec.ID)
		return nil
	}
	rec, err := reg.Load(ctx, st, in, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "Created: %s\n", rec.ID)
	return nil
}

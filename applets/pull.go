package applets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	reg "github.com/bocker/bocker/registry"
)

func init() {
	register(&Applet{Name: "pull", Help: "Pull an image from Docker Hub:", Usage: "<name> <tag>", Order: 2, Run: pull})
}

// pull takes the script's `pull <name> <tag>` or one reference
// (busybox:1.36, alpine@sha256:…, 127.0.0.1:5000/x:y).
func pull(e *Env, args []string) error {
	var ref string
	switch len(args) {
	case 1:
		ref = args[0]
	case 2:
		ref = args[0] + ":" + args[1]
	default:
		return errors.New("usage: bocker pull <name> <tag> | bocker pull <reference>")
	}
	o, err := netOptions(e)
	if err != nil {
		return err
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	// Ctrl-C ends the downloads; what was half fetched stays in scratch
	// directories that the next store GC removes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	img, err := reg.Pull(ctx, st, ref, o)
	if errors.Is(err, reg.ErrNotFound) {
		return noImage(ref)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "Created: %s\n", img.ID)
	return nil
}

// netOptions are the registry options of pull and push:
// BOCKER_PULL_TIMEOUT (a duration, default 30s) is how long a registry
// may send nothing before the transfer is given up.
func netOptions(e *Env) (reg.Options, error) {
	o := reg.Options{Progress: e.Stderr}
	if v := os.Getenv("BOCKER_PULL_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("BOCKER_PULL_TIMEOUT=%q: want a duration such as 30s", v)
		}
		o.Idle = d
	}
	return o, nil
}

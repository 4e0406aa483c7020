package applets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	reg "github.com/bocker/bocker/registry"
)

func init() {
	register(&Applet{Name: "push", Help: "Push an image to a registry:", Usage: "<image_id> <reference>", Order: 113, Run: push})
}

// push: bocker push <image_id> <reference>, e.g. 127.0.0.1:5000/x:y.
func push(e *Env, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: bocker push <image_id> <reference>")
	}
	o, err := netOptions(e)
	if err != nil {
		return err
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	id, err := st.ResolveImage(args[0])
	if err != nil {
		return noImage(args[0])
	}
	img, err := st.GetImage(id)
	if err != nil {
		return noImage(args[0])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	digest, err := reg.Push(ctx, st, img, args[1], o)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "Pushed: %s@%s\n", args[1], digest)
	return nil
}

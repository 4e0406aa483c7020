package applets

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/bocker/bocker/cgroup"
	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/store"
)

func init() {
	register(&Applet{Name: "rm", Help: "Delete an image or container:", Usage: "<image_id or container_id>", Order: 3, Run: rm})
}

func rm(e *Env, args []string) error {
	fs := flag.NewFlagSet("rm", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	force := fs.Bool("f", false, "kill a running container first")
	fs.BoolVar(force, "force", false, "kill a running container first")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("rm: %w", err)
	}
	if fs.NArg() == 0 {
		return errors.New("usage: bocker rm [-f] <image_id or container_id>...")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	for _, ref := range fs.Args() {
		if err := rmOne(e, st, ref, *force); err != nil {
			return err
		}
	}
	return nil
}

func rmOne(e *Env, st *store.Store, ref string, force bool) error {
	if !strings.HasPrefix(ref, "img_") {
		if id, err := st.ResolveContainer(ref); err == nil {
			return rmContainer(e, st, id, force)
		} else if errors.Is(err, store.ErrAmbiguous) {
			return fmt.Errorf("rm: %q matches more than one container", ref)
		}
	}
	if !strings.HasPrefix(ref, "ps_") {
		if id, err := st.ResolveImage(ref); err == nil {
			return rmImage(e, st, id)
		} else if errors.Is(err, store.ErrAmbiguous) {
			return fmt.Errorf("rm: %q matches more than one image", ref)
		}
	}
	if strings.HasPrefix(ref, "img_") {
		return noImage(ref)
	}
	return noContainer(ref)
}

func rmImage(e *Env, st *store.Store, id string) error {
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := st.DeleteImage(id); err != nil {
		return err
	}
	if err := st.GC(); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "Removed: %s\n", id)
	return nil
}

func rmContainer(e *Env, st *store.Store, id string, force bool) error {
	c, err := st.GetContainer(id)
	if err != nil {
		return noContainer(id)
	}
	if running(st, c) {
		if !force {
			return fmt.Errorf("rm: container %s is running: stop it first or use rm -f", id)
		}
		if err := killWait(c); err != nil {
			return err
		}
	}
	if err := destroyContainer(st, c); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "Removed: %s\n", id)
	return nil
}

// destroyContainer removes a stopped container: what is left in its
// cgroup, the cgroup, its directory and record, and the layers only it
// kept alive.
func destroyContainer(st *store.Store, c *store.Container) error {
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if c.Cgroup != "" && cgroup.Exists(c.Cgroup) {
		cg, err := cgroup.Load(c.Cgroup)
		if err != nil {
			return err
		}
		// A process that escaped the kill (a straggling exec) would keep the
		// cgroup busy; the container is gone, so is it.
		if err := cg.Kill(); err != nil {
			return err
		}
		if err := cg.Delete(); err != nil {
			return err
		}
	}
	if err := teardownNet(st, c); err != nil {
		return err
	}
	if err := st.DeleteContainer(c.ID); err != nil {
		return err
	}
	return st.GC()
}

// killWait SIGKILLs the container's init and waits for it to be gone; the
// kernel then kills the rest of its pid namespace.
func killWait(c *store.Container) error {
	_ = syscall.Kill(c.Pid, syscall.SIGKILL)
	for i := 0; i < 500; i++ {
		if !container.Alive(c.Pid, c.StartTime) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("kill container %s: pid %d did not exit", c.ID, c.Pid)
}

package applets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bocker/bocker/layer"
	"github.com/bocker/bocker/store"
)

func init() {
	register(&Applet{Name: "commit", Help: "Commit a container to an image:", Usage: "<container_id> <image_id>", Order: 9, Run: commit})
}

// commit makes the container's image layers plus its upper directory, as
// one new layer, into an image. The upper directory holds only what the
// container changed, so nothing of the image is copied.
func commit(e *Env, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: bocker commit <container_id> <image_id>")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	id, err := st.ResolveContainer(args[0])
	if err != nil {
		return noContainer(args[0])
	}
	c, err := st.GetContainer(id)
	if err != nil {
		return noContainer(args[0])
	}
	target := args[1]
	if !store.ValidName(target) {
		return fmt.Errorf("commit: %q is not a valid image id", target)
	}
	tmp, err := st.TempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	lay := filepath.Join(tmp, "layer")
	if err := os.Mkdir(lay, 0o755); err != nil {
		return fmt.Errorf("create layer dir: %w", err)
	}
	diffID, err := layer.FromDir(filepath.Join(st.ContainerDir(id), "upper"), lay)
	if err != nil {
		return fmt.Errorf("commit %s: %w", id, err)
	}
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := st.CommitLayer(lay, diffID); err != nil {
		return err
	}
	_, err = st.GetImage(target)
	replaced := err == nil
	conf := c.Config
	conf.Created = time.Time{} // built now, not when its base was
	img := &store.Image{
		ID:      target,
		Source:  c.Source,
		Layers:  append(append([]string(nil), c.Layers...), diffID),
		Config:  conf,
		Created: time.Now().UTC(),
	}
	// One atomic write replaces the old record: a crash leaves the old
	// image or the new one.
	if err := st.PutImage(img); err != nil {
		return err
	}
	if err := st.GC(); err != nil {
		return err
	}
	if replaced {
		fmt.Fprintf(e.Stdout, "Removed: %s\n", target)
	}
	fmt.Fprintf(e.Stdout, "Created: %s\n", target)
	return nil
}

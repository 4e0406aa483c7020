package applets

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/bocker/bocker/layer"
	"github.com/bocker/bocker/store"
)

func init() {
	register(&Applet{Name: "init", Help: "Create an image from a directory:", Usage: "<directory>", Order: 1, Run: initImage})
	register(&Applet{Name: "images", Help: "List images:", Order: 4, Run: images})
}

func initImage(e *Env, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: bocker init <directory>")
	}
	dir := args[0]
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return &ScriptError{fmt.Sprintf("No directory named '%s' exists", dir)}
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	tmp, err := st.TempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	lay := tmp + "/layer"
	if err := os.Mkdir(lay, 0o755); err != nil {
		return fmt.Errorf("create layer dir: %w", err)
	}
	diffID, err := layer.FromDir(dir, lay)
	if err != nil {
		return fmt.Errorf("import %s: %w", dir, err)
	}
	unlock, err := st.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := st.CommitLayer(lay, diffID); err != nil {
		return err
	}
	img := &store.Image{ID: store.NewID("img_"), Source: dir, Layers: []string{diffID}, Created: time.Now().UTC()}
	if err := st.PutImage(img); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "Created: %s\n", img.ID)
	return nil
}

func images(e *Env, args []string) error {
	st, err := e.Store()
	if err != nil {
		return err
	}
	imgs, err := st.Images()
	if err != nil {
		return err
	}
	fmt.Fprint(e.Stdout, "IMAGE_ID\t\tSOURCE\n")
	for _, img := range imgs {
		fmt.Fprintf(e.Stdout, "%s\t\t%s\n", img.ID, img.Source)
	}
	return nil
}

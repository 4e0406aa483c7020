package applets

import (
	"encoding/json"
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
	o, rest, err := parseOpts("images", args, []optDef{{[]string{"format"}, optValue}})
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("usage: bocker images [--format json]")
	}
	format := o.vals["format"]
	if format != "" && format != "json" {
		return fmt.Errorf("images: --format %q: use json", format)
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	imgs, err := st.Images()
	if err != nil {
		return err
	}
	if format == "json" {
		// One object per line, as docker images --format json prints.
		for _, img := range imgs {
			var size int64
			for _, l := range img.Layers {
				n, err := st.LayerSize(l)
				if err != nil {
					return err
				}
				size += n
			}
			// As docker images: when it was built, which for a pulled or
			// loaded image is its config's time, not its arrival here.
			created := img.Created
			if !img.Config.Created.IsZero() {
				created = img.Config.Created
			}
			b, err := json.Marshal(imageRow{
				ID: img.ID, Source: img.Source, Created: created, Digest: img.Digest,
				Size: size, Layers: len(img.Layers),
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "%s\n", b)
		}
		return nil
	}
	fmt.Fprint(e.Stdout, "IMAGE_ID\t\tSOURCE\n")
	for _, img := range imgs {
		fmt.Fprintf(e.Stdout, "%s\t\t%s\n", img.ID, img.Source)
	}
	return nil
}

// imageRow is one line of images --format json. Size is bytes of file
// content in the image's layers, counted once per layer.
type imageRow struct {
	ID      string    `json:"id"`
	Source  string    `json:"source"`
	Created time.Time `json:"created"`
	Digest  string    `json:"digest,omitempty"`
	Size    int64     `json:"size"`
	Layers  int       `json:"layers"`
}

package applets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	reg "github.com/bocker/bocker/registry"
	"golang.org/x/term"
)

func init() {
	register(&Applet{Name: "save", Help: "Save an image to a docker-archive tar:", Usage: "<image_id> [-o <file>]", Order: 111, Run: save})
}

// save: bocker save <image_id> [-o FILE], bocker save -o FILE <image_id>
// or bocker save <image_id> FILE; stdout when no file is named.
func save(e *Env, args []string) error {
	var id, out string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o" || a == "--output":
			if i+1 == len(args) {
				return errors.New("save: -o needs a file name")
			}
			i++
			out = args[i]
		case id == "":
			id = a
		case out == "":
			out = a
		default:
			return errors.New("usage: bocker save <image_id> [-o <file>]")
		}
	}
	if id == "" {
		return errors.New("usage: bocker save <image_id> [-o <file>]")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	full, err := st.ResolveImage(id)
	if err != nil {
		return noImage(id)
	}
	img, err := st.GetImage(full)
	if err != nil {
		return noImage(id)
	}
	if out == "" || out == "-" {
		if f, ok := e.Stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return errors.New("save: refusing to write an archive to a terminal; use -o <file> or a pipe")
		}
		return reg.Save(st, img, e.Stdout)
	}
	// A temp file beside the target, renamed when complete: a failed
	// save leaves no partial archive and an old file unchanged.
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer os.Remove(f.Name())
	err = reg.Save(st, img, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

package applets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func init() {
	register(&Applet{Name: "logs", Help: "View logs from a container:", Usage: "<container_id>", Order: 8, Run: logs})
}

func logs(e *Env, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: bocker logs <container_id>")
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	id, err := st.ResolveContainer(args[0])
	if err != nil {
		return noContainer(args[0])
	}
	f, err := os.Open(filepath.Join(st.ContainerDir(id), "log"))
	if err != nil {
		return fmt.Errorf("open log of %s: %w", id, err)
	}
	defer f.Close()
	if _, err := io.Copy(e.Stdout, f); err != nil {
		return fmt.Errorf("read log of %s: %w", id, err)
	}
	return nil
}

package applets

import "errors"

func init() {
	register(&Applet{Name: "pull", Help: "Pull an image from Docker Hub:", Usage: "<name> <tag>", Order: 2, Run: pull})
}

// pull keeps its place in the script's help; the registry client that
// serves it is its own piece of work (issue: images from registries).
func pull(e *Env, args []string) error {
	return errors.New("pull: not available in this build yet; use bocker init <directory>")
}

// Package applets holds bocker's commands, one file each: every applet
// parses its arguments, calls the packages below and prints. Nothing
// below this package prints or reads flags.
package applets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/bocker/bocker/store"
)

// Applet is one command of the multicall binary.
type Applet struct {
	Name  string
	Help  string // the script's description line, e.g. "Create a container:"
	Usage string // arguments, e.g. "<image_id> <command>"
	Run   func(e *Env, args []string) error
	// Order places the applet in the help as the script listed it; only
	// the script's applets (Order < 100) are in the plain help, so its
	// text stays the script's. `bocker help --all` lists every applet.
	Order int
}

var registry = map[string]*Applet{}

func register(a *Applet) { registry[a.Name] = a }

// Env is what every applet gets: where to print and the store.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	root           string
	st             *store.Store
}

// Store opens BOCKER_ROOT on first use, so that help needs no root.
func (e *Env) Store() (*store.Store, error) {
	if e.st == nil {
		st, err := store.Open(e.root)
		if err != nil {
			return nil, err
		}
		e.st = st
	}
	return e.st, nil
}

// ScriptError is one of the bash script's messages: printed verbatim on
// stdout, exit status 1, because scripts capture them with $(...).
type ScriptError struct{ Msg string }

func (e *ScriptError) Error() string { return e.Msg }

// ExitError carries an exit status without a message, as when run or
// exec pass on the status of the container's command.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

func noImage(x string) error { return &ScriptError{fmt.Sprintf("No image named '%s' exists", x)} }
func noContainer(x string) error {
	return &ScriptError{fmt.Sprintf("No container named '%s' exists", x)}
}
func notRunning(x string) error {
	return &ScriptError{fmt.Sprintf("Container '%s' exists but is not running", x)}
}

// Main runs bocker with argv and returns the exit status.
func Main(argv []string) int {
	e := &Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin}
	name, args := splitArgv(argv)
	e.root = os.Getenv("BOCKER_ROOT")
	err := dispatch(e, name, args)
	return report(e, err)
}

func report(e *Env, err error) int {
	if err == nil {
		return 0
	}
	var se *ScriptError
	var ee *ExitError
	switch {
	case errors.As(err, &se):
		fmt.Fprintln(e.Stdout, se.Msg)
		return 1
	case errors.As(err, &ee):
		return ee.Code
	}
	fmt.Fprintf(e.Stderr, "bocker: %v\n", err)
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return 1
}

// splitArgv finds the applet, from argv[0] (bocker-run) or the first
// argument, and applies the global --NAME=value options that precede it.
func splitArgv(argv []string) (string, []string) {
	base := filepath.Base(argv[0])
	args := argv[1:]
	name := ""
	if a, ok := strings.CutPrefix(base, "bocker-"); ok {
		name = a
	}
	for len(args) > 0 && strings.HasPrefix(args[0], "--") && len(args[0]) > 2 {
		opt := args[0][2:]
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			v = "x" // the script's value for a bare --flag
		}
		os.Setenv("BOCKER_"+strings.ToUpper(k), v)
		args = args[1:]
	}
	if name == "" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	return name, args
}

func dispatch(e *Env, name string, args []string) error {
	if name == "" || name == "help" {
		printHelp(e.Stdout, len(args) > 0 && args[0] == "--all")
		return nil
	}
	if a, ok := registry[name]; ok {
		return a.Run(e, args)
	}
	if err := runPlugin(name, args); err != nil {
		return err
	}
	printHelp(e.Stdout, false)
	return &ExitError{Code: 1}
}

// runPlugin execs bocker-NAME from PATH, unless that is bocker itself (a
// link made by install-links), which would loop.
func runPlugin(name string, args []string) error {
	if strings.ContainsAny(name, "/") {
		return nil
	}
	p, err := exec.LookPath("bocker-" + name)
	if err != nil {
		return nil
	}
	self, _ := os.Executable()
	if sameFile(self, p) {
		return nil
	}
	if err := syscall.Exec(p, append([]string{p}, args...), os.Environ()); err != nil {
		return fmt.Errorf("run plugin %s: %w", p, err)
	}
	return nil
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}

func sortedApplets() []*Applet {
	var as []*Applet
	for _, a := range registry {
		if a.Help != "" {
			as = append(as, a)
		}
	}
	sort.Slice(as, func(i, j int) bool {
		if as[i].Order != as[j].Order {
			return as[i].Order < as[j].Order
		}
		return as[i].Name < as[j].Name
	})
	return as
}

// printHelp prints what the script's help printed: each applet's
// description, then the command indented by a tab, then a blank line.
func printHelp(w io.Writer, all bool) {
	for _, a := range sortedApplets() {
		if a.Order >= 100 && !all {
			continue
		}
		usage := "bocker " + a.Name
		if a.Usage != "" {
			usage += " " + a.Usage
		}
		fmt.Fprintf(w, "%s\n\t%s\n\n", a.Help, usage)
	}
}

func init() {
	register(&Applet{Name: "help", Help: "Display this message:", Order: 10})
	register(&Applet{Name: "install-links", Help: "Create bocker-<applet> links in a directory:", Usage: "<directory>", Order: 110, Run: installLinks})
}

func installLinks(e *Env, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: bocker install-links <directory>")
	}
	dir := args[0]
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return &ScriptError{fmt.Sprintf("No directory named '%s' exists", dir)}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find bocker's own path: %w", err)
	}
	for _, a := range sortedApplets() {
		if a.Name == "install-links" {
			continue
		}
		link := filepath.Join(dir, "bocker-"+a.Name)
		if fi, err := os.Lstat(link); err == nil {
			if fi.Mode()&os.ModeSymlink == 0 {
				return fmt.Errorf("install link %s: a file that is not a link is in the way", link)
			}
			if err := os.Remove(link); err != nil {
				return fmt.Errorf("replace link %s: %w", link, err)
			}
		}
		if err := os.Symlink(self, link); err != nil {
			return fmt.Errorf("install link %s: %w", link, err)
		}
	}
	return nil
}

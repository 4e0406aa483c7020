package applets

import (
	"fmt"
	"strings"
)

// Options before an applet's positional arguments, in Docker's forms:
// -d, -it (clustered short flags), -e K=V, -eK=V, --env K=V, --env=K=V.
// Parsing stops at the first argument that is not an option (the image
// or container id), so everything after it is the command, as in the
// script. The standard flag package cannot cluster -it or repeat -e.

type optKind int

const (
	optBool optKind = iota
	optValue
	optList
)

type optDef struct {
	names []string // the first is the key; one-letter names are short
	kind  optKind
}

type opts struct {
	bools map[string]bool
	vals  map[string]string
	lists map[string][]string
}

func (o *opts) has(k string) bool { _, ok := o.vals[k]; return ok }

func parseOpts(applet string, args []string, defs []optDef) (*opts, []string, error) {
	o := &opts{bools: map[string]bool{}, vals: map[string]string{}, lists: map[string][]string{}}
	find := func(name string) *optDef {
		for i := range defs {
			for _, n := range defs[i].names {
				if n == name {
					return &defs[i]
				}
			}
		}
		return nil
	}
	set := func(d *optDef, v string) {
		k := d.names[0]
		switch d.kind {
		case optBool:
			o.bools[k] = v != "false"
		case optValue:
			o.vals[k] = v
		case optList:
			o.lists[k] = append(o.lists[k], v)
		}
	}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		if strings.HasPrefix(a, "--") {
			name, val, hasVal := strings.Cut(a[2:], "=")
			d := find(name)
			if d == nil || len(name) == 1 {
				return nil, nil, fmt.Errorf("%s: unknown option %s", applet, a)
			}
			if d.kind == optBool {
				if hasVal && val != "true" && val != "false" {
					return nil, nil, fmt.Errorf("%s: option --%s takes no value", applet, name)
				}
				set(d, val)
				continue
			}
			if !hasVal {
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("%s: option --%s needs a value", applet, name)
				}
				i++
				val = args[i]
			}
			set(d, val)
			continue
		}
		// Short options: a cluster of flags, the last of which may take a
		// value, attached or as the next argument.
		for j := 1; j < len(a); j++ {
			name := a[j : j+1]
			d := find(name)
			if d == nil {
				return nil, nil, fmt.Errorf("%s: unknown option -%s", applet, name)
			}
			if d.kind == optBool {
				set(d, "")
				continue
			}
			val := strings.TrimPrefix(a[j+1:], "=")
			if j+1 == len(a) {
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("%s: option -%s needs a value", applet, name)
				}
				i++
				val = args[i]
			}
			set(d, val)
			break
		}
	}
	return o, args[i:], nil
}

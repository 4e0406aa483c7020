package applets

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bocker/bocker/container"
	"github.com/bocker/bocker/store"
)

func init() {
	register(&Applet{Name: "ps", Help: "List containers:", Order: 5, Run: ps})
}

// running tells whether a container's init still runs. A record that says
// running with its process gone is a bocker that died (kill -9): it is
// marked exited, under the lock, so every command agrees afterwards.
func running(st *store.Store, c *store.Container) bool {
	if c.State != store.StateRunning && c.State != store.StateCreated {
		return false
	}
	if container.Alive(c.Pid, c.StartTime) {
		return true
	}
	if c.State == store.StateCreated && c.Pid == 0 {
		// Still being set up by a live bocker? The record names no pid yet;
		// treat it as not running, but leave it for that bocker to finish.
		return false
	}
	unlock, err := st.Lock()
	if err != nil {
		return false
	}
	defer unlock()
	cur, err := st.GetContainer(c.ID)
	if err == nil && cur.Pid == c.Pid && cur.State == c.State {
		cur.State = store.StateExited
		cur.ExitCode = -1
		cur.Pid = 0
		_ = st.PutContainer(cur)
		*c = *cur
	}
	return false
}

func ps(e *Env, args []string) error {
	o, rest, err := parseOpts("ps", args, []optDef{{[]string{"format"}, optValue}, {[]string{"a", "all"}, optBool}})
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("usage: bocker ps [--format json|wide]")
	}
	format := o.vals["format"]
	if format != "" && format != "json" && format != "wide" {
		return fmt.Errorf("ps: --format %q: use json or wide", format)
	}
	st, err := e.Store()
	if err != nil {
		return err
	}
	cs, err := st.Containers()
	if err != nil {
		return err
	}
	switch format {
	case "json":
		// One object per line, as docker ps --format json prints.
		for _, c := range cs {
			running(st, c)
			b, err := json.Marshal(psRow{
				ID: c.ID, Name: c.Name, Image: c.Image, Source: c.Source, Command: c.Command,
				Created: c.Created, Status: status(c), Address: c.IP, Ports: c.Ports,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "%s\n", b)
		}
		return nil
	case "wide":
		fmt.Fprint(e.Stdout, "CONTAINER_ID\t\tNAME\tIMAGE\tSTATUS\tCREATED\tADDRESS\tPORTS\tCOMMAND\n")
		for _, c := range cs {
			running(st, c)
			fmt.Fprintf(e.Stdout, "%s\t\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, dash(c.Name), c.Image, status(c),
				c.Created.Local().Format(time.DateTime), dash(c.IP), dash(strings.Join(c.Ports, ",")), c.Command)
		}
		return nil
	}
	fmt.Fprint(e.Stdout, "CONTAINER_ID\t\tCOMMAND\n")
	for _, c := range cs {
		running(st, c)
		fmt.Fprintf(e.Stdout, "%s\t\t%s\n", c.ID, c.Command)
	}
	return nil
}

type psRow struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Image   string    `json:"image"`
	Source  string    `json:"source"`
	Command string    `json:"command"`
	Created time.Time `json:"created"`
	Status  string    `json:"status"`
	Address string    `json:"address,omitempty"`
	Ports   []string  `json:"ports,omitempty"`
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

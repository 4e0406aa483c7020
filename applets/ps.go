package applets

import (
	"fmt"

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
	st, err := e.Store()
	if err != nil {
		return err
	}
	cs, err := st.Containers()
	if err != nil {
		return err
	}
	fmt.Fprint(e.Stdout, "CONTAINER_ID\t\tCOMMAND\n")
	for _, c := range cs {
		running(st, c)
		fmt.Fprintf(e.Stdout, "%s\t\t%s\n", c.ID, c.Command)
	}
	return nil
}

package applets

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bocker/bocker/container"
	network "github.com/bocker/bocker/net"
	"github.com/bocker/bocker/store"
)

// netSettings is the bridge a container was first started on, kept in
// its directory so that a later start, the teardown after its exit and
// an rm after a crash all find the same bridge whatever the environment
// says then.
type netSettings struct {
	Bridge string `json:"bridge"`
	Subnet string `json:"subnet"`
}

const netSettingsFile = "network.json"

// envNetConfig is the bridge network from BOCKER_BRIDGE and BOCKER_SUBNET.
func envNetConfig() (*network.Config, error) {
	c, err := network.NewConfig(os.Getenv("BOCKER_BRIDGE"), os.Getenv("BOCKER_SUBNET"))
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	return c, nil
}

// envDNS is BOCKER_DNS, the resolvers a bridged container gets; nil
// means the host's, with loopback ones replaced.
func envDNS() ([]string, error) {
	v := os.Getenv("BOCKER_DNS")
	if v == "" {
		return nil, nil
	}
	return network.ParseDNS(v)
}

// parseNetwork checks --network and -p; with the bridge, also its
// settings and that the host ports are free, all before anything exists.
func (r *runRequest) parseNetwork(o *opts) error {
	r.network = "bridge"
	if v, ok := o.vals["network"]; ok {
		r.network = v
	}
	switch r.network {
	case "bridge":
	case "none", "host":
		if ps := o.lists["p"]; len(ps) > 0 {
			return fmt.Errorf("run: -p %s: publishing ports needs --network bridge", ps[0])
		}
		return nil
	default:
		return fmt.Errorf("run: --network %q: use bridge, none or host", r.network)
	}
	cfg, err := envNetConfig()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if _, err := envDNS(); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	var ports []network.Port
	for _, s := range o.lists["p"] {
		p, err := network.ParsePort(s)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		ports = append(ports, p)
		r.ports = append(r.ports, p.String())
	}
	if err := network.CheckPorts(cfg, "", ports, nil); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}

// containerAlive is the leases' test of a holder in this store: its
// record says so and its init still runs. Holders from other stores are
// judged by their veth alone.
func containerAlive(st *store.Store) func(string) bool {
	return func(id string) bool {
		c, err := st.GetContainer(id)
		return err == nil && container.Alive(c.Pid, c.StartTime)
	}
}

// containerResolv is the resolv.conf a container gets: the host's as it
// is, except on the bridge, whose containers cannot reach the host's
// loopback resolvers.
func containerResolv(mode string) []byte {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		b = nil
	}
	if mode != "bridge" {
		return b
	}
	dns, _ := envDNS()
	return []byte(network.ResolvConf(string(b), dns))
}

// containerNet is one launch's bridge attachment.
type containerNet struct {
	st       *store.Store
	id       string
	hostname string
	cfg      *network.Config
	ports    []network.Port
	att      *network.Attachment
}

// newContainerNet prepares the bridge for a launch; nil when the
// container is not on it.
func newContainerNet(st *store.Store, id, hostname string) (*containerNet, error) {
	c, err := st.GetContainer(id)
	if err != nil {
		return nil, err
	}
	if c.Network != "bridge" {
		return nil, nil
	}
	cfg, err := savedNetConfig(st, id, true)
	if err != nil {
		return nil, err
	}
	n := &containerNet{st: st, id: id, hostname: hostname, cfg: cfg}
	for _, s := range c.Ports {
		p, err := network.ParsePort(s)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		n.ports = append(n.ports, p)
	}
	return n, nil
}

// savedNetConfig reads the container's bridge settings; create writes
// them from the environment when it has none yet. Without create, a
// container that never had them gives nil.
//
// The file is written without fsync: only a crash of the whole host can
// tear it, and that reboot also empties /run, where the leases it leads
// to live. A torn file therefore counts as none.
func savedNetConfig(st *store.Store, id string, create bool) (*network.Config, error) {
	p := filepath.Join(st.ContainerDir(id), netSettingsFile)
	if cfg := readNetSettings(p); cfg != nil || !create {
		return cfg, nil
	}
	cfg, err := envNetConfig()
	if err != nil {
		return nil, err
	}
	ones, _ := cfg.Subnet.Mask.Size()
	b, err := json.Marshal(netSettings{Bridge: cfg.Bridge, Subnet: fmt.Sprintf("%s/%d", cfg.Gateway, ones)})
	if err != nil {
		return nil, fmt.Errorf("encode network settings: %w", err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("write network settings of %s: %w", id, err)
	}
	return cfg, nil
}

func readNetSettings(p string) *network.Config {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var s netSettings
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	cfg, err := network.NewConfig(s.Bridge, s.Subnet)
	if err != nil {
		return nil
	}
	return cfg
}

// prestart plugs the container in once its init's namespaces exist, and
// writes its /etc/hosts with the address it got. The file is rewritten in
// place: the container's bind mount of it keeps pointing at the inode.
func (n *containerNet) prestart(pid int) error {
	att, err := network.Setup(n.cfg, n.id, pid, n.ports, containerAlive(n.st))
	if err != nil {
		return err
	}
	n.att = att
	hosts := network.Hosts(n.hostname, att.IP)
	if err := os.WriteFile(filepath.Join(n.st.ContainerDir(n.id), "hosts"), []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	return nil
}

// ip is the leased address, for the record.
func (n *containerNet) ip() string {
	if n == nil || n.att == nil {
		return ""
	}
	return n.att.IP.String()
}

func (n *containerNet) teardown() error {
	if n == nil {
		return nil
	}
	return network.Teardown(n.cfg, n.id)
}

// release is teardown once the init was waited for: its namespace, and
// the veth with it, are already on their way out.
func (n *containerNet) release() error {
	if n == nil {
		return nil
	}
	return network.Release(n.cfg, n.id)
}

// teardownNet removes whatever of a stopped container's network is left,
// as after a crash of the bocker that ran it: its port rules and lease.
// Its init is gone, and with it the namespace whose deletion takes the
// veth along; deleting the veth here too would make every run --rm wait
// ~15 ms for the kernel.
func teardownNet(st *store.Store, c *store.Container) error {
	if c.Network != "bridge" {
		return nil
	}
	cfg, err := savedNetConfig(st, c.ID, false)
	if err != nil || cfg == nil {
		return err
	}
	return network.Release(cfg, c.ID)
}

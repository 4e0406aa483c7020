package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Every rule carries a comment that says whose it is, so teardown deletes
// exactly a container's rules and a second run never duplicates a
// bridge's:
//
//	bocker:base                     the jumps into the ports chain
//	bocker:bridge:<bridge> <subnet> the bridge's masquerade rules
//	bocker:port:<id>:<canonical -p> one published port
const (
	tagBase   = "bocker:base"
	tagBridge = "bocker:bridge:"
	tagPort   = "bocker:port:"
	portChain = "ports"
)

type nft struct {
	conn    *nftables.Conn
	table   *nftables.Table
	pending bool // changes queued for flush
}

// flush sends the queued changes, when there are any.
func (n *nft) flush() error {
	if !n.pending {
		return nil
	}
	n.pending = false
	return n.conn.Flush()
}

func openNft(c *Config) (*nft, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	return &nft{conn: conn, table: &nftables.Table{Name: c.Table, Family: nftables.TableFamilyIPv4}}, nil
}

func (n *nft) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: n.table}
}

func tagOf(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func tagged(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// rules lists a chain's rules; a table or chain not there yet has none.
func (n *nft) rules(chain string) ([]*nftables.Rule, error) {
	rs, err := n.conn.GetRules(n.table, n.chain(chain))
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list nftables chain %s %s: %w", n.table.Name, chain, err)
	}
	return rs, nil
}

// ensure creates the table, its chains and the bridge's masquerade rules
// when any is missing; it changes nothing that is already there.
func (n *nft) ensure(c *Config) error {
	pre, err := n.rules("prerouting")
	if err != nil {
		return err
	}
	post, err := n.rules("postrouting")
	if err != nil {
		return err
	}
	if !hasTag(pre, tagBase) {
		n.addBase()
		n.pending = true
	}
	if !hasTag(post, bridgeTag(c)) {
		n.addBridge(c)
		n.pending = true
	}
	if err := n.flush(); err != nil {
		return fmt.Errorf("set up nftables table %s: %w", n.table.Name, err)
	}
	return nil
}

// bridgeTag names the subnet too: a bridge given a second subnet needs
// that subnet's masquerade rules as well.
func bridgeTag(c *Config) string { return tagBridge + c.Bridge + " " + c.Subnet.String() }

func hasTag(rs []*nftables.Rule, tag string) bool {
	for _, r := range rs {
		if tagOf(r) == tag {
			return true
		}
	}
	return false
}

func (n *nft) addBase() {
	n.conn.AddTable(n.table)
	accept := nftables.ChainPolicyAccept
	ports := n.conn.AddChain(n.chain(portChain))
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"prerouting", nftables.ChainHookPrerouting}, {"output", nftables.ChainHookOutput}} {
		ch := n.conn.AddChain(&nftables.Chain{
			Name: h.name, Table: n.table, Type: nftables.ChainTypeNAT,
			Hooknum: h.hook, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
		})
		// Published ports catch packets to any of the host's addresses,
		// loopback included, from outside, from the host and from containers.
		n.conn.AddRule(&nftables.Rule{Table: n.table, Chain: ch, UserData: tagged(tagBase), Exprs: []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nativeU32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: ports.Name},
		}})
	}
	n.conn.AddChain(&nftables.Chain{
		Name: "postrouting", Table: n.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept,
	})
}

func nativeU32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

func matchOif(name string, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(name)},
	}
}

func matchSaddr(n *net.IPNet) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.IP(n.Mask).To4(), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: n.IP.To4()},
	}
}

// addBridge masquerades: the subnet going out of the host (outbound NAT);
// loopback sources DNATed into the bridge (127.0.0.1:port, which a
// container could not answer); and DNATed traffic from the subnet back
// into it (hairpin: the reply must come back through the host).
func (n *nft) addBridge(c *Config) {
	post := n.chain("postrouting")
	_, loop, _ := net.ParseCIDR("127.0.0.0/8")
	dnat := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: nativeU32(ipsDstNat), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
	for _, m := range [][]expr.Any{
		append(matchSaddr(c.Subnet), matchOif(c.Bridge, expr.CmpOpNeq)...),
		append(matchSaddr(loop), matchOif(c.Bridge, expr.CmpOpEq)...),
		append(append(matchSaddr(c.Subnet), matchOif(c.Bridge, expr.CmpOpEq)...), dnat...),
	} {
		n.conn.AddRule(&nftables.Rule{Table: n.table, Chain: post, UserData: tagged(bridgeTag(c)),
			Exprs: append(m, &expr.Masq{})})
	}
}

// ipsDstNat is the conntrack status bit of a destination-NATed connection.
const ipsDstNat = 1 << 5

func protoNum(p string) byte {
	if p == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func (n *nft) addPort(id string, p Port, ctr net.IP) {
	var ex []expr.Any
	if p.HostIP != nil {
		ex = append(ex,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.HostIP.To4()})
	}
	port := make([]byte, 2)
	binary.BigEndian.PutUint16(port, p.HostPort)
	ctrPort := make([]byte, 2)
	binary.BigEndian.PutUint16(ctrPort, p.CtrPort)
	ex = append(ex,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNum(p.Proto)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port},
		&expr.Immediate{Register: 1, Data: ctr.To4()},
		&expr.Immediate{Register: 2, Data: ctrPort},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	)
	n.conn.AddRule(&nftables.Rule{Table: n.table, Chain: n.chain(portChain),
		UserData: tagged(tagPort + id + ":" + p.String()), Exprs: ex})
	n.pending = true
}

// portRule is a published port read back from the ports chain.
type portRule struct {
	id   string
	port Port
	rule *nftables.Rule
}

func (n *nft) portRules() ([]portRule, error) {
	rs, err := n.rules(portChain)
	if err != nil {
		return nil, err
	}
	var out []portRule
	for _, r := range rs {
		rest, ok := strings.CutPrefix(tagOf(r), tagPort)
		if !ok {
			continue
		}
		id, spec, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		p, err := ParsePort(spec)
		if err != nil {
			continue
		}
		out = append(out, portRule{id: id, port: p, rule: r})
	}
	return out, nil
}

// deletePorts removes id's port rules; call Flush after.
func (n *nft) deletePorts(rules []portRule, id string) error {
	for _, r := range rules {
		if r.id == id {
			if err := n.conn.DelRule(r.rule); err != nil {
				return fmt.Errorf("delete port rule %s of %s: %w", r.port, id, err)
			}
			n.pending = true
		}
	}
	return nil
}

// dropBridge deletes the bridge's masquerade rules, and the table when
// nothing else of bocker's is left in it.
func (n *nft) dropBridge(c *Config) error {
	post, err := n.rules("postrouting")
	if err != nil {
		return err
	}
	others := false
	for _, r := range post {
		if strings.HasPrefix(tagOf(r), tagBridge+c.Bridge+" ") {
			if err := n.conn.DelRule(r); err != nil {
				return fmt.Errorf("delete masquerade rule of %s: %w", c.Bridge, err)
			}
		} else {
			others = true
		}
	}
	ports, err := n.portRules()
	if err != nil {
		return err
	}
	if !others && len(ports) == 0 && len(post) > 0 {
		n.conn.DelTable(n.table)
	}
	n.pending = n.pending || len(post) > 0
	if err := n.flush(); err != nil {
		return fmt.Errorf("remove %s from nftables table %s: %w", c.Bridge, c.Table, err)
	}
	return nil
}

// deleteTable drops the whole table; only tests that made their own use it.
func deleteTable(c *Config) error {
	n, err := openNft(c)
	if err != nil {
		return err
	}
	n.conn.DelTable(n.table)
	if err := n.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete nftables table %s: %w", c.Table, err)
	}
	return nil
}

package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors that callers branch on.
var (
	// ErrUnavailable: a lab cannot be built on this machine.
	ErrUnavailable = errors.New("netlab: unavailable")
	// ErrName: a prefix or home name is not 1 to 10 lower-case letters or
	// digits, or is taken.
	ErrName = errors.New("netlab: bad name")
	// ErrAddr: an internet address is not a free host address of
	// 198.18.0.0/24, or the internet subnet is full.
	ErrAddr = errors.New("netlab: bad address")
	// ErrClosed: the lab has been closed.
	ErrClosed = errors.New("netlab: lab closed")
	// ErrExists: namespaces of this prefix exist already (see Cleanup).
	ErrExists = errors.New("netlab: namespaces of this prefix exist")
)

// CmdError is an external command that failed: its arguments, what it
// wrote to stderr, and how it ended.
type CmdError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *CmdError) Error() string {
	return fmt.Sprintf("netlab: %s: %v: %s", strings.Join(e.Args, " "), e.Err, strings.TrimSpace(e.Stderr))
}

func (e *CmdError) Unwrap() error { return e.Err }

// cmdTimeout bounds every external command the package runs, on top of
// the caller's context.
const cmdTimeout = 15 * time.Second

// run runs name with args, feeding it stdin, and returns its stdout.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return "", &CmdError{Args: append([]string{name}, args...), Stderr: stderr.String(), Err: err}
	}
	return out.String(), nil
}

// The addresses of the lab.
var (
	internet    = netip.MustParsePrefix("198.18.0.0/24")
	internetIP  = netip.MustParseAddr("198.18.0.1")
	firstWAN    = 10  // a home router's WAN address is 198.18.0.x, x from firstWAN up
	maxHomes    = 254 // LANs 198.19.1.0/24 to 198.19.254.0/24
	nameRE      = regexp.MustCompile(`^[a-z0-9]{1,10}$`)
	probeNumber atomic.Int64
)

// NAT is the kind of address translation a home router does.
type NAT int

const (
	// Cone is nft masquerade: Linux keeps the source port where it is
	// free, so one local socket has one public port whatever it sends to
	// (endpoint-independent mapping); inbound packets pass only as replies
	// to what the home sent (address- and port-dependent filtering).
	Cone NAT = iota + 1
	// Symmetric is nft masquerade fully-random: a random public port for
	// every new flow, so each destination sees another port.
	Symmetric
)

func (n NAT) String() string {
	switch n {
	case Cone:
		return "cone"
	case Symmetric:
		return "symmetric"
	}
	return fmt.Sprintf("NAT(%d)", int(n))
}

// Node is one namespace of a lab.
type Node struct {
	Name string // the lab's name for it: "inet", a home's name, or a home's name and "r" for its router
	NS   string // the network namespace
	IP   string // the node's own address
	// PublicIP is the address the internet sees the node's traffic come
	// from: the router's WAN address for a home, IP for the internet node
	// and for a router.
	PublicIP string
	NAT      NAT   // a home's NAT kind; 0 for the internet node and routers
	Router   *Node // a home's router; nil for the internet node and routers
}

// Command is exec.CommandContext running name with args in the node's
// namespace (ip netns exec NS name args...). The process that starts is
// name itself: ip execs it.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}

// Lab is an emulated internet of network namespaces. Its methods are safe
// for concurrent use.
type Lab struct {
	prefix string

	mu     sync.Mutex
	inet   *Node
	homes  []*Node
	used   map[netip.Addr]bool // internet addresses in use
	made   []string            // namespaces made, in order
	closed bool
}

// New builds the internet: namespace <prefix>-inet holding a bridge br0
// with 198.18.0.1/24. prefix is 1 to 10 lower-case letters or digits; no
// namespace of that prefix may exist. On error, whatever New made is
// removed.
func New(ctx context.Context, prefix string) (*Lab, error) {
	if !nameRE.MatchString(prefix) {
		return nil, fmt.Errorf("%w: prefix %q", ErrName, prefix)
	}
	have, err := namespaces(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if len(have) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrExists, strings.Join(have, " "))
	}
	l := &Lab{prefix: prefix, used: map[netip.Addr]bool{internetIP: true}}
	ns := prefix + "-inet"
	if err := l.addNS(ctx, ns); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	steps := [][]string{
		{"ip", "-n", ns, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", ns, "addr", "add", internetIP.String() + "/24", "dev", "br0"},
		{"ip", "-n", ns, "link", "set", "br0", "up"},
	}
	if err := runAll(ctx, steps); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	l.inet = &Node{Name: "inet", NS: ns, IP: internetIP.String(), PublicIP: internetIP.String()}
	return l, nil
}

// Prefix is the prefix of the lab's namespaces.
func (l *Lab) Prefix() string { return l.prefix }

// Internet is the internet namespace's node; its first address is
// 198.18.0.1.
func (l *Lab) Internet() *Node { return l.inet }

// Homes are the homes added so far, in order.
func (l *Lab) Homes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.homes)
}

// AddInternetAddr adds another internet address (e.g. 198.18.0.2) to the
// internet namespace's bridge, for a second server there. It must be a
// free host address of 198.18.0.0/24.
func (l *Lab) AddInternetAddr(ip string) error {
	return l.AddInternetAddrContext(context.Background(), ip)
}

// AddInternetAddrContext is AddInternetAddr with a context that bounds
// its command.
func (l *Lab) AddInternetAddrContext(ctx context.Context, ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() || !internet.Contains(a) || a.As4()[3] == 0 || a.As4()[3] == 255 {
		return fmt.Errorf("%w: %q is not a host address of %s", ErrAddr, ip, internet)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.used[a] {
		return fmt.Errorf("%w: %s is in use", ErrAddr, a)
	}
	if _, err := run(ctx, "", "ip", "-n", l.inet.NS, "addr", "add", a.String()+"/24", "dev", "br0"); err != nil {
		return err
	}
	l.used[a] = true
	return nil
}

// AddHome adds a home network: a router namespace <prefix>-<name>r whose
// WAN side sits on the internet bridge at the next free 198.18.0.x (x
// from 10 up), translating with nat, and a host namespace <prefix>-<name>
// on the LAN 198.19.<i>.0/24 of the i-th home (router .1, host .2,
// default route via the router). It returns the host's node. On error,
// the home's namespaces are removed (or left to Close). Each command it
// runs is bounded by a timeout; AddHomeContext bounds them by a context
// as well.
func (l *Lab) AddHome(name string, nat NAT) (*Node, error) {
	return l.AddHomeContext(context.Background(), name, nat)
}

// AddHomeContext is AddHome with a context that bounds its commands.
func (l *Lab) AddHomeContext(ctx context.Context, name string, nat NAT) (*Node, error) {
	if !nameRE.MatchString(name) || name == "inet" {
		return nil, fmt.Errorf("%w: home %q", ErrName, name)
	}
	if nat != Cone && nat != Symmetric {
		return nil, fmt.Errorf("netlab: home %q: unknown %v", name, nat)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	for _, h := range l.homes {
		// "<name>r" is a router's namespace: a home named "ar" would
		// share it with the router of a home named "a".
		if h.Name == name || h.Name+"r" == name || h.Name == name+"r" {
			return nil, fmt.Errorf("%w: home %q clashes with home %q", ErrName, name, h.Name)
		}
	}
	i := len(l.homes) + 1
	if i > maxHomes {
		return nil, fmt.Errorf("%w: no LAN left for home %q", ErrAddr, name)
	}
	var wan netip.Addr
	for x := firstWAN; x < 255; x++ {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(x)})
		if !l.used[a] {
			wan = a
			break
		}
	}
	if !wan.IsValid() {
		return nil, fmt.Errorf("%w: no internet address left for home %q", ErrAddr, name)
	}
	lanRouter := netip.AddrFrom4([4]byte{198, 19, byte(i), 1})
	lanHost := netip.AddrFrom4([4]byte{198, 19, byte(i), 2})
	rns, hns := l.prefix+"-"+name+"r", l.prefix+"-"+name
	port := fmt.Sprintf("h%d", i) // the router's port on the internet bridge

	fail := func(err error) (*Node, error) {
		for _, ns := range []string{hns, rns} {
			if !slices.Contains(l.made, ns) {
				continue
			}
			if derr := delNS(ns); derr != nil {
				err = errors.Join(err, derr)
				continue
			}
			l.made = slices.DeleteFunc(l.made, func(s string) bool { return s == ns })
		}
		return nil, err
	}
	if err := l.addNS(ctx, rns); err != nil {
		return fail(err)
	}
	if err := l.addNS(ctx, hns); err != nil {
		return fail(err)
	}
	inet := l.inet.NS
	steps := [][]string{
		// The veth pairs are made inside the namespaces, so that no
		// interface ever appears in the host's own namespace.
		{"ip", "-n", inet, "link", "add", port, "type", "veth", "peer", "name", "wan", "netns", rns},
		{"ip", "-n", inet, "link", "set", port, "master", "br0"},
		{"ip", "-n", inet, "link", "set", port, "up"},
		{"ip", "-n", rns, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", hns},
		{"ip", "-n", rns, "addr", "add", wan.String() + "/24", "dev", "wan"},
		{"ip", "-n", rns, "addr", "add", lanRouter.String() + "/24", "dev", "lan"},
		{"ip", "-n", rns, "link", "set", "wan", "up"},
		{"ip", "-n", rns, "link", "set", "lan", "up"},
		{"ip", "-n", hns, "addr", "add", lanHost.String() + "/24", "dev", "eth0"},
		{"ip", "-n", hns, "link", "set", "eth0", "up"},
		{"ip", "-n", hns, "route", "add", "default", "via", lanRouter.String()},
		{"ip", "netns", "exec", rns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	if err := runAll(ctx, steps); err != nil {
		return fail(err)
	}
	if _, err := run(ctx, Ruleset(nat), "ip", "netns", "exec", rns, "nft", "-f", "-"); err != nil {
		return fail(err)
	}
	l.used[wan] = true
	router := &Node{Name: name + "r", NS: rns, IP: wan.String(), PublicIP: wan.String()}
	host := &Node{Name: name, NS: hns, IP: lanHost.String(), PublicIP: wan.String(), NAT: nat, Router: router}
	l.homes = append(l.homes, host)
	return host, nil
}

// Ruleset is the nftables ruleset of a home router with the given NAT:
// masquerade out of "wan"; forward from "lan" to "wan" and replies back,
// nothing else; drop whatever arrives at "wan" unsolicited, except ping.
func Ruleset(nat NAT) string {
	masq := "masquerade"
	if nat == Symmetric {
		masq = "masquerade fully-random"
	}
	return `table ip netlab {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" ` + masq + `
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" accept
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" icmp type echo-request accept
		iifname "wan" drop
	}
}
`
}

// addNS makes namespace ns with its loopback up and records it.
func (l *Lab) addNS(ctx context.Context, ns string) error {
	if _, err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return err
	}
	l.made = append(l.made, ns)
	_, err := run(ctx, "", "ip", "-n", ns, "link", "set", "lo", "up")
	return err
}

func runAll(ctx context.Context, steps [][]string) error {
	for _, s := range steps {
		if _, err := run(ctx, "", s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// Close deletes every namespace the lab made, and with them their veths
// and nftables tables. It is idempotent, and safe after New or AddHome
// failed part-way. Processes still running in a namespace are the
// caller's to end; the namespace goes when the last of them exits.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	var errs []error
	for len(l.made) > 0 {
		ns := l.made[len(l.made)-1]
		if err := delNS(ns); err != nil {
			errs = append(errs, err)
		}
		l.made = l.made[:len(l.made)-1]
	}
	return errors.Join(errs...)
}

// delNS deletes namespace ns; one that is already gone is no error.
func delNS(ns string) error {
	if _, err := os.Stat("/run/netns/" + ns); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	_, err := run(context.Background(), "", "ip", "netns", "del", ns)
	return err
}

// namespaces lists the namespaces that a lab of this prefix would make:
// <prefix>-inet and <prefix>-<name>.
func namespaces(ctx context.Context, prefix string) ([]string, error) {
	out, err := run(ctx, "", "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var found []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			found = append(found, f[0])
		}
	}
	slices.Sort(found)
	return found, nil
}

// Namespaces lists the namespaces of this prefix that exist now.
func Namespaces(prefix string) ([]string, error) {
	if !nameRE.MatchString(prefix) {
		return nil, fmt.Errorf("%w: prefix %q", ErrName, prefix)
	}
	return namespaces(context.Background(), prefix)
}

// Cleanup deletes the namespaces of this prefix that a run which crashed
// left behind.
func Cleanup(prefix string) error {
	have, err := Namespaces(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range have {
		if err := delNS(ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Available reports why a lab cannot be built here (not root, no ip, nft
// or sysctl, namespaces or a masquerading nftables table not creatable),
// as an error matching ErrUnavailable, or nil.
func Available() error {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Errorf("%w: not root (euid %d)", ErrUnavailable, euid)
	}
	for _, tool := range []string{"ip", "nft", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*cmdTimeout)
	defer cancel()
	// No dash in the name: no Cleanup prefix matches it.
	ns := fmt.Sprintf("netlabprobe%dn%d", os.Getpid(), probeNumber.Add(1))
	if _, err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("%w: cannot make a network namespace: %v", ErrUnavailable, err)
	}
	defer delNS(ns)
	if _, err := run(ctx, Ruleset(Symmetric), "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("%w: cannot load a NAT ruleset: %v", ErrUnavailable, err)
	}
	return nil
}

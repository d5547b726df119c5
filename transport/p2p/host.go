package p2p

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
	relayclient "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/rookery-ml/rookery/transport"
)

// Protocol is the libp2p protocol on which a Rookery node serves its
// gRPC services (a provider the Provider service, a seed node the Seed
// service): one stream carries one gRPC connection.
const Protocol protocol.ID = "/rookery/grpc/1.0.0"

// DefaultListen are the addresses a host listens on when Config.Listen
// is empty: TCP and QUIC on every interface, on ports the system picks.
var DefaultListen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}

// DefaultDirectWait is how long a dial waits, once connected through a
// relay, for hole punching to give a direct connection before it settles
// for the relay (Config.DirectWait).
const DefaultDirectWait = 5 * time.Second

// Path kinds, as Host.Path reports them.
const (
	PathDirect  = "direct"
	PathRelayed = "relayed"
)

var (
	// ErrAddress marks an address that is not a peer's: it must end in
	// /p2p/<peer ID>.
	ErrAddress = errors.New("p2p: not a peer address")
	// ErrKey marks an identity key of the wrong size.
	ErrKey = errors.New("p2p: identity key must be an ed25519 private key")
	// ErrUnreachable marks a peer that no address, direct or relayed,
	// reached.
	ErrUnreachable = errors.New("p2p: peer unreachable")
)

// Config configures a Host.
type Config struct {
	// Key is the node's ed25519 identity key; its public half is the
	// node's peer ID. A provider uses its provider identity key, so that
	// its peer ID and the key that signs its registrations are one.
	Key ed25519.PrivateKey
	// Listen are multiaddrs to listen on (default DefaultListen). A node
	// behind NAT listens too: hole punching dials from its listening
	// ports.
	Listen []string
	// Seeds are the seed nodes' multiaddrs, each ending in /p2p/<ID>. A
	// node connects to all of them at start; a provider (Reserve) holds
	// a relay slot on each while it is not known to be reachable, and a
	// dial to a peer that is not connected goes through every seed's
	// relay as well as the peer's known addresses.
	Seeds []string
	// Seed makes the host a seed node: publicly reachable by
	// configuration, a circuit-relay (v2) with Relay's limits, and an
	// AutoNAT server that tells other nodes whether they are reachable.
	Seed bool
	// Relay bounds a seed node's relay (default DefaultRelay).
	Relay *relayv2.Resources
	// Reserve makes the host reserve a relay slot on every seed while
	// AutoNAT has not found it reachable (providers).
	Reserve bool
	// NoHolePunch turns hole punching (DCUtR) off, so that a peer
	// behind NAT is reached through a relay only.
	NoHolePunch bool
	// DirectWait is how long a dial waits for a direct connection once
	// connected through a relay (default DefaultDirectWait; < 0: not at
	// all).
	DirectWait time.Duration
	// PublicNets are networks to take for public internet addresses
	// (TreatAsPublic), for emulated internets.
	PublicNets []string
	// Logger receives connection and reachability events (default
	// slog.Default()).
	Logger *slog.Logger
}

// DefaultRelay are a seed node's relay limits: at most 128 reservations
// (8 from one IP address) and 16 relayed connections per peer, each
// lasting at most a day. A relayed connection carries training traffic,
// so its bytes are not limited (libp2p's default of 128 KiB would cut a
// session off in its first step); its buffers are 64 KiB.
func DefaultRelay() relayv2.Resources {
	r := relayv2.DefaultResources()
	r.Limit = nil
	r.BufferSize = 64 << 10
	r.ReservationTTL = time.Hour
	return r
}

// Host is a libp2p node that carries Rookery's gRPC connections: the
// listener a provider or seed node serves on (Listen) and the dialer a
// requester, provider or seed node dials with (DialContext, given to
// transport.WithDialer). Connections are encrypted and authenticated by
// libp2p (Noise or TLS 1.3) with the nodes' identity keys, so no
// certificate authority is needed.
type Host struct {
	h     host.Host
	cfg   Config
	seeds []peer.AddrInfo
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	paths map[peer.ID]string // the path of the last stream opened to each peer
	// punchFailed is when a wait for a direct connection to each peer
	// last ended without one.
	punchFailed map[peer.ID]time.Time
	reach       network.Reachability
	reserved    map[peer.ID]time.Time // relay slots held, by seed, until when
}

// New starts a host. It returns once listening; connecting to the seeds
// and reserving relay slots go on in the background until Close.
func New(cfg Config) (*Host, error) {
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, ErrKey
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	for _, n := range cfg.PublicNets {
		if err := TreatAsPublic(n); err != nil {
			return nil, err
		}
	}
	seeds, err := ParseAddrInfos(cfg.Seeds)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DirectWait == 0 {
		cfg.DirectWait = DefaultDirectWait
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = DefaultListen
	}
	opts := []libp2p.Option{
		libp2p.Identity(sk),
		libp2p.ListenAddrStrings(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.UserAgent("rookery"),
		libp2p.DisableMetrics(),
		libp2p.EnableRelay(),
	}
	if cfg.Seed {
		res := DefaultRelay()
		if cfg.Relay != nil {
			res = *cfg.Relay
		}
		opts = append(opts,
			libp2p.ForceReachabilityPublic(),
			libp2p.EnableNATService(),
			libp2p.EnableRelayService(relayv2.WithResources(res)))
	} else if !cfg.NoHolePunch {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: starting the host: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Host{h: h, cfg: cfg, seeds: seeds, log: cfg.Logger.With("peer", h.ID().String()),
		ctx: ctx, cancel: cancel, paths: map[peer.ID]string{}, reserved: map[peer.ID]time.Time{},
		punchFailed: map[peer.ID]time.Time{}}
	sub, err := h.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		_ = h.Close()
		cancel()
		return nil, fmt.Errorf("p2p: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				r := e.(event.EvtLocalReachabilityChanged).Reachability
				n.mu.Lock()
				n.reach = r
				n.mu.Unlock()
				n.log.Info("p2p: reachability", "reachability", r.String())
			}
		}
	}()
	for _, s := range seeds {
		h.ConnManager().Protect(s.ID, "rookery-seed")
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.keepSeed(s)
		}()
	}
	return n, nil
}

// ID is the host's peer ID.
func (n *Host) ID() peer.ID { return n.h.ID() }

// Address is the host's Rookery address, /p2p/<peer ID>: what a
// provider registers with seed nodes and requesters dial.
func (n *Host) Address() string { return "/p2p/" + n.h.ID().String() }

// Addrs are the multiaddrs the host can be dialled at, each ending in
// /p2p/<peer ID> (for a seed node, what providers and requesters are
// given as -seed).
func (n *Host) Addrs() []string {
	var out []string
	for _, a := range n.h.Addrs() {
		out = append(out, a.String()+"/p2p/"+n.h.ID().String())
	}
	return out
}

// LibP2P is the underlying libp2p host.
func (n *Host) LibP2P() host.Host { return n.h }

// Reachability is what AutoNAT has found: public, private or unknown.
func (n *Host) Reachability() network.Reachability {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reach
}

// Reserved are the seeds on which the host holds a relay slot now.
func (n *Host) Reserved() []peer.ID {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	var out []peer.ID
	for id, until := range n.reserved {
		if until.After(now) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Listen returns the listener that accepts Rookery's gRPC connections
// (Protocol) on this host: give it to transport.Server.Serve or
// seednode.Registry.Serve.
func (n *Host) Listen() (net.Listener, error) {
	l, err := gostream.Listen(n.h, Protocol)
	if err != nil {
		return nil, err
	}
	return listener{l}, nil
}

// Close stops the host and its background work.
func (n *Host) Close() error {
	n.cancel()
	err := n.h.Close()
	n.wg.Wait()
	return err
}

// keepSeed connects to a seed and, for a host that reserves, holds a
// relay slot there while the host is not known to be reachable, renewing
// it before it expires, until Close. Failures are retried after a delay
// that doubles from one second up to half a minute.
func (n *Host) keepSeed(s peer.AddrInfo) {
	retry := time.Second
	for {
		next := retry
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		err := n.h.Connect(ctx, s)
		if err == nil && n.cfg.Reserve && n.Reachability() != network.ReachabilityPublic {
			var r *relayclient.Reservation
			r, err = relayclient.Reserve(ctx, n.h, s)
			if err == nil {
				n.mu.Lock()
				_, had := n.reserved[s.ID]
				n.reserved[s.ID] = r.Expiration
				n.mu.Unlock()
				if !had {
					n.log.Info("p2p: relay slot reserved", "seed", s.ID.String(), "until", r.Expiration.Format(time.RFC3339))
				}
				next = max(time.Until(r.Expiration)/2, time.Second)
				retry = time.Second
			}
		} else if err == nil {
			next = 30 * time.Second // check the connection and reachability again later
			retry = time.Second
		}
		cancel()
		if err != nil {
			n.mu.Lock()
			delete(n.reserved, s.ID)
			n.mu.Unlock()
			if n.ctx.Err() == nil {
				n.log.Warn("p2p: seed", "seed", s.ID.String(), "err", err, "retry_in", retry)
			}
			retry = min(2*retry, 30*time.Second)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// ParseAddr splits a Rookery peer address, /p2p/<ID> or a multiaddr
// ending in it, into the peer ID and the transport address before it
// (nil for a bare /p2p/<ID>).
func ParseAddr(addr string) (peer.ID, ma.Multiaddr, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %q: %v", ErrAddress, addr, err)
	}
	transport, id := peer.SplitAddr(m)
	if id == "" {
		return "", nil, fmt.Errorf("%w: %q does not end in /p2p/<peer ID>", ErrAddress, addr)
	}
	return id, transport, nil
}

// IsAddr reports whether addr is a peer address (ParseAddr would take
// it), as against a host:port of the TCP transport.
func IsAddr(addr string) bool { return strings.HasPrefix(addr, "/") }

// ParseAddrInfos parses multiaddrs ending in /p2p/<ID>, merging those of
// one peer.
func ParseAddrInfos(addrs []string) ([]peer.AddrInfo, error) {
	var ms []ma.Multiaddr
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrAddress, a, err)
		}
		ms = append(ms, m)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(ms...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAddress, err)
	}
	return infos, nil
}

// DialContext opens a gRPC connection's stream to the peer at addr
// (/p2p/<ID>, optionally after its transport address). A peer not yet
// connected is dialled at its known addresses and through the relay of
// every seed. When the connection is relayed, it waits up to
// Config.DirectWait for hole punching to give a direct one, which the
// stream then takes; the path the stream took is kept for Path. Give it
// to transport.WithDialer.
func (n *Host) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	id, direct, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if id == n.h.ID() {
		return nil, fmt.Errorf("%w: %s is this host", ErrAddress, addr)
	}
	fresh := false
	var ai peer.AddrInfo // how the peer was reached, when this dial connected
	if n.h.Network().Connectedness(id) != network.Connected {
		ai = n.addrInfo(id, direct)
		if err := n.h.Connect(ctx, ai); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, id, err)
		}
		fresh = true
	}
	if n.cfg.DirectWait > 0 && !n.cfg.NoHolePunch && !n.hasDirect(id) && (fresh || !n.punchFailedLately(id)) {
		n.upgrade(ctx, id, ai, fresh)
	}
	s, err := n.h.NewStream(network.WithAllowLimitedConn(ctx, "rookery"), id, Protocol)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, id, err)
	}
	path := PathDirect
	if isRelayed(s.Conn()) {
		path = PathRelayed
	}
	n.mu.Lock()
	old, had := n.paths[id]
	n.paths[id] = path
	n.mu.Unlock()
	if !had || old != path {
		n.log.Info("p2p: connected", "to", id.String(), "path", path, "remote", s.Conn().RemoteMultiaddr().String())
	}
	return &streamConn{Stream: s, path: path}, nil
}

// addrInfo is where to dial peer id: at direct when given, at the
// seeds' own addresses when it is a seed, and through every other
// seed's relay.
func (n *Host) addrInfo(id peer.ID, direct ma.Multiaddr) peer.AddrInfo {
	ai := peer.AddrInfo{ID: id}
	if direct != nil {
		ai.Addrs = append(ai.Addrs, direct)
	}
	for _, s := range n.seeds {
		if s.ID == id {
			ai.Addrs = append(ai.Addrs, s.Addrs...)
			continue
		}
		for _, sa := range s.Addrs {
			c, err := ma.NewMultiaddr(sa.String() + "/p2p/" + s.ID.String() + "/p2p-circuit")
			if err == nil {
				ai.Addrs = append(ai.Addrs, c)
			}
		}
	}
	return ai
}

// DialOptions are the options with which transport.Dial,
// transport.Connect, seednode.Find, seednode.Lease and
// rookery.WithSeedNode reach peers through this host: its dialer, and
// its identity key as the requester key that binds leases (a provider
// checks that a key-bound lease comes over a connection from that key).
func (n *Host) DialOptions() []transport.DialOption {
	return []transport.DialOption{transport.WithDialer(n.DialContext), transport.WithRequesterKey(n.cfg.Key)}
}

// Path is how the last connection this host opened to the peer at addr
// went: PathDirect, PathRelayed, or "" before any.
func (n *Host) Path(addr string) string {
	id, _, err := ParseAddr(addr)
	if err != nil {
		return ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paths[id]
}

func (n *Host) hasDirect(id peer.ID) bool {
	for _, c := range n.h.Network().ConnsToPeer(id) {
		if !isRelayed(c) {
			return true
		}
	}
	return false
}

// upgrade waits, up to Config.DirectWait, for a direct connection to id
// beside the relayed one. A provider that is reachable after all (no
// NAT, or a NAT that forwards its port) is dialled at the addresses it
// told over the relayed connection; one behind NAT hole-punches (DCUtR),
// which it starts itself when a relayed connection comes in, but only
// once it knows a public address of its own. When this host's fresh
// connection brought no direct one, it connects to the peer again
// through the relay, once, as soon as the peer can hole-punch, or after
// three fifths of the wait: that gives a provider that was not ready at
// the first connection, and one whose attempts failed, another try
// within the same wait. A wait that ends without a direct connection is
// remembered for a minute, so that later dials to the peer over the
// same connection do not wait again.
func (n *Host) upgrade(ctx context.Context, id peer.ID, ai peer.AddrInfo, fresh bool) {
	end := time.Now().Add(n.cfg.DirectWait)
	for attempt := 0; ; attempt++ {
		// The first wait leaves two fifths of the time for a second.
		until := end
		if fresh && attempt == 0 {
			until = time.Now().Add(n.cfg.DirectWait * 3 / 5)
		}
		wctx, cancel := context.WithDeadline(ctx, until)
		n.identified(wctx, id)
		ready := n.punchReady(id)
		go n.dialDirect(wctx, id)
		for wctx.Err() == nil && !n.hasDirect(id) && (ready || !n.punchReady(id)) {
			select {
			case <-wctx.Done():
			case <-time.After(25 * time.Millisecond):
			}
		}
		cancel()
		if n.hasDirect(id) {
			return
		}
		if !fresh || attempt > 0 || !n.punchReady(id) || ctx.Err() != nil || time.Until(end) <= 0 {
			n.mu.Lock()
			n.punchFailed[id] = time.Now()
			n.mu.Unlock()
			return
		}
		// The peer can hole-punch now, but could not when this host's
		// relayed connection came, or its attempts failed (they are
		// timed by round trips, which a busy machine upsets): come again
		// through the relay, once, for a new attempt.
		n.log.Info("p2p: no direct connection yet; connecting again through the relay for another hole punch", "to", id.String(), "peer_was_ready", ready)
		for _, c := range n.h.Network().ConnsToPeer(id) {
			if isRelayed(c) {
				_ = c.Close()
			}
		}
		if err := n.h.Connect(ctx, ai); err != nil {
			return // NewStream says what is wrong
		}
	}
}

// punchFailedLately reports whether a wait for a direct connection to id
// ended without one in the last minute.
func (n *Host) punchFailedLately(id peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.punchFailed[id]
	return ok && time.Since(t) < time.Minute
}

// punchReady reports whether the peer offers hole punching (DCUtR), as
// identify last told: a node offers it once it knows a public address
// of its own.
func (n *Host) punchReady(id peer.ID) bool {
	protos, err := n.h.Peerstore().SupportsProtocols(id, holepunch.Protocol)
	return err == nil && len(protos) > 0
}

// identified waits until identify has run on every connection to id, or
// ctx ends.
func (n *Host) identified(ctx context.Context, id peer.ID) {
	ids, ok := n.h.(interface{ IDService() identify.IDService })
	if !ok {
		return
	}
	for _, c := range n.h.Network().ConnsToPeer(id) {
		select {
		case <-ids.IDService().IdentifyWait(c):
		case <-ctx.Done():
			return
		}
	}
}

// dialDirect dials id at the direct addresses the host has learnt for it
// (identify, over the relayed connection), once some are known, until ctx
// ends.
func (n *Host) dialDirect(ctx context.Context, id peer.ID) {
	for ctx.Err() == nil {
		if slices.ContainsFunc(n.h.Peerstore().Addrs(id), func(a ma.Multiaddr) bool { return !isRelayAddr(a) }) {
			_ = n.h.Connect(network.WithForceDirectDial(ctx, "rookery"), peer.AddrInfo{ID: id})
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func isRelayed(c network.Conn) bool { return isRelayAddr(c.RemoteMultiaddr()) }

func isRelayAddr(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// streamConn is a libp2p stream as a net.Conn, as gostream's listener
// gives them on the other side.
type streamConn struct {
	network.Stream
	path string
}

// Path is PathDirect or PathRelayed, as the stream was opened: what
// transport.Client.Path reports.
func (c *streamConn) Path() string { return c.path }

func (c *streamConn) LocalAddr() net.Addr  { return peerAddr(c.Stream.Conn().LocalPeer()) }
func (c *streamConn) RemoteAddr() net.Addr { return peerAddr(c.Stream.Conn().RemotePeer()) }

// Close closes the stream both ways, as the gRPC connection it carries
// is done with it.
func (c *streamConn) Close() error { return c.Stream.Close() }

// peerAddr is a peer ID as a net.Addr, with gostream's network name.
type peerAddr peer.ID

func (a peerAddr) Network() string { return gostream.Network }
func (a peerAddr) String() string  { return peer.ID(a).String() }

// IdentityKey is the ed25519 key the peer authenticated the connection
// with (nil for a peer of another key type): a provider checks that a
// lease bound to a requester key comes over a connection from that key.
func (a peerAddr) IdentityKey() ed25519.PublicKey {
	pub, err := peer.ID(a).ExtractPublicKey()
	if err != nil || pub.Type() != crypto.Ed25519 {
		return nil
	}
	raw, err := pub.Raw()
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil
	}
	return ed25519.PublicKey(raw)
}

// listener is gostream's listener whose connections name their remote
// peer by a peerAddr.
type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		// gostream names the remote peer by its ID; a name that is not
		// one (never seen) drops that connection, not the listener.
		if id, err := peer.Decode(c.RemoteAddr().String()); err == nil {
			return &acceptedConn{Conn: c, remote: peerAddr(id)}, nil
		}
		c.Close()
	}
}

type acceptedConn struct {
	net.Conn
	remote peerAddr
}

func (c *acceptedConn) RemoteAddr() net.Addr { return c.remote }

// PeerAddresses returns the peer addresses (/p2p/<ID>) of the peers that
// addrs name, once each, in the order first named.
func PeerAddresses(addrs []string) ([]string, error) {
	var out []string
	for _, a := range addrs {
		id, _, err := ParseAddr(a)
		if err != nil {
			return nil, err
		}
		if s := "/p2p/" + id.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

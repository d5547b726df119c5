// Package p2p carries Rookery's gRPC connections over libp2p, so that a
// provider behind NAT (a laptop behind a home router) can serve, and no
// single seed node is needed.
//
// A Host is one libp2p node (go-libp2p, in process, no daemon): TCP and
// QUIC transports, connections encrypted and authenticated with Noise or
// TLS 1.3 on the node's ed25519 identity key, which is also its peer ID.
// A provider's Rookery address is /p2p/<peer ID>: what it registers with
// seed nodes and what requesters dial. The gRPC services are served on
// one libp2p protocol (Protocol), one stream per gRPC connection:
// Host.Listen gives the listener that transport.Server.Serve and
// seednode.Registry.Serve take, Host.DialContext the dialer that
// transport.WithDialer takes (Host.DialOptions adds the identity key as
// the requester key that binds leases). Nothing in exec, and nothing in
// transport beyond a dialer and a listener, knows the difference.
//
// Roles:
//   - A seed node (Config.Seed) is publicly reachable by configuration, a
//     bootstrap peer, a circuit relay (v2) with DefaultRelay's limits,
//     and an AutoNAT server that dials nodes back to tell them whether
//     they are reachable.
//   - A provider (Config.Reserve) connects to every seed node it is given,
//     and holds a relay slot on each from the start, renewing it, until
//     AutoNAT finds it reachable; it registers with every seed node too
//     (transport.Server.Announce, once per seed).
//   - A requester dials a provider at its known addresses and through the
//     relay of every seed node it knows. Once connected through a relay
//     it waits up to Config.DirectWait for a direct connection: the
//     provider's own addresses, learnt over the relayed connection, when
//     it is reachable; else hole punching (DCUtR), which the provider
//     starts on the relayed connection. Across a symmetric NAT hole
//     punching fails, and the relay carries the traffic. Host.Path, and
//     transport.Client.Path for the connection a client holds, say which.
//
// Leases over libp2p name both peers: the provider's /p2p/<peer ID>, and
// the requester's key, which is its peer ID's. A provider sees the
// caller's authenticated key on the connection (the listener's remote
// addresses have an IdentityKey method) and refuses a key-bound lease
// from any other peer.
//
// libp2p hole-punches only between public addresses. TreatAsPublic (and
// Config.PublicNets, the daemons' --p2p-public-net) lets an emulated
// internet built from the ranges reserved for benchmarking (198.18.0.0/15,
// internal/netlab) count as public; examples/nat runs the whole story on
// one, with two seed nodes, providers behind cone and symmetric NATs, and
// a requester behind its own NAT.
package p2p

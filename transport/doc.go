// Package transport carries Rookery's executors across the network: a
// gRPC server that serves any exec.Executor as the rookery.v1 Provider
// service, and a client that is itself an exec.Executor. The seed node,
// where providers announce themselves and requesters find them, is
// package transport/seednode.
//
// A value moves like this. The requester's pipeline calls Open on a
// *Client (from Dial); the client encodes the part's graph
// (graph.MarshalBinary) and streams it to the provider in chunks. The
// provider's Server checks every announced size against its Limits before
// allocating, decodes the graph with node limits, and opens a session on
// its own executor (exec.NewCPU in the `rookery provider` daemon). Each
// later Put, Get, Forward and Backward streams tensors as raw
// little-endian bytes in frames of at most the chunk size (4 MiB by
// default), so that no gRPC message limit is hit whatever the model's
// size. A large float or int tensor is sent from its backing memory (the
// connection's codec hands gRPC the tensor's bytes without first copying
// them into a message) and received into the backing memory of a tensor
// allocated once its size has passed the limits, straight from gRPC's
// receive buffers (codec.go, frames.go; figures in RESULTS.md). Nothing
// in exec knows that the session is remote.
//
// A provider announces itself to a seed node (Server.Announce) with its
// capabilities: machine, measured speed from a start-up micro-benchmark,
// op kinds and limits, and renews its entry by heartbeat. Requesters ask
// the seed node for providers (seednode.Find, seednode.Lease).
//
// Who gets in. A seed node given seednode.WithLeaseSigning signs a lease
// (lease.go) for every provider it names, with the provider, the
// requester and an expiry; a Server given WithLeaseKey opens sessions
// only for calls that carry a valid lease naming it, and a session
// belongs to the requester the lease names (without leases, to the
// caller's token or certificate identity), so that no one else can use
// or close it. A lease is bound to whoever asked for it: the seed node
// names an authenticated requester by its token or certificate, and
// every requester by the ed25519 requester key it sends with Find
// (WithRequesterKey; by default a key made once per process), "key:"
// and its base64 when it is not authenticated. On every call with a
// key-bound lease the client signs the lease's hash, the provider's
// address, the time in milliseconds and the method with that key
// (requester.go); the provider refuses a call whose proof is missing,
// signed by another key, or more than two minutes (WithProofWindow) from
// its clock, so that a lease seen by someone else cannot be replayed,
// and a session opened with it answers only that key. A seed node that
// signs leases refuses an unauthenticated Find without a key. Bearer tokens (WithTokens, seednode.WithTokens; WithToken
// on the client) and client certificates verified by the server's TLS
// configuration identify callers (auth.go; Identify for the seed node).
// The client refuses to dial beyond loopback in clear text unless given
// WithInsecure, and CheckListen is the daemons' same rule for listening.
// Every Provider call is bounded by a deadline (WithCallTimeout), and
// the memory budget counts each session's estimated working memory from
// Open on (admission control, admission.go).
//
// Peer-to-peer. Package transport/p2p carries the same gRPC services over
// libp2p, for providers behind NAT: its Host gives the listener a Server
// serves on and the dialer a client dials with (WithDialer), and a
// provider's address is /p2p/<peer ID>. A connection whose dialer reports
// a path says so in Client.Path ("direct" or "relayed"); a provider sees
// the caller's authenticated key on such a connection and refuses a
// key-bound lease presented from another peer.
//
// Rings. Replicas' sessions on providers sum their gradients among
// themselves (ring.go: JoinRing, AllReduce). A member sends its segments
// to the next member on the ring wire (ringwire.go): one connection to
// the next provider's own port, told apart from gRPC by its first byte,
// secured with the server's credentials (WithCredentials), admitted by
// the ring's key, carrying raw tensor bytes; a provider that does not
// offer it (WithoutRingWire, or credentials given only through
// WithServerOptions) gets them on RingPass streams.
//
// Error policy: errors become gRPC status codes only inside this package,
// and come back out as the same typed errors a local executor returns
// (*exec.SpecError, *exec.FeedError, *exec.NameError, *exec.OrderError,
// *exec.RunError, exec.ErrClosed, exec.ErrSolver, graph's decode errors),
// carried in a rookery.v1 ErrorDetail. Limits of the provider come back as
// *LimitError (matching ErrLimit): ResourceExhausted on the wire for
// capacity (sessions, resident bytes), InvalidArgument for the size of one
// request (nodes, one graph, one tensor). An unreachable peer gives an
// error matching ErrUnavailable; a broken framing ErrProtocol. A refused
// credential or identity comes back as *AuthError, matching
// ErrUnauthenticated (Unauthenticated on the wire) or ErrPermissionDenied
// (PermissionDenied); clear text beyond loopback is refused with
// ErrInsecure before anything is dialled.
package transport

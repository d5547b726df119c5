// Package transport carries Rookery's executors across the network: a
// gRPC server that serves any exec.Executor as the rookery.v1 Provider
// service, a client that is itself an exec.Executor, and the seed node
// where providers announce themselves and requesters find them.
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
// size. A large float tensor is sent from its backing memory (the
// connection's codec hands gRPC the tensor's bytes without first copying
// them into a message) and received into the backing memory of a tensor
// allocated once its size has passed the limits, straight from gRPC's
// receive buffers. Nothing in exec knows that the session is remote.
//
// A provider announces itself to a Seed (Server.Announce) with its
// capabilities: machine, measured speed from a start-up micro-benchmark,
// op kinds and limits. The seed drops it when its heartbeats stop for the
// TTL. Requesters ask the seed for providers (FindProviders) over gRPC;
// people can read the same registry as JSON (Seed.Handler, GET
// /v1/providers).
//
// Error policy: errors become gRPC status codes only inside this package,
// and come back out as the same typed errors a local executor returns
// (*exec.SpecError, *exec.FeedError, *exec.NameError, *exec.OrderError,
// *exec.RunError, exec.ErrClosed, exec.ErrSolver, graph's decode errors),
// carried in a rookery.v1 ErrorDetail. Limits of the provider come back as
// *LimitError (matching ErrLimit): ResourceExhausted on the wire for
// capacity (sessions, resident bytes), InvalidArgument for the size of one
// request (nodes, one graph, one tensor). An unreachable peer gives an
// error matching ErrUnavailable; a broken framing ErrProtocol.
package transport

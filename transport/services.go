package transport

import (
	"context"

	"google.golang.org/grpc"
)

// The functions below let Rookery's other gRPC services (the seed node's
// registry, package transport/seednode) authenticate callers, dial and
// map errors exactly as the provider and its client do.

// Identify returns the identity of the caller of an incoming gRPC call,
// as a provider's Server sees it: "token:NAME" for a bearer token of
// tokens, "cert:NAME" for a client certificate that the server's TLS
// configuration verified, "" for an anonymous caller when tokens is nil.
// With tokens, a caller that presents neither gets an *AuthError.
func Identify(ctx context.Context, tokens *TokenSet) (string, error) {
	a := authenticator{tokens: tokens}
	id, _, err := a.identify(ctx)
	return id, err
}

// ClientConn returns a gRPC connection to addr set up by opts as Connect
// sets up its own: credentials, bearer token, lease and dialer. It
// refuses clear text beyond loopback with an error matching ErrInsecure,
// before anything is dialled.
func ClientConn(addr string, opts ...DialOption) (*grpc.ClientConn, error) {
	cfg := newDialConfig(opts)
	return cfg.conn(addr)
}

// ToStatus turns an error into the gRPC status error that carries it
// (an *AuthError, a *LimitError, the executor's typed errors) to a
// client, which FromStatus turns back into the same error.
func ToStatus(err error) error { return toStatus(err) }

// DialConn is ClientConn that also waits, within the dial timeout
// (WithDialTimeout) and ctx, until the connection to addr is ready. A
// peer that does not answer in time gives a *DialError that names addr,
// peer (what is expected there, such as "seed node") and the last
// connection error.
func DialConn(ctx context.Context, addr, peer string, opts ...DialOption) (*grpc.ClientConn, error) {
	cfg := newDialConfig(opts)
	return cfg.dial(ctx, addr, peer, nil)
}

// FromStatus turns an error of a gRPC call back into the typed error that
// ToStatus carried. what names the call for errors without detail; a call
// cut short by ctx returns ctx's error.
func FromStatus(ctx context.Context, what string, err error) error { return fromStatus(ctx, what, err) }

// Package seednode is the seed node: the registry where providers
// announce themselves and requesters find and lease them.
//
// A value moves through it like this. A provider (transport.Server's
// Announce) registers its address and capabilities with a Registry and
// renews its entry by heartbeat; the registry drops an entry whose
// heartbeats stop for the TTL, checked on every read against the
// registry's clock (WithClock), so no goroutine runs for it. A requester
// asks for providers with Find, which returns their entries fastest
// first, each with a lease signed for that provider and requester when
// the registry was given WithLeaseSigning; Lease does the same and
// connects to each provider with its lease, returning executors, their
// measured speeds and a release function. People read the registry as
// JSON through Registry.Handler (GET /v1/providers).
//
// Who gets in: with WithTokens, every call but LeaseKey needs a bearer
// token of the set or a client certificate the server's TLS configuration
// verified (transport.Identify), and an entry belongs to the identity
// that registered it. Providers verify leases themselves
// (transport.WithLeaseKey).
//
// Error policy: the registry answers with gRPC status codes
// (InvalidArgument for a malformed request, NotFound for an unknown or
// expired entry, FailedPrecondition when fewer providers match than were
// asked for, and transport's codes for refused credentials). Find turns
// them back into errors: ErrNotEnough, and transport's *AuthError,
// ErrUnavailable and ErrInsecure.
package seednode

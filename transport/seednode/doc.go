// Package seednode is the seed node: the registry where providers
// announce themselves and requesters find and lease them.
//
// A value moves through it like this. A provider (transport.Server's
// Announce) registers its address and capabilities with a Registry and
// renews its entry by heartbeat; the registry drops an entry whose
// heartbeats stop for the TTL, checked on every read against the
// registry's clock (WithClock), so no goroutine runs for it. A requester
// asks for providers with Find, which returns their entries best first
// (see the ledger below), each with a lease signed for that provider and requester when
// the registry was given WithLeaseSigning; Lease does the same and
// connects to each provider with its lease, returning executors, the
// speeds the seed node measured and a release function. People read the registry as
// JSON through Registry.Handler (GET /v1/providers).
//
// What it believes: nothing on a caller's word. Every registration,
// heartbeat and deregistration is a claim signed by the provider's
// ed25519 identity key (transport.SignClaim; unsigned ones are refused,
// Unauthenticated), made within WithClaimWindow of the registry's time
// and newer than the last claim on the entry; only the key that
// registered an entry renews, replaces or removes it. Before listing an
// entry the registry checks, with its Prober (DialProber by default),
// that the address answers a fresh Describe challenge with that key, and
// records how long it took. Speeds must be finite and within MaxGFLOPS
// and MaxMemBandwidth (*SpeedError). A claimed speed is not believed
// either: the seed node measures each provider itself (its SpeedProbe,
// DialSpeedProbe by default), opening a session there as a requester
// would, with a lease it signs for itself, and timing a fixed matrix
// product (MeasureGFLOPS, some 100 MFLOP). It lists providers fastest
// first by that measurement (measured_gflops, beside the claimed
// gflops), marks an entry (unverified_speed) whose claim exceeds it by
// more than SpeedClaimSlack or that it could not measure (measured
// again at a heartbeat after SpeedRetry), and requesters weigh
// providers by it (Speed, Lease's capacities). A seed node given its
// own Prober and no SpeedProbe measures nothing: it ranks by the claim,
// and marks and ranks last a provider that registered a higher speed
// than it reports at its address. Registrations are rate-limited per source and capped in
// total (WithRegistrationLimit, WithMaxProviders: a
// *transport.LimitError, ResourceExhausted).
//
// The ledger (WithLedger, a ledger.Store): requesters hand the seed node
// receipts of work co-signed by both sides and faults they signed
// (Submit), which it appends to a hash-chained, append-only log after
// checking every signature; GET /v1/ledger pages through it with the
// totals per key, GET /v1/standing gives one key's, and GET / is a page
// that shows them. A provider's Score is log10(1 + the GFLOP of its
// receipts) − FaultPenalty per fault that counts: one signed by a
// requester with a receipt of a session with it (ledger.Work.Faults).
// Find leaves out a provider whose last fault is within
// WithFaultCooldown on the registry's clock, and orders the rest by
// standing first (good standing, a score of 0 or more, before a provider
// whose faults outweigh its work, worst last), then fastest first, then
// by score, then by address: speed decides among providers in good
// standing, so that newcomers get work, and verified work lets a
// provider outgrow a fault. Without a ledger every provider stands as a
// newcomer and the order is by speed alone, as List's is.
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

package seednode

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// Option configures NewRegistry.
type Option func(*config)

type config struct {
	ttl      time.Duration
	clock    transport.Clock
	logger   *slog.Logger
	grpcOpts []grpc.ServerOption
	tokens   *transport.TokenSet
	key      ed25519.PrivateKey
	leaseTTL time.Duration

	regBurst     int           // registrations a source may make at once
	regEvery     time.Duration // and one more each this long
	maxProviders int           // live entries in all
	claimWindow  time.Duration // how far a claim's time may be from the clock's
	prober       Prober

	speedProbe     SpeedProbe
	speedProbeSet  bool
	probeRequester string

	ledger        *ledger.Store
	faultCooldown time.Duration
	subBurst      int           // submissions a source may make at once
	subEvery      time.Duration // and one more each this long
}

// DefaultClaimWindow is how far from the seed node's time a provider's
// signed claim may be made (WithClaimWindow).
const DefaultClaimWindow = 5 * time.Minute

// WithClaimWindow sets how far from the registry's clock the time of a
// provider's signed claim may be (default DefaultClaimWindow): older
// claims are refused as replays, and so are claims on an entry no newer
// than the last one accepted on it.
func WithClaimWindow(d time.Duration) Option { return func(c *config) { c.claimWindow = d } }

// The defaults of WithRegistrationLimit and WithMaxProviders.
const (
	DefaultRegistrationBurst = 32
	DefaultRegistrationEvery = 2 * time.Second
	DefaultMaxProviders      = 4096
)

// WithRegistrationLimit limits how fast one source registers: burst
// registrations at once, then one more each every (default
// DefaultRegistrationBurst and DefaultRegistrationEvery). A source is
// the identity the seed node authenticated (WithTokens), or else the
// caller's network address without its port. A registration past the
// limit gets a *transport.LimitError (ResourceExhausted). burst <= 0
// lifts the limit.
func WithRegistrationLimit(burst int, every time.Duration) Option {
	return func(c *config) { c.regBurst, c.regEvery = burst, every }
}

// WithMaxProviders caps the live entries of the registry (default
// DefaultMaxProviders); a registration past it gets a
// *transport.LimitError (ResourceExhausted). n <= 0 lifts the cap.
func WithMaxProviders(n int) Option { return func(c *config) { c.maxProviders = n } }

// WithTTL sets how long a provider's entry lives without a heartbeat
// (default 30s).
func WithTTL(d time.Duration) Option { return func(c *config) { c.ttl = d } }

// WithClock sets the registry's clock (default: the system clock):
// entries expire and leases are dated by it, so that tests can move time
// forward. It is the same Clock a provider's server takes.
func WithClock(c transport.Clock) Option { return func(cfg *config) { cfg.clock = c } }

// WithLogger sets the structured logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithTokens makes the seed node require, on every Seed call but
// LeaseKey, a bearer token of ts or a client certificate that its TLS
// configuration verified. Providers then need one to register, and
// requesters to find them.
func WithTokens(ts *transport.TokenSet) Option { return func(c *config) { c.tokens = ts } }

// DefaultLeaseTTL is how long a lease is valid when WithLeaseSigning is
// given no duration.
const DefaultLeaseTTL = time.Hour

// WithLeaseSigning makes the seed node sign a lease for each provider it
// names in Find, valid for ttl (DefaultLeaseTTL when ttl <= 0). The lease
// names the requester the seed node authenticated ("token:NAME" or
// "cert:NAME"), or, for a requester it did not authenticate, the
// requester key it sent ("key:<base64>", transport.KeyRequester); it is
// bound to the requester key when one was sent, so that a provider
// serves only calls signed by that key. An unauthenticated requester
// that sends no key is refused: its lease could be replayed by anyone.
func WithLeaseSigning(key ed25519.PrivateKey, ttl time.Duration) Option {
	return func(c *config) { c.key, c.leaseTTL = key, ttl }
}

// WithServerOptions adds gRPC server options.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(c *config) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// Registry is the registry of providers: the rookery.v1 Seed service over
// gRPC, and a read-only HTTP/JSON view of the same entries (Handler).
// Entries expire when their provider stops heart-beating for the TTL;
// expiry is checked on every read, so no goroutine runs for it.
type Registry struct {
	rookeryv1.UnimplementedSeedServer

	cfg    config
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server

	mu      sync.Mutex
	entries map[string]*rookeryv1.ProviderEntry
	owners  map[string]string // the identity that registered each entry
	claimed map[string]int64  // the time of the last claim accepted on each entry
	buckets map[string]*bucket
	// subBuckets limit Submit calls per source, as buckets registrations.
	subBuckets map[string]*bucket
	// measuring holds the entries whose speed is being measured again,
	// and tried when each entry's measurement last failed.
	measuring map[string]bool
	tried     map[string]time.Time
}

// NewRegistry returns a seed node's registry, ready to Serve.
func NewRegistry(opts ...Option) *Registry {
	cfg := config{ttl: 30 * time.Second, clock: transport.SystemClock,
		regBurst: DefaultRegistrationBurst, regEvery: DefaultRegistrationEvery, maxProviders: DefaultMaxProviders, claimWindow: DefaultClaimWindow,
		faultCooldown: DefaultFaultCooldown, subBurst: DefaultSubmitBurst, subEvery: DefaultSubmitEvery}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.clock == nil {
		cfg.clock = transport.SystemClock
	}
	if cfg.prober == nil {
		cfg.prober = DialProber(DefaultProbeTimeout)
		if !cfg.speedProbeSet {
			cfg.speedProbe = DialSpeedProbe(DefaultProbeTimeout, nil)
		}
	}
	if cfg.probeRequester == "" {
		cfg.probeRequester = DefaultProbeRequester
	}
	if cfg.leaseTTL <= 0 {
		cfg.leaseTTL = DefaultLeaseTTL
	}
	s := &Registry{cfg: cfg, log: cfg.logger, entries: map[string]*rookeryv1.ProviderEntry{}, owners: map[string]string{},
		claimed: map[string]int64{}, buckets: map[string]*bucket{}, subBuckets: map[string]*bucket{}, measuring: map[string]bool{}, tried: map[string]time.Time{}}
	s.grpc = grpc.NewServer(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(s.unaryAuth)}, cfg.grpcOpts...)...)
	rookeryv1.RegisterSeedServer(s.grpc, s)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(rookeryv1.Seed_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(s.grpc)
	return s
}

// LeasePublicKey returns the public key the seed node signs leases with,
// or nil when it signs none.
func (s *Registry) LeasePublicKey() ed25519.PublicKey {
	if s.cfg.key == nil {
		return nil
	}
	return s.cfg.key.Public().(ed25519.PublicKey)
}

// unaryAuth identifies the caller of every Seed call but LeaseKey.
func (s *Registry) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, "/"+rookeryv1.Seed_ServiceDesc.ServiceName+"/") || info.FullMethod == rookeryv1.Seed_LeaseKey_FullMethodName {
		return handler(ctx, req)
	}
	id, err := transport.Identify(ctx, s.cfg.tokens)
	if err != nil {
		s.log.Warn("call refused", "method", info.FullMethod, "err", err)
		return nil, transport.ToStatus(err)
	}
	return handler(withIdentity(ctx, id), req)
}

// LeaseKey implements the Seed service.
func (s *Registry) LeaseKey(ctx context.Context, _ *rookeryv1.LeaseKeyRequest) (*rookeryv1.LeaseKeyResponse, error) {
	return &rookeryv1.LeaseKeyResponse{Ed25519PublicKey: s.LeasePublicKey()}, nil
}

// Serve serves the gRPC registry on lis until Shutdown or Stop.
func (s *Registry) Serve(lis net.Listener) error {
	s.log.Info("seed serving", "addr", lis.Addr().String(), "ttl", s.cfg.ttl, "signs_leases", s.cfg.key != nil, "tokens", s.cfg.tokens != nil)
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown lets calls in flight finish until ctx is done, then stops.
func (s *Registry) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return ctx.Err()
	}
}

// Stop stops at once.
func (s *Registry) Stop() {
	s.health.Shutdown()
	s.grpc.Stop()
}

// sweep drops expired entries; s.mu is held.
func (s *Registry) sweep(now time.Time) {
	for id, e := range s.entries {
		if now.Sub(time.UnixMilli(e.LastHeartbeatUnixMs)) > s.cfg.ttl {
			s.remove(id)
			s.log.Info("provider expired", "id", id, "address", e.Address)
		}
	}
}

// Register implements the Seed service. The request must carry a claim
// signed by the provider's identity key (transport.SignClaim); unsigned
// registrations are refused (Unauthenticated). A provider that registers
// again under the same address with the same key replaces its old
// entry; another key cannot (PermissionDenied).
func (s *Registry) Register(ctx context.Context, req *rookeryv1.RegisterRequest) (*rookeryv1.RegisterResponse, error) {
	who := identityFrom(ctx)
	now := s.cfg.clock.Now()
	s.mu.Lock()
	err := s.admit(source(ctx, who), now)
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("registration refused", "err", err)
		return nil, transport.ToStatus(err)
	}
	c, err := s.openClaim(req.Signed, rookeryv1.ProviderClaim_KIND_REGISTER, now)
	if err != nil {
		return nil, transport.ToStatus(err)
	}
	address := c.Address
	if address == "" {
		return nil, status.Error(codes.InvalidArgument, "register without an address")
	}
	if len(address) > 512 {
		return nil, status.Errorf(codes.InvalidArgument, "address of %d bytes", len(address))
	}
	if err := checkAddress(address, ed25519.PublicKey(c.IdentityKey)); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "address %.100q: %v", address, err)
	}
	if err := CheckSpeeds(c.Capabilities); err != nil {
		return nil, transport.ToStatus(err)
	}
	rtt, unverified, err := s.checkAddress(ctx, c)
	if err != nil {
		s.log.Warn("registration refused", "address", address, "err", err)
		return nil, transport.ToStatus(err)
	}
	// The provider learns its id only from the answer, so a provider
	// that already holds ids from an earlier registration refuses this
	// lease; it is measured again at a heartbeat (SpeedRetry).
	id := newID()
	measured, merr := s.measure(ctx, id, address)
	key := ed25519.PublicKey(c.IdentityKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	for id, e := range s.entries {
		if e.Address == address {
			if !key.Equal(ed25519.PublicKey(e.IdentityKey)) || s.owners[id] != who {
				return nil, transport.ToStatus(&transport.AuthError{Reason: transport.ReasonNotOwner, Identity: who,
					Detail: "another identity key has registered " + address})
			}
			if c.UnixMs <= s.claimed[id] {
				return nil, transport.ToStatus(&transport.AuthError{Reason: transport.ReasonExpired, Identity: who, Detail: "a claim no newer than the last on " + address})
			}
			s.remove(id)
		}
	}
	if s.cfg.maxProviders > 0 && len(s.entries) >= s.cfg.maxProviders {
		err := &transport.LimitError{What: "providers on this seed node", Limit: int64(s.cfg.maxProviders), Got: int64(len(s.entries)) + 1, Capacity: true}
		s.log.Warn("registration refused", "address", address, "err", err)
		return nil, transport.ToStatus(err)
	}
	s.owners[id] = who
	s.claimed[id] = c.UnixMs
	e := &rookeryv1.ProviderEntry{Id: id, Address: address, Capabilities: c.Capabilities,
		RegisteredUnixMs: now.UnixMilli(), LastHeartbeatUnixMs: now.UnixMilli(), IdentityKey: key,
		ProbeRttUs: rtt.Microseconds(), UnverifiedSpeed: unverified}
	s.entries[id] = e
	s.setMeasured(e, measured, merr, now)
	s.log.Info("provider registered", "id", id, "address", address, "name", c.Capabilities.GetName(),
		"gflops", c.Capabilities.GetGflops(), "measured_gflops", e.MeasuredGflops, "identity", transport.EncodeIdentityKey(key),
		"probe_rtt", rtt, "unverified_speed", e.UnverifiedSpeed)
	return &rookeryv1.RegisterResponse{Id: id, TtlMs: s.cfg.ttl.Milliseconds()}, nil
}

// openClaim opens a signed claim of the kind wanted, made within the
// claim window of now.
func (s *Registry) openClaim(sc *rookeryv1.SignedClaim, kind rookeryv1.ProviderClaim_Kind, now time.Time) (*rookeryv1.ProviderClaim, error) {
	c, err := transport.OpenClaim(sc)
	if err != nil {
		return nil, err
	}
	if c.Kind != kind {
		return nil, &transport.AuthError{Reason: transport.ReasonMalformed, Detail: fmt.Sprintf("a %v claim where %v was wanted", c.Kind, kind)}
	}
	if d := now.Sub(time.UnixMilli(c.UnixMs)); d > s.cfg.claimWindow || d < -s.cfg.claimWindow {
		return nil, &transport.AuthError{Reason: transport.ReasonExpired,
			Detail: fmt.Sprintf("claim made %v from the seed node's time, more than %v: check the clocks", d.Round(time.Second), s.cfg.claimWindow)}
	}
	return c, nil
}

// owned returns the entry id names after checking that c, by who, may
// act on it and is newer than the last claim on it; s.mu is held.
func (s *Registry) owned(c *rookeryv1.ProviderClaim, who string) (*rookeryv1.ProviderEntry, error) {
	e, ok := s.entries[c.Id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no provider %.40q: register again", c.Id)
	}
	if !ed25519.PublicKey(c.IdentityKey).Equal(ed25519.PublicKey(e.IdentityKey)) || s.owners[c.Id] != who {
		return nil, &transport.AuthError{Reason: transport.ReasonNotOwner, Identity: who, Detail: "another identity key registered this provider"}
	}
	if c.UnixMs <= s.claimed[c.Id] {
		return nil, &transport.AuthError{Reason: transport.ReasonExpired, Identity: who, Detail: "a claim no newer than the last on this provider"}
	}
	return e, nil
}

// remove drops an entry; s.mu is held.
func (s *Registry) remove(id string) {
	delete(s.entries, id)
	delete(s.owners, id)
	delete(s.claimed, id)
	delete(s.tried, id)
}

// Heartbeat implements the Seed service. The request must carry a claim
// signed by the key that registered the entry.
func (s *Registry) Heartbeat(ctx context.Context, req *rookeryv1.HeartbeatRequest) (*rookeryv1.HeartbeatResponse, error) {
	now := s.cfg.clock.Now()
	c, err := s.openClaim(req.Signed, rookeryv1.ProviderClaim_KIND_HEARTBEAT, now)
	if err != nil {
		return nil, transport.ToStatus(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	e, err := s.owned(c, identityFrom(ctx))
	if err != nil {
		return nil, transport.ToStatus(err)
	}
	s.claimed[c.Id] = c.UnixMs
	e.LastHeartbeatUnixMs = now.UnixMilli()
	e.Sessions = c.Sessions
	resp := &rookeryv1.HeartbeatResponse{TtlMs: s.cfg.ttl.Milliseconds()}
	tried, failed := s.tried[c.Id]
	if !failed || s.measuring[c.Id] || now.Sub(tried) < SpeedRetry {
		return resp, nil
	}
	// Measure again an entry whose measurement failed, at most once per
	// SpeedRetry and once at a time, without holding the lock.
	s.measuring[c.Id] = true
	id, address := c.Id, e.Address
	s.mu.Unlock()
	measured, merr := s.measure(ctx, id, address)
	s.mu.Lock()
	delete(s.measuring, id)
	if e, ok := s.entries[id]; ok {
		s.setMeasured(e, measured, merr, s.cfg.clock.Now())
		s.log.Info("provider measured", "id", id, "address", address, "measured_gflops", e.MeasuredGflops, "unverified_speed", e.UnverifiedSpeed)
	}
	return resp, nil
}

// measure runs the speed probe on the provider at address, which will
// be listed as id, with a lease the registry signs for itself when it
// signs leases. Without a speed probe it measures nothing.
func (s *Registry) measure(ctx context.Context, id, address string) (float64, error) {
	if s.cfg.speedProbe == nil {
		return 0, nil
	}
	lease := ""
	if s.cfg.key != nil {
		now := s.cfg.clock.Now()
		var err error
		lease, err = transport.SignLease(s.cfg.key, transport.Lease{ProviderID: id, ProviderAddress: address, Requester: s.cfg.probeRequester,
			IssuedAt: now, Expires: now.Add(DefaultProbeTimeout)})
		if err != nil {
			return 0, err
		}
	}
	g, err := s.cfg.speedProbe(ctx, address, lease)
	if err == nil && (math.IsNaN(g) || math.IsInf(g, 0) || g <= 0) {
		err = fmt.Errorf("measured %g GFLOP/s", g)
	}
	if err != nil {
		return 0, fmt.Errorf("seednode: measuring %.100s: %w", address, err)
	}
	return min(g, MaxGFLOPS), nil
}

// setMeasured records on e what measure returned; s.mu is held. A claim
// above SpeedClaimSlack times the measurement, or a failed measurement,
// marks the entry: where the registry measures, the measurement decides,
// not what the provider reported in Describe.
func (s *Registry) setMeasured(e *rookeryv1.ProviderEntry, measured float64, err error, now time.Time) {
	if s.cfg.speedProbe == nil {
		return
	}
	if err != nil {
		s.tried[e.Id] = now
		e.UnverifiedSpeed = true
		s.log.Warn("speed not measured", "id", e.Id, "address", e.Address, "err", err, "retry_after", SpeedRetry)
		return
	}
	delete(s.tried, e.Id)
	e.MeasuredGflops = measured
	e.UnverifiedSpeed = e.Capabilities.GetGflops() > measured*SpeedClaimSlack
}

// Deregister implements the Seed service. The request must carry a claim
// signed by the key that registered the entry; an unknown id is no
// error.
func (s *Registry) Deregister(ctx context.Context, req *rookeryv1.DeregisterRequest) (*rookeryv1.DeregisterResponse, error) {
	c, err := s.openClaim(req.Signed, rookeryv1.ProviderClaim_KIND_DEREGISTER, s.cfg.clock.Now())
	if err != nil {
		return nil, transport.ToStatus(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[c.Id]; !ok {
		return &rookeryv1.DeregisterResponse{}, nil
	}
	e, err := s.owned(c, identityFrom(ctx))
	if err != nil {
		return nil, transport.ToStatus(err)
	}
	s.remove(c.Id)
	s.log.Info("provider deregistered", "id", c.Id, "address", e.Address)
	return &rookeryv1.DeregisterResponse{}, nil
}

// live returns copies of the live entries, fastest first, then by
// address.
func (s *Registry) live() []*rookeryv1.ProviderEntry {
	now := s.cfg.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	out := make([]*rookeryv1.ProviderEntry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, proto.Clone(e).(*rookeryv1.ProviderEntry))
	}
	sort.Slice(out, func(i, j int) bool {
		gi, gj := s.rank(out[i]), s.rank(out[j])
		if gi != gj {
			return gi > gj
		}
		return out[i].Address < out[j].Address
	})
	return out
}

// rank is the speed an entry is listed by: what the registry measured
// when it measures speeds (nothing until it has), else the claim, or
// nothing when the provider reported a lower speed at its address than
// it registered.
func (s *Registry) rank(e *rookeryv1.ProviderEntry) float64 {
	if s.cfg.speedProbe != nil {
		return e.MeasuredGflops
	}
	return Speed(e)
}

// Speed is the speed in GFLOP/s that a requester should count on from
// an entry of Find or List: what the seed node measured, or, from a
// seed node that measures nothing, the registered speed unless the
// entry is marked unverified_speed; 0 when there is none to trust.
func Speed(e *rookeryv1.ProviderEntry) float64 {
	if e.GetMeasuredGflops() > 0 {
		return e.GetMeasuredGflops()
	}
	if e.GetUnverifiedSpeed() {
		return 0
	}
	return e.GetCapabilities().GetGflops()
}

// Find implements the Seed service. It offers the live providers that
// meet the request in the order of ranked: a provider with a fault
// within the fault cooldown is left out; the rest go by standing, then
// speed, then score, then address.
func (s *Registry) Find(ctx context.Context, req *rookeryv1.FindRequest) (*rookeryv1.FindResponse, error) {
	if req.N <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "asked for %d providers", req.N)
	}
	if len(req.Requester) > 256 {
		return nil, status.Errorf(codes.InvalidArgument, "requester id of %d bytes", len(req.Requester))
	}
	if n := len(req.RequesterKey); n != 0 && n != ed25519.PublicKeySize {
		return nil, status.Errorf(codes.InvalidArgument, "requester key of %d bytes, want %d", n, ed25519.PublicKeySize)
	}
	requester := identityFrom(ctx)
	switch {
	case requester != "":
	case len(req.RequesterKey) > 0:
		requester = transport.KeyRequester(req.RequesterKey)
	case s.cfg.key != nil:
		// A lease for a requester known by nothing would be a bearer
		// credential that anyone who saw it could replay.
		return nil, transport.ToStatus(&transport.AuthError{Reason: transport.ReasonMissing,
			Detail: "an unauthenticated requester must send its requester key (seednode.Find sends one) to be leased providers"})
	default:
		requester = "anon:" + req.Requester
		if req.Requester == "" {
			requester += newID()
		}
	}
	now := s.cfg.clock.Now()
	var found []*rookeryv1.ProviderEntry
	excluded := 0
	for _, e := range s.ranked(now, &excluded) {
		c := e.Capabilities
		if c.GetMemoryBytes() < req.MinMemoryBytes || s.rank(e) < req.MinGflops || (req.Gpu && len(c.GetGpus()) == 0) {
			continue
		}
		if s.cfg.key != nil {
			tok, err := transport.SignLease(s.cfg.key, transport.Lease{ProviderID: e.Id, ProviderAddress: e.Address, Requester: requester,
				RequesterKey: req.RequesterKey, IssuedAt: now, Expires: now.Add(s.cfg.leaseTTL)})
			if err != nil {
				return nil, status.Errorf(codes.Internal, "signing a lease: %v", err)
			}
			e.Lease = tok
		}
		found = append(found, e)
		if len(found) == int(req.N) {
			s.log.Info("providers leased", "requester", requester, "n", len(found), "signed", s.cfg.key != nil)
			return &rookeryv1.FindResponse{Providers: found}, nil
		}
	}
	if excluded > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "%d of %d providers match (%d more left out for a recent fault)", len(found), req.N, excluded)
	}
	return nil, status.Errorf(codes.FailedPrecondition, "%d of %d providers match", len(found), req.N)
}

// ranked returns copies of the live entries in the order Find offers
// them, leaving out those with a fault within the cooldown (counted in
// *excluded): first by standing (tier: providers in good standing, then
// those whose faults outweigh their work, worst last), then fastest
// first (rank), then by score, then by address.
func (s *Registry) ranked(now time.Time, excluded *int) []*rookeryv1.ProviderEntry {
	st := s.standings()
	type candidate struct {
		e     *rookeryv1.ProviderEntry
		tier  int
		speed float64
		score float64
	}
	var cs []candidate
	for _, e := range s.live() {
		w, score := st.provider(transport.EncodeIdentityKey(e.IdentityKey))
		if !s.excludedUntil(w, now).IsZero() {
			*excluded++
			continue
		}
		cs = append(cs, candidate{e: e, tier: tier(score), speed: s.rank(e), score: score})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.tier != b.tier {
			return a.tier > b.tier
		}
		if a.speed != b.speed {
			return a.speed > b.speed
		}
		return a.score > b.score
	})
	out := make([]*rookeryv1.ProviderEntry, len(cs))
	for i, c := range cs {
		out[i] = c.e
	}
	return out
}

// List implements the Seed service.
func (s *Registry) List(ctx context.Context, _ *rookeryv1.ListRequest) (*rookeryv1.ListResponse, error) {
	return &rookeryv1.ListResponse{Providers: s.live()}, nil
}

// ProviderJSON is one provider in the seed node's HTTP/JSON view.
type ProviderJSON struct {
	ID            string    `json:"id"`
	Address       string    `json:"address"`
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	Health        string    `json:"health"` // "ok", or "late" past half the TTL without a heartbeat
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Registered    time.Time `json:"registered"`
	Sessions      int       `json:"sessions"`
	Machine       struct {
		CPUModel       string    `json:"cpu_model"`
		CPUCores       int       `json:"cpu_cores"`
		MemoryBytes    int64     `json:"memory_bytes"`
		GPUs           []GPUJSON `json:"gpus"`
		OS             string    `json:"os"`
		Arch           string    `json:"arch"`
		GFLOPS         float64   `json:"gflops"`
		MemBytesPerSec float64   `json:"mem_bandwidth_bytes_per_sec"`
	} `json:"machine"`
	Limits  *rookeryv1.ProviderLimits `json:"limits"`
	OpKinds int                       `json:"op_kinds"`
	// IdentityKey is the provider's identity key (base64), which signed
	// its registration and answered the seed node's challenge at Address.
	IdentityKey string `json:"identity_key"`
	// ProbeRTTMicros is how long that challenge took to answer.
	ProbeRTTMicros int64 `json:"probe_rtt_us"`
	// MeasuredGFLOPS is the speed the seed node measured itself (0: none
	// yet); providers are listed fastest first by it, while Machine.GFLOPS
	// is what the provider claimed.
	MeasuredGFLOPS float64 `json:"measured_gflops"`
	// UnverifiedSpeed marks a provider whose claimed speed the seed node
	// could not confirm: above SpeedClaimSlack times its measurement, not
	// measured, or higher than the provider reports at its address.
	UnverifiedSpeed bool `json:"unverified_speed"`
	// Score is the provider key's standing in the ledger (Score; 0
	// without a ledger), and ExcludedUntil, while a recent fault keeps it
	// out of Find's answers, until when (RFC 3339; empty otherwise).
	Score         float64 `json:"score"`
	ExcludedUntil string  `json:"excluded_until"`
}

// GPUJSON is one accelerator in the HTTP/JSON view.
type GPUJSON struct {
	Name        string `json:"name"`
	MemoryBytes int64  `json:"memory_bytes"`
}

// Handler serves the registry as JSON: GET /v1/providers lists every live
// provider with its machine configuration, health, last heartbeat and
// standing. GET /v1/lease-key returns the public key the seed node signs
// leases with, as --seed-pubkey reads it. With a ledger (WithLedger), GET
// /v1/ledger?from=SEQ&limit=N pages through it (LedgerJSON; from 1 and
// DefaultLedgerPage entries unless asked, at most MaxLedgerPage) with
// the totals per provider and per requester, and GET /v1/standing?key=KEY
// gives a key's standing (StandingJSON); a parameter out of its range
// gets a 400, and both paths a 404 without a ledger. The view shows no
// leases and needs no token.
func (s *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ledger", s.handleLedger)
	mux.HandleFunc("GET /v1/standing", s.handleStanding)
	mux.HandleFunc("GET /v1/lease-key", func(w http.ResponseWriter, r *http.Request) {
		pub := s.LeasePublicKey()
		if pub == nil {
			http.Error(w, "this seed node signs no leases", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, transport.EncodeLeasePublicKey(pub))
	})
	mux.HandleFunc("GET /v1/providers", func(w http.ResponseWriter, r *http.Request) {
		now := s.cfg.clock.Now()
		list := s.live()
		st := s.standings()
		out := struct {
			Providers []ProviderJSON `json:"providers"`
			TTLMs     int64          `json:"ttl_ms"`
		}{Providers: make([]ProviderJSON, 0, len(list)), TTLMs: s.cfg.ttl.Milliseconds()}
		for _, e := range list {
			c := e.Capabilities
			p := ProviderJSON{ID: e.Id, Address: e.Address, Name: c.GetName(), Version: c.GetVersion(), Health: "ok",
				LastHeartbeat: time.UnixMilli(e.LastHeartbeatUnixMs).UTC(), Registered: time.UnixMilli(e.RegisteredUnixMs).UTC(),
				Sessions: int(e.Sessions), Limits: c.GetLimits(), OpKinds: len(c.GetOpKinds()),
				IdentityKey: transport.EncodeIdentityKey(e.IdentityKey), ProbeRTTMicros: e.ProbeRttUs,
				MeasuredGFLOPS: finite(e.MeasuredGflops), UnverifiedSpeed: e.UnverifiedSpeed}
			w, score := st.provider(p.IdentityKey)
			p.Score, p.ExcludedUntil = finite(score), jsonTime(s.excludedUntil(w, now))
			if now.Sub(p.LastHeartbeat) > s.cfg.ttl/2 {
				p.Health = "late"
			}
			p.Machine.CPUModel, p.Machine.CPUCores, p.Machine.MemoryBytes = c.GetCpuModel(), int(c.GetCpuCores()), c.GetMemoryBytes()
			p.Machine.OS, p.Machine.Arch = c.GetOs(), c.GetArch()
			p.Machine.GFLOPS, p.Machine.MemBytesPerSec = finite(c.GetGflops()), finite(c.GetMemBandwidthBytesPerSec())
			p.Machine.GPUs = []GPUJSON{}
			for _, g := range c.GetGpus() {
				p.Machine.GPUs = append(p.Machine.GPUs, GPUJSON{Name: g.Name, MemoryBytes: g.MemoryBytes})
			}
			out.Providers = append(out.Providers, p)
		}
		writeJSON(w, out)
	})
	registerPage(mux)
	return mux
}

// writeJSON writes v as indented JSON, or, should v not encode, a 500
// whose body is a JSON error: never a 200 with an empty body.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	_, _ = w.Write(append(b, '\n'))
}

// finite returns f, or 0 for NaN and the infinities, which JSON cannot
// carry.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// identityKey is the context key of a caller's identity.
type identityKey struct{}

// withIdentity returns ctx carrying the caller's identity.
func withIdentity(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// identityFrom returns the identity withIdentity stored, or "".
func identityFrom(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(string)
	return id
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// checkAddress accepts a provider's address: host:port for TCP, or a
// peer-to-peer address /p2p/<peer ID> (transport/p2p), whose peer ID must
// be the provider's identity key, so that no provider registers another's.
func checkAddress(address string, key ed25519.PublicKey) error {
	id, ok := strings.CutPrefix(address, "/p2p/")
	if !ok {
		_, _, err := net.SplitHostPort(address)
		return err
	}
	pid, err := peer.Decode(id)
	if err != nil {
		return err
	}
	pub, err := crypto.UnmarshalEd25519PublicKey(key)
	if err != nil {
		return err
	}
	if !pid.MatchesPublicKey(pub) {
		return errors.New("the peer ID is not the provider's identity key")
	}
	return nil
}

package transport

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// SeedOption configures NewSeed.
type SeedOption func(*seedConfig)

type seedConfig struct {
	ttl      time.Duration
	now      func() time.Time
	logger   *slog.Logger
	grpcOpts []grpc.ServerOption
	tokens   *TokenSet
	key      ed25519.PrivateKey
	leaseTTL time.Duration
}

// WithTTL sets how long a provider's entry lives without a heartbeat
// (default 30s).
func WithTTL(d time.Duration) SeedOption { return func(c *seedConfig) { c.ttl = d } }

// WithClock sets the seed node's clock (default time.Now), so that tests
// can move time forward.
func WithClock(now func() time.Time) SeedOption { return func(c *seedConfig) { c.now = now } }

// WithSeedLogger sets the structured logger (default: discard).
func WithSeedLogger(l *slog.Logger) SeedOption { return func(c *seedConfig) { c.logger = l } }

// WithSeedTokens makes the seed node require, on every Seed call but
// LeaseKey, a bearer token of ts or a client certificate that its TLS
// configuration verified. Providers then need one to register, and
// requesters to find them.
func WithSeedTokens(ts *TokenSet) SeedOption { return func(c *seedConfig) { c.tokens = ts } }

// DefaultLeaseTTL is how long a lease is valid when WithLeaseSigning is
// given no duration.
const DefaultLeaseTTL = time.Hour

// WithLeaseSigning makes the seed node sign a lease for each provider it
// names in Find, valid for ttl (DefaultLeaseTTL when ttl <= 0). The lease
// names the requester the seed node authenticated ("token:NAME" or
// "cert:NAME"), or, when it authenticates nobody, "anon:" and the id the
// requester chose (FindRequest.requester, random when empty).
func WithLeaseSigning(key ed25519.PrivateKey, ttl time.Duration) SeedOption {
	return func(c *seedConfig) { c.key, c.leaseTTL = key, ttl }
}

// WithSeedServerOptions adds gRPC server options.
func WithSeedServerOptions(opts ...grpc.ServerOption) SeedOption {
	return func(c *seedConfig) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// Seed is the registry of providers: the rookery.v1 Seed service over
// gRPC, and a read-only HTTP/JSON view of the same entries (Handler).
// Entries expire when their provider stops heart-beating for the TTL;
// expiry is checked on every read, so no goroutine runs for it.
type Seed struct {
	rookeryv1.UnimplementedSeedServer

	cfg    seedConfig
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server

	auth authenticator

	mu      sync.Mutex
	entries map[string]*rookeryv1.ProviderEntry
	owners  map[string]string // the identity that registered each entry
}

// NewSeed returns a seed node.
func NewSeed(opts ...SeedOption) *Seed {
	cfg := seedConfig{ttl: 30 * time.Second, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.leaseTTL <= 0 {
		cfg.leaseTTL = DefaultLeaseTTL
	}
	s := &Seed{cfg: cfg, log: cfg.logger, entries: map[string]*rookeryv1.ProviderEntry{}, owners: map[string]string{},
		auth: authenticator{tokens: cfg.tokens}}
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
func (s *Seed) LeasePublicKey() ed25519.PublicKey {
	if s.cfg.key == nil {
		return nil
	}
	return s.cfg.key.Public().(ed25519.PublicKey)
}

// unaryAuth identifies the caller of every Seed call but LeaseKey.
func (s *Seed) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, "/"+rookeryv1.Seed_ServiceDesc.ServiceName+"/") || info.FullMethod == rookeryv1.Seed_LeaseKey_FullMethodName {
		return handler(ctx, req)
	}
	id, _, err := s.auth.identify(ctx)
	if err != nil {
		s.log.Warn("call refused", "method", info.FullMethod, "err", err)
		return nil, toStatus(err)
	}
	return handler(withIdentity(ctx, id), req)
}

// LeaseKey implements the Seed service.
func (s *Seed) LeaseKey(ctx context.Context, _ *rookeryv1.LeaseKeyRequest) (*rookeryv1.LeaseKeyResponse, error) {
	return &rookeryv1.LeaseKeyResponse{Ed25519PublicKey: s.LeasePublicKey()}, nil
}

// Serve serves the gRPC registry on lis until Shutdown or Stop.
func (s *Seed) Serve(lis net.Listener) error {
	s.log.Info("seed serving", "addr", lis.Addr().String(), "ttl", s.cfg.ttl, "signs_leases", s.cfg.key != nil, "tokens", s.cfg.tokens != nil)
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown lets calls in flight finish until ctx is done, then stops.
func (s *Seed) Shutdown(ctx context.Context) error {
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
func (s *Seed) Stop() {
	s.health.Shutdown()
	s.grpc.Stop()
}

// sweep drops expired entries; s.mu is held.
func (s *Seed) sweep(now time.Time) {
	for id, e := range s.entries {
		if now.Sub(time.UnixMilli(e.LastHeartbeatUnixMs)) > s.cfg.ttl {
			delete(s.entries, id)
			delete(s.owners, id)
			s.log.Info("provider expired", "id", id, "address", e.Address)
		}
	}
}

// Register implements the Seed service. A provider that registers again
// under the same address replaces its old entry.
func (s *Seed) Register(ctx context.Context, req *rookeryv1.RegisterRequest) (*rookeryv1.RegisterResponse, error) {
	if req.Address == "" {
		return nil, status.Error(codes.InvalidArgument, "register without an address")
	}
	if len(req.Address) > 512 {
		return nil, status.Errorf(codes.InvalidArgument, "address of %d bytes", len(req.Address))
	}
	if _, _, err := net.SplitHostPort(req.Address); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "address %.100q: %v", req.Address, err)
	}
	who := identityFrom(ctx)
	now := s.cfg.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	for id, e := range s.entries {
		if e.Address == req.Address {
			if s.owners[id] != who {
				return nil, toStatus(&AuthError{Reason: ReasonNotOwner, Identity: who, Detail: "another provider has registered " + req.Address})
			}
			delete(s.entries, id)
			delete(s.owners, id)
		}
	}
	id := newID()
	s.owners[id] = who
	s.entries[id] = &rookeryv1.ProviderEntry{Id: id, Address: req.Address, Capabilities: req.Capabilities,
		RegisteredUnixMs: now.UnixMilli(), LastHeartbeatUnixMs: now.UnixMilli()}
	s.log.Info("provider registered", "id", id, "address", req.Address, "name", req.Capabilities.GetName(),
		"gflops", req.Capabilities.GetGflops())
	return &rookeryv1.RegisterResponse{Id: id, TtlMs: s.cfg.ttl.Milliseconds()}, nil
}

// Heartbeat implements the Seed service.
func (s *Seed) Heartbeat(ctx context.Context, req *rookeryv1.HeartbeatRequest) (*rookeryv1.HeartbeatResponse, error) {
	now := s.cfg.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	e, ok := s.entries[req.Id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no provider %.40q: register again", req.Id)
	}
	if who := identityFrom(ctx); s.owners[req.Id] != who {
		return nil, toStatus(&AuthError{Reason: ReasonNotOwner, Identity: who, Detail: "another identity registered this provider"})
	}
	e.LastHeartbeatUnixMs = now.UnixMilli()
	e.Sessions = req.Sessions
	return &rookeryv1.HeartbeatResponse{TtlMs: s.cfg.ttl.Milliseconds()}, nil
}

// Deregister implements the Seed service.
func (s *Seed) Deregister(ctx context.Context, req *rookeryv1.DeregisterRequest) (*rookeryv1.DeregisterResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[req.Id]; ok {
		if who := identityFrom(ctx); s.owners[req.Id] != who {
			return nil, toStatus(&AuthError{Reason: ReasonNotOwner, Identity: who, Detail: "another identity registered this provider"})
		}
		delete(s.entries, req.Id)
		delete(s.owners, req.Id)
		s.log.Info("provider deregistered", "id", req.Id, "address", e.Address)
	}
	return &rookeryv1.DeregisterResponse{}, nil
}

// live returns copies of the live entries, fastest first, then by
// address.
func (s *Seed) live() []*rookeryv1.ProviderEntry {
	now := s.cfg.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	out := make([]*rookeryv1.ProviderEntry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, proto.Clone(e).(*rookeryv1.ProviderEntry))
	}
	sort.Slice(out, func(i, j int) bool {
		gi, gj := out[i].Capabilities.GetGflops(), out[j].Capabilities.GetGflops()
		if gi != gj {
			return gi > gj
		}
		return out[i].Address < out[j].Address
	})
	return out
}

// Find implements the Seed service.
func (s *Seed) Find(ctx context.Context, req *rookeryv1.FindRequest) (*rookeryv1.FindResponse, error) {
	if req.N <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "asked for %d providers", req.N)
	}
	if len(req.Requester) > 256 {
		return nil, status.Errorf(codes.InvalidArgument, "requester id of %d bytes", len(req.Requester))
	}
	requester := identityFrom(ctx)
	if requester == "" {
		requester = "anon:" + req.Requester
		if req.Requester == "" {
			requester += newID()
		}
	}
	now := s.cfg.now()
	var found []*rookeryv1.ProviderEntry
	for _, e := range s.live() {
		c := e.Capabilities
		if c.GetMemoryBytes() < req.MinMemoryBytes || c.GetGflops() < req.MinGflops || (req.Gpu && len(c.GetGpus()) == 0) {
			continue
		}
		e = proto.Clone(e).(*rookeryv1.ProviderEntry)
		if s.cfg.key != nil {
			tok, err := SignLease(s.cfg.key, Lease{ProviderID: e.Id, ProviderAddress: e.Address, Requester: requester,
				IssuedAt: now, Expires: now.Add(s.cfg.leaseTTL)})
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
	return nil, status.Errorf(codes.FailedPrecondition, "%d of %d providers match", len(found), req.N)
}

// List implements the Seed service.
func (s *Seed) List(ctx context.Context, _ *rookeryv1.ListRequest) (*rookeryv1.ListResponse, error) {
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
}

// GPUJSON is one accelerator in the HTTP/JSON view.
type GPUJSON struct {
	Name        string `json:"name"`
	MemoryBytes int64  `json:"memory_bytes"`
}

// Handler serves the registry as JSON: GET /v1/providers lists every live
// provider with its machine configuration, health and last heartbeat. GET
// /v1/lease-key returns the public key the seed node signs leases with,
// as --seed-pubkey reads it. The view shows no leases and needs no token.
func (s *Seed) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/lease-key", func(w http.ResponseWriter, r *http.Request) {
		pub := s.LeasePublicKey()
		if pub == nil {
			http.Error(w, "this seed node signs no leases", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, EncodeLeasePublicKey(pub))
	})
	mux.HandleFunc("GET /v1/providers", func(w http.ResponseWriter, r *http.Request) {
		now := s.cfg.now()
		list := s.live()
		out := struct {
			Providers []ProviderJSON `json:"providers"`
			TTLMs     int64          `json:"ttl_ms"`
		}{Providers: make([]ProviderJSON, 0, len(list)), TTLMs: s.cfg.ttl.Milliseconds()}
		for _, e := range list {
			c := e.Capabilities
			p := ProviderJSON{ID: e.Id, Address: e.Address, Name: c.GetName(), Version: c.GetVersion(), Health: "ok",
				LastHeartbeat: time.UnixMilli(e.LastHeartbeatUnixMs).UTC(), Registered: time.UnixMilli(e.RegisteredUnixMs).UTC(),
				Sessions: int(e.Sessions), Limits: c.GetLimits(), OpKinds: len(c.GetOpKinds())}
			if now.Sub(p.LastHeartbeat) > s.cfg.ttl/2 {
				p.Health = "late"
			}
			p.Machine.CPUModel, p.Machine.CPUCores, p.Machine.MemoryBytes = c.GetCpuModel(), int(c.GetCpuCores()), c.GetMemoryBytes()
			p.Machine.OS, p.Machine.Arch, p.Machine.GFLOPS, p.Machine.MemBytesPerSec = c.GetOs(), c.GetArch(), c.GetGflops(), c.GetMemBandwidthBytesPerSec()
			p.Machine.GPUs = []GPUJSON{}
			for _, g := range c.GetGpus() {
				p.Machine.GPUs = append(p.Machine.GPUs, GPUJSON{Name: g.Name, MemoryBytes: g.MemoryBytes})
			}
			out.Providers = append(out.Providers, p)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
	return mux
}

// Need says what a requester needs of each provider it asks a seed node
// for.
type Need struct {
	N         int     // providers wanted
	MinMemory int64   // bytes each must offer
	GPU       bool    // each must have a GPU
	MinGFLOPS float64 // measured speed each must have
	// Requester is the id the leases name when the seed node
	// authenticates nobody; empty: a fresh random one per call.
	Requester string
}

// FindProviders asks the seed node at addr for need.N providers and
// returns their entries, fastest first. Fewer matches than need.N give an
// error matching ErrNotEnough. From a seed node that signs leases, each
// entry carries the lease (ProviderEntry.Lease) to pass to Connect with
// WithLease.
func FindProviders(ctx context.Context, addr string, need Need, opts ...DialOption) ([]*rookeryv1.ProviderEntry, error) {
	cfg := newDialConfig(opts)
	cc, err := cfg.conn(addr)
	if errors.Is(err, ErrInsecure) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("transport: seed %s: %w: %v", addr, ErrUnavailable, err)
	}
	defer cc.Close()
	resp, err := rookeryv1.NewSeedClient(cc).Find(ctx, &rookeryv1.FindRequest{N: int32(need.N), MinMemoryBytes: need.MinMemory, Gpu: need.GPU, MinGflops: need.MinGFLOPS,
		Requester: need.Requester}, grpc.WaitForReady(true))
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			return nil, fmt.Errorf("transport: seed %s: %w: %s", addr, ErrNotEnough, st.Message())
		}
		return nil, fromStatus(ctx, "seed "+addr, err)
	}
	return resp.Providers, nil
}

// Announce registers the server with the seed node at seedAddr under
// advertise (the address requesters dial) and renews the entry by
// heartbeat, a third of the TTL apart, until ctx is done; then it
// deregisters and returns nil. An expired entry is registered again; an
// unreachable seed node is retried every interval without ending the
// loop.
func (s *Server) Announce(ctx context.Context, seedAddr, advertise string, opts ...DialOption) error {
	cfg := newDialConfig(opts)
	cc, err := cfg.conn(seedAddr)
	if errors.Is(err, ErrInsecure) {
		return err
	}
	if err != nil {
		return fmt.Errorf("transport: seed %s: %w: %v", seedAddr, ErrUnavailable, err)
	}
	defer cc.Close()
	sc := rookeryv1.NewSeedClient(cc)
	const retry = time.Second
	id := ""
	interval := retry
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if id == "" {
			resp, err := sc.Register(callCtx, &rookeryv1.RegisterRequest{Address: advertise, Capabilities: s.caps})
			if err == nil {
				id = resp.Id
				s.addID(id)
				interval = max(time.Duration(resp.TtlMs)*time.Millisecond/3, 10*time.Millisecond)
				s.log.Info("registered with seed", "seed", seedAddr, "id", id, "advertise", advertise)
			} else if ctx.Err() == nil {
				s.log.Warn("register with seed", "seed", seedAddr, "err", err)
			}
		} else {
			_, err := sc.Heartbeat(callCtx, &rookeryv1.HeartbeatRequest{Id: id, Sessions: int32(s.Sessions())})
			if status.Code(err) == codes.NotFound {
				s.log.Warn("seed forgot this provider; registering again", "seed", seedAddr)
				id = ""
				cancel()
				continue
			} else if err != nil && ctx.Err() == nil {
				s.log.Warn("heartbeat", "seed", seedAddr, "err", err)
			}
		}
		cancel()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			if id != "" {
				dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, _ = sc.Deregister(dctx, &rookeryv1.DeregisterRequest{Id: id})
				dcancel()
			}
			return nil
		case <-t.C:
		}
	}
}

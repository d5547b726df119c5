package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// ServerOption configures NewServer.
type ServerOption func(*serverConfig)

type serverConfig struct {
	limits     Limits
	logger     *slog.Logger
	name       string
	version    string
	benchTime  time.Duration
	grpcOpts   []grpc.ServerOption
	gpus       []*rookeryv1.GPU
	tokens     *TokenSet
	leaseKey   ed25519.PublicKey
	addresses  []string
	callTime   time.Duration
	clock      Clock
	identity   ed25519.PrivateKey
	peerDial   []DialOption                     // how rings dial other providers (ring.go)
	creds      credentials.TransportCredentials // WithCredentials (ringwire.go)
	noRingWire bool

	proofWindow time.Duration
}

// WithLimits sets the server's limits; zero fields keep their defaults.
func WithLimits(l Limits) ServerOption { return func(c *serverConfig) { c.limits = l } }

// WithLogger sets the structured logger (default: discard).
func WithLogger(l *slog.Logger) ServerOption { return func(c *serverConfig) { c.logger = l } }

// WithName sets the name the provider reports in Describe.
func WithName(name string) ServerOption { return func(c *serverConfig) { c.name = name } }

// WithVersion sets the software version the provider reports.
func WithVersion(v string) ServerOption { return func(c *serverConfig) { c.version = v } }

// WithBenchmark sets how long the start-up micro-benchmark runs (default
// 200ms); 0 skips it and the provider reports no measured speed.
func WithBenchmark(d time.Duration) ServerOption { return func(c *serverConfig) { c.benchTime = d } }

// WithGPUs sets the accelerators the provider reports.
func WithGPUs(gpus ...*rookeryv1.GPU) ServerOption {
	return func(c *serverConfig) { c.gpus = gpus }
}

// WithTokens makes the server require, on every Provider call, a bearer
// token of ts or a client certificate that its TLS configuration verified
// (see Authentication in auth.go).
func WithTokens(ts *TokenSet) ServerOption { return func(c *serverConfig) { c.tokens = ts } }

// WithLeaseKey makes the server require a lease signed by the seed node
// whose public key is pub (see Leases in lease.go) on every Provider call
// but Describe: Open wants one within its validity, later calls one that
// names the session's owner. A lease must name the provider: its address
// must be one of addresses (the address the provider is dialled at, as it
// registers it with the seed node) and its provider id one the seed node
// gave this server in Announce. A server that knows neither refuses every
// lease. Sessions belong to the requester the lease names, and only
// that requester may present it: a lease issued to an authenticated
// identity wants a caller authenticated as it (WithTokens or client
// certificates, named as the seed node names them), a lease issued to
// an unauthenticated requester an unauthenticated caller (see
// leaseIssuedTo). A lease bound to a requester key (the seed node binds
// every lease to the key the requester sent, and names an
// unauthenticated requester by it) wants, on every call, a proof signed
// by that key within WithProofWindow of the server's clock, so that no
// one who merely saw the lease can replay it; a session opened with such
// a lease belongs to that key (see Requester keys in requester.go).
func WithLeaseKey(pub ed25519.PublicKey, addresses ...string) ServerOption {
	return func(c *serverConfig) { c.leaseKey, c.addresses = pub, addresses }
}

// DefaultCallTimeout bounds one Provider call on a server given no
// WithCallTimeout.
const DefaultCallTimeout = 10 * time.Minute

// WithCallTimeout bounds how long one Provider call may run (default
// DefaultCallTimeout; negative: no bound). A call past it is cancelled
// and the requester sees context.DeadlineExceeded.
func WithCallTimeout(d time.Duration) ServerOption { return func(c *serverConfig) { c.callTime = d } }

// WithClock sets the clock that leases are checked against and
// that idle sessions are reaped by (default: the system clock).
func WithClock(c Clock) ServerOption { return func(cfg *serverConfig) { cfg.clock = c } }

// WithServerOptions adds gRPC server options (TLS credentials,
// interceptors, keepalive).
func WithServerOptions(opts ...grpc.ServerOption) ServerOption {
	return func(c *serverConfig) { c.grpcOpts = append(c.grpcOpts, opts...) }
}

// Server serves an exec.Executor over gRPC as the rookery.v1 Provider
// service, with the standard health service and server reflection beside
// it. Each Open on the wire opens a session on the executor; the server
// holds it under a random id until the requester closes it, the idle
// timeout passes, or the server shuts down.
type Server struct {
	rookeryv1.UnimplementedProviderServer

	e       exec.Executor
	cfg     serverConfig
	lim     Limits
	log     *slog.Logger
	caps    *rookeryv1.Capabilities
	grpc    *grpc.Server
	health  *health.Server
	metrics *metrics

	auth     authenticator
	identity ed25519.PrivateKey // signs registrations and Describe challenges

	mu       sync.Mutex
	sessions map[string]*serverSession
	streams  map[*watchedStream]struct{} // calls receiving from their requesters
	reserved int64                       // bytes held by sessions and calls in flight
	closed   bool
	ids      []string // provider ids the seed node gave this server, newest last
	// ringJoined is closed (and replaced) when a session joins a ring
	ringJoined chan struct{}
	// the ring wire's connections (ringwire.go), ended by closeAll
	wires       map[net.Conn]struct{}
	wirePending chan struct{} // a slot for each connection not yet admitted
	stopCtx     context.Context
	stopCancel  context.CancelFunc
	ringWait    time.Duration // how long a ring's probe or hello waits for its member (ringWait; shorter in tests)

	// tests' hooks: overclaim inflates the work a receipt claims,
	// receiptHook runs before a receipt is signed
	overclaim   func(*work)
	receiptHook func(context.Context) error

	stop     chan struct{}
	janitor  sync.WaitGroup
	stopOnce sync.Once
}

type serverSession struct {
	id     string
	part   int
	s      exec.Session
	spec   exec.SessionSpec // as opened, for LocalSteps
	owner  string           // the identity that opened it
	quota  string           // whom it counts against (quotaKey)
	opened time.Time
	perMB  int64 // working bytes of one more micro-batch in flight
	nMB    int   // micro-batches the session holds (SessionSpec.MicroBatchCount)

	// guarded by Server.mu
	bytes    int64            // encoded part plus resident tensors
	resident map[string]int64 // bytes of each tensor Put
	inflight int
	lastUsed time.Time
	used     bool // a call has used it since Open
	closed   bool
	mbs      map[int]bool // micro-batches forwarded since the last Step; the first is paid at Open

	meter meter       // the work since the last receipt (receipts.go)
	ring  *ringMember // the session's ring (ring.go), guarded by Server.mu
}

// NewServer returns a server for e. It measures the machine (the start-up
// micro-benchmark) and starts the idle-session janitor; Serve then serves
// connections and Shutdown or Stop ends everything.
func NewServer(e exec.Executor, opts ...ServerOption) *Server {
	cfg := serverConfig{benchTime: 200 * time.Millisecond, version: Version, name: "rookery-provider", callTime: DefaultCallTimeout, clock: SystemClock,
		proofWindow: DefaultProofWindow}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.clock == nil {
		cfg.clock = SystemClock
	}
	s := &Server{
		e:        e,
		cfg:      cfg,
		lim:      cfg.limits.orDefault(),
		log:      cfg.logger,
		metrics:  newMetrics(),
		sessions: make(map[string]*serverSession),
		streams:  make(map[*watchedStream]struct{}),
		stop:     make(chan struct{}),
		wires:    make(map[net.Conn]struct{}),
		auth:     authenticator{tokens: cfg.tokens},
		identity: newIdentity(cfg.identity),
	}
	s.wirePending = make(chan struct{}, maxWirePending)
	s.ringWait = ringWait
	s.stopCtx, s.stopCancel = context.WithCancel(context.Background())
	s.caps = describeMachine(cfg, s.lim)
	s.caps.IdentityKey = s.IdentityKey()
	s.metrics.gflops.Set(s.caps.Gflops)
	chunk := s.lim.ChunkBytes
	gopts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(chunk + 1<<20),
		grpc.MaxSendMsgSize(chunk + 1<<20),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.ReadBufferSize(bufferSize),
		grpc.WriteBufferSize(bufferSize),
		grpc.ForceServerCodecV2(newFrameCodec()),
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
	}, cfg.grpcOpts...)
	if cfg.creds != nil {
		gopts = append(gopts, grpc.Creds(cfg.creds))
	}
	s.grpc = grpc.NewServer(gopts...)
	rookeryv1.RegisterProviderServer(s.grpc, s)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(rookeryv1.Provider_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(s.grpc)
	if s.reapEvery() > 0 {
		s.janitor.Add(1)
		go s.reap()
	}
	return s
}

// Flow-control windows and socket buffers sized for streaming large
// tensors: with gRPC's 64 KiB defaults a 4 MiB chunk waits on many window
// updates.
const (
	windowSize = 16 << 20
	bufferSize = 1 << 20
)

// Capabilities returns what the server reports in Describe.
func (s *Server) Capabilities() *rookeryv1.Capabilities { return s.caps }

// Serve accepts connections on lis until Shutdown or Stop.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("provider serving", "addr", lis.Addr().String(), "name", s.caps.Name,
		"gflops", s.caps.Gflops, "max_sessions", s.lim.MaxSessions, "max_provider_bytes", s.lim.MaxProviderBytes)
	if s.ringWireServed() {
		lis = newWireMux(lis, s.serveRingWire)
	}
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// RegisterOn registers the Provider service, and no other, on a gRPC
// server that the caller runs (for instance beside a seed node).
func (s *Server) RegisterOn(r grpc.ServiceRegistrar) { rookeryv1.RegisterProviderServer(r, s) }

// Shutdown stops taking calls, reports NOT_SERVING on the health service,
// lets calls in flight finish until ctx is done and then cancels them, and
// closes every session.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		err = ctx.Err()
	}
	s.closeAll()
	return err
}

// Stop cancels every call in flight, closes every session and stops.
func (s *Server) Stop() {
	s.health.Shutdown()
	s.grpc.Stop()
	s.closeAll()
}

func (s *Server) closeAll() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.janitor.Wait()
	s.stopCancel()
	s.mu.Lock()
	s.closed = true
	list := make([]*serverSession, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	for c := range s.wires {
		c.Close()
	}
	s.mu.Unlock()
	for _, ss := range list {
		s.closeSession(ss, "shutdown")
	}
}

// trackWire records a ring wire connection, for closeAll to end; it
// reports false once the server is closed.
func (s *Server) trackWire(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wires[c] = struct{}{}
	return true
}

func (s *Server) untrackWire(c net.Conn) {
	s.mu.Lock()
	delete(s.wires, c)
	s.mu.Unlock()
}

// reapEvery is the janitor's period: a quarter of its shortest timeout,
// or 0 when it has none.
func (s *Server) reapEvery() time.Duration {
	var d time.Duration
	for _, t := range []time.Duration{s.lim.IdleTimeout, s.lim.UnusedTimeout, s.lim.StreamIdleTimeout} {
		if t > 0 && (d == 0 || t < d) {
			d = t
		}
	}
	if d == 0 {
		return 0
	}
	return max(d/4, 10*time.Millisecond)
}

// reap closes sessions that have been idle for longer than the idle
// timeout, and those that no call used within the unused timeout, and
// cuts calls whose requesters stalled (see watch).
func (s *Server) reap() {
	defer s.janitor.Done()
	every := s.reapEvery()
	for {
		select {
		case <-s.stop:
			return
		case now := <-s.cfg.clock.After(every):
			var idle, unused []*serverSession
			s.mu.Lock()
			if s.lim.StreamIdleTimeout > 0 {
				s.cutStalledLocked(now)
			}
			for _, ss := range s.sessions {
				switch {
				case ss.inflight > 0:
				case !ss.used && s.lim.UnusedTimeout > 0 && now.Sub(ss.lastUsed) > s.lim.UnusedTimeout:
					unused = append(unused, ss)
				case s.lim.IdleTimeout > 0 && now.Sub(ss.lastUsed) > s.lim.IdleTimeout:
					idle = append(idle, ss)
				}
			}
			s.mu.Unlock()
			for _, ss := range idle {
				s.closeSession(ss, "idle")
			}
			for _, ss := range unused {
				s.closeSession(ss, "unused since open")
			}
		}
	}
}

// closeSession removes ss, releases its bytes and closes its session.
func (s *Server) closeSession(ss *serverSession, why string) {
	s.mu.Lock()
	if ss.closed {
		s.mu.Unlock()
		return
	}
	s.removeLocked(ss)
	s.mu.Unlock()
	s.closeRemoved(ss, why)
}

// removeLocked removes ss and releases its bytes, with s.mu held; its
// session is then closed by closeRemoved.
func (s *Server) removeLocked(ss *serverSession) {
	ss.closed = true
	delete(s.sessions, ss.id)
	s.reserved -= ss.bytes
	s.metrics.setSessions(len(s.sessions), s.reserved)
}

// closeRemoved closes the session of ss, which removeLocked removed.
func (s *Server) closeRemoved(ss *serverSession, why string) {
	s.mu.Lock()
	ring := ss.ring
	ss.ring = nil
	s.mu.Unlock()
	ring.close()
	if err := ss.s.Close(); err != nil {
		s.log.Warn("closing session", "session", ss.id, "part", ss.part, "err", err)
	}
	s.log.Info("session closed", "session", ss.id, "part", ss.part, "reason", why)
}

// Sessions is the number of open sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// acquire finds an open session of the caller and marks a call in flight
// on it.
func (s *Server) acquire(ctx context.Context, id string) (*serverSession, error) {
	owner := identityFrom(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[id]
	if !ok || ss.closed {
		return nil, fmt.Errorf("%w: session %.40q is not open (closed, expired after %v idle, or never opened)", exec.ErrClosed, id, s.lim.IdleTimeout)
	}
	if ss.owner != owner {
		return nil, &AuthError{Reason: ReasonNotOwner, Identity: owner, Detail: "the session belongs to another requester"}
	}
	ss.inflight++
	ss.used = true
	ss.lastUsed = s.cfg.clock.Now()
	return ss, nil
}

func (s *Server) release(ss *serverSession) {
	s.mu.Lock()
	ss.inflight--
	ss.lastUsed = s.cfg.clock.Now()
	s.mu.Unlock()
}

// reserve takes n bytes of the provider's budget (and of ss's, when ss is
// given) or says which limit refuses them.
func (s *Server) reserve(ss *serverSession, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserveLocked(ss, n)
}

// reserveLocked is reserve with s.mu held.
func (s *Server) reserveLocked(ss *serverSession, n int64) error {
	if ss != nil && ss.closed {
		return fmt.Errorf("%w: session %s was closed during the call", exec.ErrClosed, ss.id)
	}
	if ss != nil && exceeds(ss.bytes+n, s.lim.MaxSessionBytes) {
		return &LimitError{What: "session bytes", Limit: s.lim.MaxSessionBytes, Got: ss.bytes + n, Capacity: true}
	}
	if exceeds(s.reserved+n, s.lim.MaxProviderBytes) {
		return &LimitError{What: "provider bytes", Limit: s.lim.MaxProviderBytes, Got: s.reserved + n, Capacity: true}
	}
	s.reserved += n
	if ss != nil {
		ss.bytes += n
	}
	s.metrics.setSessions(len(s.sessions), s.reserved)
	return nil
}

func (s *Server) unreserve(ss *serverSession, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss != nil && ss.closed {
		// closeSession has released the session's bytes already.
		ss.bytes -= n
		return
	}
	s.reserved -= n
	if ss != nil {
		ss.bytes -= n
	}
	s.metrics.setSessions(len(s.sessions), s.reserved)
}

// Describe implements the Provider service.
func (s *Server) Describe(ctx context.Context, req *rookeryv1.DescribeRequest) (*rookeryv1.Capabilities, error) {
	caps, err := s.describe(req)
	return caps, toStatus(err)
}

// Open implements the Provider service.
func (s *Server) Open(stream rookeryv1.Provider_OpenServer) (err error) {
	defer s.metrics.observe("open", time.Now(), &err)
	rs, ctx, done := s.watch(stream.Context(), "open", stream)
	defer done()
	first := new(rookeryv1.OpenRequest)
	if err := rs.RecvMsg(first); err != nil {
		return toStatus(err)
	}
	spec, err := specFromWire(first.Spec, s.lim.MaxNodes)
	if err != nil {
		return toStatus(err)
	}
	size := first.GraphBytes
	if size <= 0 {
		return toStatus(protocolError("open with graph_bytes %d", size))
	}
	if exceeds(size, s.lim.MaxGraphBytes) {
		return toStatus(&LimitError{What: "graph bytes", Limit: s.lim.MaxGraphBytes, Got: size})
	}
	if exceeds(size, s.lim.MaxSessionBytes) {
		return toStatus(&LimitError{What: "session bytes", Limit: s.lim.MaxSessionBytes, Got: size})
	}
	// Count the session before reading the graph, so that a provider
	// that is full, or a requester at its quota, is refused at once.
	quota := quotaKeyFrom(ctx)
	s.mu.Lock()
	evicted, err := s.admitLocked(quota)
	s.mu.Unlock()
	if evicted != nil {
		s.closeRemoved(evicted, "unused, to admit another requester")
	}
	if err != nil {
		return toStatus(err)
	}
	if err := s.reserve(nil, size); err != nil {
		return toStatus(err)
	}
	kept := false
	defer func() {
		if !kept {
			s.unreserve(nil, size)
		}
	}()
	buf := make([]byte, 0, size)
	buf = append(buf, first.GraphChunk...)
	for int64(len(buf)) < size {
		f := new(rookeryv1.OpenRequest)
		err := rs.RecvMsg(f)
		if err == io.EOF {
			return toStatus(protocolError("graph ended at %d of %d bytes", len(buf), size))
		}
		if err != nil {
			return toStatus(err)
		}
		if f.Spec != nil || int64(len(buf)+len(f.GraphChunk)) > size {
			return toStatus(protocolError("graph frames do not add up to %d bytes", size))
		}
		buf = append(buf, f.GraphChunk...)
	}
	if int64(len(buf)) != size {
		return toStatus(protocolError("graph of %d bytes, announced %d", len(buf), size))
	}
	s.metrics.bytesIn.Add(float64(size))
	g, err := graph.Decode(buf, graph.Limits{MaxBytes: size, MaxNodes: s.lim.MaxNodes, MaxElements: max(s.lim.MaxTensorBytes, 1)})
	buf = nil
	var glim *graph.LimitError
	if errors.As(err, &glim) {
		return toStatus(&LimitError{What: glim.What, Limit: glim.Limit, Got: glim.Got})
	}
	if err != nil {
		return toStatus(err)
	}
	spec.Graph = g
	// Reserve the executor's working memory before it allocates any.
	work, perMB := workingBytes(g, &spec)
	if exceeds(size+work, s.lim.MaxSessionBytes) {
		return toStatus(&LimitError{What: "session bytes", Limit: s.lim.MaxSessionBytes, Got: size + work})
	}
	if err := s.reserve(nil, work); err != nil {
		return toStatus(err)
	}
	defer func() {
		if !kept {
			s.unreserve(nil, work)
		}
	}()
	sess, err := s.e.Open(ctx, spec)
	if err != nil {
		return toStatus(err)
	}
	id := newID()
	now := s.cfg.clock.Now()
	ss := &serverSession{id: id, part: spec.Part, s: sess, spec: spec, owner: identityFrom(ctx), quota: quota, opened: now, perMB: perMB, nMB: spec.MicroBatchCount(), bytes: size + work,
		resident: map[string]int64{}, mbs: map[int]bool{}, lastUsed: now,
		meter: meter{forward: g.TotalCost().FLOPs, requester: requesterKeyOf(ctx), since: now}}
	s.mu.Lock()
	evicted, err = s.admitLocked(quota)
	if err != nil {
		s.mu.Unlock()
		_ = sess.Close()
		return toStatus(err)
	}
	s.sessions[id] = ss
	kept = true
	s.metrics.opened.Inc()
	s.metrics.setSessions(len(s.sessions), s.reserved)
	s.mu.Unlock()
	if evicted != nil {
		s.closeRemoved(evicted, "unused, to admit another requester")
	}
	s.log.Info("session opened", "session", id, "part", spec.Part, "owner", ss.owner, "nodes", g.Len(), "bytes", size, "working_bytes", work)
	return stream.SendAndClose(&rookeryv1.OpenResponse{Session: id})
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Put implements the Provider service.
func (s *Server) Put(stream rookeryv1.Provider_PutServer) (err error) {
	defer s.metrics.observe("put", time.Now(), &err)
	rs, ctx, done := s.watch(stream.Context(), "put", stream)
	defer done()
	r := &frameReader{stream: rs, lim: s.lim}
	first, err := r.first()
	if err != nil {
		return toStatus(err)
	}
	ss, err := s.acquire(ctx, first.Session)
	if err != nil {
		return toStatus(err)
	}
	defer s.release(ss)
	for {
		var name string
		var reserved int64
		r.reserve = func(n int64) error {
			// A replaced tensor frees its old bytes only once the new
			// one is stored, so both count meanwhile.
			if err := s.reserve(ss, n); err != nil {
				return err
			}
			reserved = n
			return nil
		}
		h, t, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if reserved > 0 {
				s.unreserve(ss, reserved)
			}
			return toStatus(err)
		}
		name = h.Name
		if err := ss.s.Put(ctx, name, t); err != nil {
			s.unreserve(ss, reserved)
			return toStatus(err)
		}
		s.mu.Lock()
		old := ss.resident[name]
		ss.resident[name] = reserved
		s.mu.Unlock()
		s.unreserve(ss, old)
	}
	s.metrics.bytesIn.Add(float64(r.bytes))
	s.count(ss, func(w *work) { w.bytesIn += r.bytes })
	return stream.SendAndClose(&rookeryv1.PutResponse{})
}

// Get implements the Provider service.
func (s *Server) Get(req *rookeryv1.GetRequest, stream rookeryv1.Provider_GetServer) (err error) {
	defer s.metrics.observe("get", time.Now(), &err)
	ctx := stream.Context()
	ss, err := s.acquire(ctx, req.Session)
	if err != nil {
		return toStatus(err)
	}
	defer s.release(ss)
	got, err := ss.s.Get(ctx, req.Names...)
	if err != nil {
		return toStatus(err)
	}
	var sent int64
	for _, name := range req.Names {
		t, ok := got[name]
		if !ok {
			return toStatus(&exec.NameError{Part: ss.part, Name: name})
		}
		n, err := sendTensor(stream.Send, &rookeryv1.TensorFrame{Name: name}, t, s.lim.ChunkBytes)
		s.metrics.bytesOut.Add(float64(n))
		if err != nil {
			return err
		}
		sent += n
	}
	s.count(ss, func(w *work) { w.bytesOut += sent })
	return nil
}

// callStream is the server side of Forward and Backward.
type callStream interface {
	Send(*rookeryv1.TensorFrame) error
	RecvMsg(any) error
	Context() context.Context
}

func (s *Server) call(stream callStream, forward bool, run func(ctx context.Context, sess exec.Session, mb int, in map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error)) error {
	method := "backward"
	if forward {
		method = "forward"
	}
	rs, ctx, done := s.watch(stream.Context(), method, stream)
	defer done()
	var held int64
	defer func() {
		if held > 0 {
			s.unreserve(nil, held)
		}
	}()
	r := &frameReader{stream: rs, lim: s.lim, reserve: func(n int64) error {
		if err := s.reserve(nil, n); err != nil {
			return err
		}
		held += n
		return nil
	}}
	first, err := r.first()
	if err != nil {
		return toStatus(err)
	}
	ss, err := s.acquire(ctx, first.Session)
	if err != nil {
		return toStatus(err)
	}
	defer s.release(ss)
	// An index the session does not hold is refused before any memory
	// is reserved for it.
	if first.MicroBatch < 0 || first.MicroBatch >= int64(ss.nMB) {
		return toStatus(&exec.OrderError{Part: ss.part, MicroBatch: -1, Reason: fmt.Sprintf("micro-batch index %d out of range [0, %d)", first.MicroBatch, ss.nMB)})
	}
	if forward {
		if err := s.holdMicroBatch(ss, int(first.MicroBatch)); err != nil {
			return toStatus(err)
		}
	}
	in := make(map[int64]*tensor.Dense)
	for {
		h, t, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return toStatus(err)
		}
		if _, dup := in[h.Id]; dup {
			return toStatus(protocolError("node %d sent twice", h.Id))
		}
		in[h.Id] = t
	}
	s.metrics.bytesIn.Add(float64(r.bytes))
	out, err := run(ctx, ss.s, int(first.MicroBatch), in)
	if err != nil {
		return toStatus(err)
	}
	ids := make([]int64, 0, len(out))
	for id := range out {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var sent int64
	for _, id := range ids {
		n, err := sendTensor(stream.Send, &rookeryv1.TensorFrame{Id: id}, out[id], s.lim.ChunkBytes)
		s.metrics.bytesOut.Add(float64(n))
		if err != nil {
			return err
		}
		sent += n
	}
	s.count(ss, func(w *work) {
		w.bytesIn += r.bytes
		w.bytesOut += sent
		if forward {
			w.flops = addSat(w.flops, ss.meter.forward)
			w.microBatches++
		} else {
			w.flops = addSat(w.flops, mulSat(ss.meter.forward, 2))
		}
	})
	return nil
}

// Forward implements the Provider service.
func (s *Server) Forward(stream rookeryv1.Provider_ForwardServer) (err error) {
	defer s.metrics.observe("forward", time.Now(), &err)
	return s.call(stream, true, func(ctx context.Context, sess exec.Session, mb int, in map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
		return sess.Forward(ctx, mb, in)
	})
}

// Backward implements the Provider service.
func (s *Server) Backward(stream rookeryv1.Provider_BackwardServer) (err error) {
	defer s.metrics.observe("backward", time.Now(), &err)
	return s.call(stream, false, func(ctx context.Context, sess exec.Session, mb int, in map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
		return sess.Backward(ctx, mb, in)
	})
}

// Step implements the Provider service.
func (s *Server) Step(ctx context.Context, req *rookeryv1.StepRequest) (_ *rookeryv1.StepResponse, err error) {
	defer s.metrics.observe("step", time.Now(), &err)
	ss, err := s.acquire(ctx, req.Session)
	if err != nil {
		return nil, toStatus(err)
	}
	defer s.release(ss)
	if err := ss.s.Step(ctx); err != nil {
		return nil, toStatus(err)
	}
	s.count(ss, func(w *work) { w.steps++ })
	s.releaseMicroBatches(ss)
	return &rookeryv1.StepResponse{}, nil
}

// LocalSteps implements the Provider service. The call counts as one in
// flight on the session for as long as it runs, so the janitor never
// reaps a session busy with local steps; it is a unary call, with no
// stream to stall, and only the call timeout (WithCallTimeout) bounds
// it. Cancelling the call stops the steps between two of them.
func (s *Server) LocalSteps(ctx context.Context, req *rookeryv1.LocalStepsRequest) (_ *rookeryv1.LocalStepsResponse, err error) {
	defer s.metrics.observe("local_steps", time.Now(), &err)
	ss, err := s.acquire(ctx, req.Session)
	if err != nil {
		return nil, toStatus(err)
	}
	defer s.release(ss)
	lr, err := localRequestFromWire(req)
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := exec.LocalSteps(ctx, ss.s, &ss.spec, lr)
	if err != nil {
		return nil, toStatus(err)
	}
	s.count(ss, func(w *work) {
		w.steps += int64(res.Steps)
		w.flops = addSat(w.flops, mulSat(mulSat(ss.meter.forward, 3), int64(res.Steps)))
		w.bytesIn += int64(len(lr.Update))
		w.bytesOut += int64(len(res.Delta))
	})
	return &rookeryv1.LocalStepsResponse{Steps: int64(res.Steps), Rows: res.Rows, Loss: res.Loss, Delta: res.Delta}, nil
}

// localRequestFromWire checks the figures of a LocalSteps request before
// any of them becomes an int.
func localRequestFromWire(req *rookeryv1.LocalStepsRequest) (exec.LocalRequest, error) {
	if req.Steps < 1 || req.Steps > exec.MaxLocalSteps {
		return exec.LocalRequest{}, fmt.Errorf("%w: %d local steps, want 1 to %d", exec.ErrSpec, req.Steps, exec.MaxLocalSteps)
	}
	if req.DeltaCodec > math.MaxUint8 {
		return exec.LocalRequest{}, fmt.Errorf("%w: delta codec %d", exec.ErrSpec, req.DeltaCodec)
	}
	lr := exec.LocalRequest{Steps: int(req.Steps), Seed: req.Seed, Start: req.Start, Update: req.Update, Delta: compress.Codec(req.DeltaCodec)}
	return lr, lr.Validate()
}

// Close implements the Provider service. Closing a session that is not
// open succeeds, as Session.Close does; closing another requester's
// session is refused.
func (s *Server) Close(ctx context.Context, req *rookeryv1.CloseRequest) (_ *rookeryv1.CloseResponse, err error) {
	defer s.metrics.observe("close", time.Now(), &err)
	owner := identityFrom(ctx)
	s.mu.Lock()
	ss, ok := s.sessions[req.Session]
	s.mu.Unlock()
	if ok && ss.owner != owner {
		return nil, toStatus(&AuthError{Reason: ReasonNotOwner, Identity: owner, Detail: "the session belongs to another requester"})
	}
	if ok {
		s.closeSession(ss, "closed by requester")
	}
	return &rookeryv1.CloseResponse{}, nil
}

// sortedKinds returns the op kinds the executor runs.
func sortedKinds() []string {
	ks := graph.Kinds()
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	sort.Strings(out)
	return out
}

package transport

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Admission control: what a provider checks before a requester's call
// reaches a handler (authenticate the caller, check its lease, bound the
// call's time) and what it reserves before a session or a micro-batch is
// let in (the session's estimated working memory).

var (
	providerPrefix = "/" + rookeryv1.Provider_ServiceDesc.ServiceName + "/"
	describeMethod = rookeryv1.Provider_Describe_FullMethodName
	openMethod     = rookeryv1.Provider_Open_FullMethodName
)

// authorize returns ctx carrying the caller's identity (the lease's
// requester when the server wants leases) and bounded by the call
// timeout, or the reason the call is refused. Only Provider calls are
// checked; health and reflection stay open.
func (s *Server) authorize(ctx context.Context, method string) (context.Context, context.CancelFunc, error) {
	if !strings.HasPrefix(method, providerPrefix) {
		return ctx, func() {}, nil
	}
	if method == ringPassMethod {
		// Another provider's call, admitted by the ring key it carries
		// (RingPass), bounded like every call.
		cancel := context.CancelFunc(func() {})
		if s.cfg.callTime > 0 {
			ctx, cancel = context.WithTimeout(ctx, s.cfg.callTime)
		}
		return ctx, cancel, nil
	}
	id, creds, err := s.auth.identify(ctx)
	if err != nil {
		return nil, nil, err
	}
	caller := id
	if s.cfg.leaseKey != nil && method != describeMethod {
		l, err := ParseLease(creds.lease, s.cfg.leaseKey)
		if err != nil {
			return nil, nil, err
		}
		if err := s.leaseNamesMe(l); err != nil {
			return nil, nil, err
		}
		if err := leaseIssuedTo(l, id); err != nil {
			return nil, nil, err
		}
		now := s.cfg.clock.Now()
		if method == openMethod {
			if err := l.CheckTime(now); err != nil {
				return nil, nil, err
			}
		}
		if err := CheckLeaseProof(creds.proof, l, creds.lease, method, now, s.cfg.proofWindow); err != nil {
			return nil, nil, err
		}
		if err := connectionKeyMatches(ctx, l); err != nil {
			return nil, nil, err
		}
		id = l.owner()
		if len(l.RequesterKey) > 0 {
			ctx = withRequesterKey(ctx, l.RequesterKey)
		}
	}
	ctx = withIdentity(ctx, id)
	ctx = withQuotaKey(ctx, quotaKey(ctx, caller))
	cancel := context.CancelFunc(func() {})
	if s.cfg.callTime > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.cfg.callTime)
	}
	return ctx, cancel, nil
}

// connectionKeyMatches checks, for a connection whose transport
// authenticated the caller's ed25519 key (a libp2p stream from
// transport/p2p: its peer address has an IdentityKey method), that a
// lease bound to a requester key is that key's: a lease and proof seen
// by anyone else cannot be replayed from another peer, even within the
// proof window.
func connectionKeyMatches(ctx context.Context, l *Lease) error {
	if len(l.RequesterKey) == 0 {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return nil
	}
	ka, ok := p.Addr.(interface{ IdentityKey() ed25519.PublicKey })
	if !ok {
		return nil
	}
	if k := ka.IdentityKey(); !l.RequesterKey.Equal(k) {
		return &AuthError{Reason: ReasonOtherRequester, Identity: p.Addr.String(),
			Detail: fmt.Sprintf("the lease is bound to requester key %s, but the connection comes from peer %.80s", EncodeIdentityKey(l.RequesterKey), p.Addr.String())}
	}
	return nil
}

// anonRequester starts the requester of a lease that a seed node issued
// to a caller it did not authenticate.
const anonRequester = "anon:"

// leaseIssuedTo checks that the caller, whose identity on this provider
// is caller ("" when anonymous), is the requester the lease names, so
// that no one else can replay it. A lease names an authenticated
// identity ("token:NAME", "cert:NAME") when the seed node authenticated
// the requester: the caller must then authenticate to the provider as
// the same identity (the seed node and its providers name requesters
// alike: the same token names, or certificates from the same
// authority). A lease for an unauthenticated requester names its
// requester key ("key:...", checked by CheckLeaseProof on every call),
// or, from a seed node given no key, is "anon:..."; only an anonymous
// caller may present either.
func leaseIssuedTo(l *Lease, caller string) error {
	if strings.HasPrefix(l.Requester, anonRequester) || strings.HasPrefix(l.Requester, keyRequester) {
		if caller == "" {
			return nil
		}
	} else if caller == l.Requester {
		return nil
	}
	who := caller
	if who == "" {
		who = "an anonymous caller"
	}
	return &AuthError{Reason: ReasonOtherRequester, Identity: caller,
		Detail: fmt.Sprintf("the lease was issued to %.80q, not to %.80q", l.Requester, who)}
}

// quotaKey returns whom a caller's sessions count against: its
// authenticated identity, or, for an anonymous caller, the host it calls
// from (a lease for an anonymous requester names whatever the requester
// asked, so it counts for nothing).
func quotaKey(ctx context.Context, caller string) string {
	if caller != "" {
		return caller
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "anonymous"
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		host = p.Addr.String()
	}
	return "host:" + host
}

// quotaKeyCtx is the context key of a caller's quota key.
type quotaKeyCtx struct{}

func withQuotaKey(ctx context.Context, k string) context.Context {
	return context.WithValue(ctx, quotaKeyCtx{}, k)
}

// quotaKeyFrom returns the key withQuotaKey stored, or "".
func quotaKeyFrom(ctx context.Context) string {
	k, _ := ctx.Value(quotaKeyCtx{}).(string)
	return k
}

// leaseNamesMe checks that l names this provider: its address, and its
// provider id once the seed node has given one.
func (s *Server) leaseNamesMe(l *Lease) error {
	s.mu.Lock()
	ids := s.ids
	s.mu.Unlock()
	known := len(ids) > 0 || len(s.cfg.addresses) > 0
	switch {
	case !known:
		return &AuthError{Reason: ReasonOtherProvider, Identity: l.Requester, Detail: "this provider knows neither its address nor its seed id, so no lease names it"}
	case len(s.cfg.addresses) > 0 && !slices.Contains(s.cfg.addresses, l.ProviderAddress):
		return &AuthError{Reason: ReasonOtherProvider, Identity: l.Requester, Detail: "the lease is for " + l.ProviderAddress}
	case len(ids) > 0 && !slices.Contains(ids, l.ProviderID):
		return &AuthError{Reason: ReasonOtherProvider, Identity: l.Requester, Detail: "the lease is for provider " + l.ProviderID}
	}
	return nil
}

// maxIDs bounds how many seed ids a provider remembers: leases issued
// before a re-registration stay valid for a while.
const maxIDs = 8

// addID records an id the seed node gave the server.
func (s *Server) addID(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.ids, id) {
		return
	}
	s.ids = append(s.ids, id)
	if len(s.ids) > maxIDs {
		s.ids = slices.Clone(s.ids[len(s.ids)-maxIDs:])
	}
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, cancel, err := s.authorize(ctx, info.FullMethod)
	if err != nil {
		s.log.Warn("call refused", "method", info.FullMethod, "err", err)
		return nil, toStatus(err)
	}
	defer cancel()
	return handler(ctx, req)
}

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, cancel, err := s.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		s.log.Warn("call refused", "method", info.FullMethod, "err", err)
		return toStatus(err)
	}
	defer cancel()
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}

// workingBytes estimates the memory an executor needs for a session
// beyond the encoded part: a gradient and the solver's state per
// parameter, plus, per micro-batch in flight, every value the forward
// pass keeps and its gradient in the backward pass. base covers one
// micro-batch; each further micro-batch in flight adds perMB.
func workingBytes(g *graph.Graph, spec *exec.SessionSpec) (base, perMB int64) {
	tc := g.TotalCost()
	params := tc.ParamBytes
	state := int64(0)
	switch spec.Solver.Kind {
	case exec.SolverAdam, exec.SolverAdamW:
		state = 2
	case exec.SolverSGD:
		if spec.Solver.Momentum != 0 {
			state = 1
		}
	default:
		state = 1
	}
	acts := max(tc.OutputBytes-params, 0)
	perMB = acts
	train := int64(1)
	if !spec.EvalMode {
		perMB = mulSat(acts, 2)
		train = 1 + state
	}
	return addSat(mulSat(params, train), perMB), perMB
}

func mulSat(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > (1<<63-1)/b {
		return 1<<63 - 1
	}
	return a * b
}

func addSat(a, b int64) int64 {
	if a > 1<<63-1-b {
		return 1<<63 - 1
	}
	return a + b
}

// holdMicroBatch reserves the working memory of micro-batch mb when it is
// a further one in flight since the session's last Step.
func (s *Server) holdMicroBatch(ss *serverSession, mb int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.mbs[mb] {
		return nil
	}
	if len(ss.mbs) > 0 {
		if err := s.reserveLocked(ss, ss.perMB); err != nil {
			return err
		}
	}
	ss.mbs[mb] = true
	return nil
}

// releaseMicroBatches returns what holdMicroBatch reserved, after a Step.
func (s *Server) releaseMicroBatches(ss *serverSession) {
	s.mu.Lock()
	n := int64(max(len(ss.mbs)-1, 0))
	clear(ss.mbs)
	s.mu.Unlock()
	s.unreserve(ss, n*ss.perMB)
}

// Reserved is the memory the server accounts for now: encoded parts,
// resident tensors, the executors' estimated working memory and the
// tensors of calls in flight. It never exceeds the limit on provider
// bytes.
func (s *Server) Reserved() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserved
}

// admitLocked decides, with s.mu held, whether the requester whose quota
// key is key may open one more session. A requester at its quota is
// refused. When the provider is full, the oldest session that no call
// has used since its Open, of the requester holding the most sessions,
// makes room (it is returned, already removed, for the caller to close
// outside s.mu) when that requester holds more than key would.
func (s *Server) admitLocked(key string) (evicted *serverSession, err error) {
	if s.closed {
		return nil, s.sessionsFull(len(s.sessions) + 1)
	}
	held := map[string]int{}
	for _, ss := range s.sessions {
		held[ss.quota]++
	}
	// A quota of MaxSessions or more is the limit on sessions itself.
	if q := s.lim.MaxSessionsPerIdentity; q >= 0 && (q < s.lim.MaxSessions || s.lim.MaxSessions < 0) && held[key]+1 > q {
		return nil, &LimitError{What: "sessions per identity", Limit: int64(q), Got: int64(held[key] + 1), Capacity: true, Provider: s.providerName()}
	}
	if s.lim.MaxSessions < 0 || len(s.sessions)+1 <= s.lim.MaxSessions {
		return nil, nil
	}
	var victim *serverSession
	for _, ss := range s.sessions {
		if ss.used || ss.inflight > 0 || held[ss.quota] <= held[key]+1 {
			continue
		}
		if victim == nil || held[ss.quota] > held[victim.quota] ||
			(held[ss.quota] == held[victim.quota] && (ss.opened.Before(victim.opened) || ss.opened.Equal(victim.opened) && ss.id < victim.id)) {
			victim = ss
		}
	}
	if victim == nil {
		return nil, s.sessionsFull(len(s.sessions) + 1)
	}
	s.removeLocked(victim)
	return victim, nil
}

func (s *Server) sessionsFull(n int) error {
	return &LimitError{What: "sessions", Limit: int64(s.lim.MaxSessions), Got: int64(n), Capacity: true, Provider: s.providerName()}
}

// providerName names the server in errors: its name, and the address it
// is dialled at when it knows it.
func (s *Server) providerName() string {
	if len(s.cfg.addresses) > 0 {
		return s.caps.GetName() + " at " + s.cfg.addresses[0]
	}
	return s.caps.GetName()
}

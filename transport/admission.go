package transport

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc"

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
	id, creds, err := s.auth.identify(ctx)
	if err != nil {
		return nil, nil, err
	}
	if s.cfg.leaseKey != nil && method != describeMethod {
		l, err := ParseLease(creds.lease, s.cfg.leaseKey)
		if err != nil {
			return nil, nil, err
		}
		if err := s.leaseNamesMe(l); err != nil {
			return nil, nil, err
		}
		if method == openMethod {
			if err := l.CheckTime(s.cfg.clock.Now()); err != nil {
				return nil, nil, err
			}
		}
		id = "lease:" + l.Requester
	}
	ctx = withIdentity(ctx, id)
	cancel := context.CancelFunc(func() {})
	if s.cfg.callTime > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.cfg.callTime)
	}
	return ctx, cancel, nil
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

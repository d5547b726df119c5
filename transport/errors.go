package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Sentinel errors to branch on with errors.Is.
var (
	// ErrLimit marks a request that exceeds a limit of the provider. The
	// error is a *LimitError.
	ErrLimit = errors.New("transport: limit exceeded")
	// ErrUnavailable marks a provider or seed node that cannot be reached.
	// It is exec.ErrUnavailable, so code that knows only the exec
	// interfaces can tell a lost provider from a refused call.
	ErrUnavailable = exec.ErrUnavailable
	// ErrProtocol marks a peer that broke the framing rules of the wire
	// protocol (a tensor's bytes that do not add up, a frame out of place).
	ErrProtocol = errors.New("transport: protocol violation")
	// ErrUnauthenticated marks a call without valid credentials: no
	// token, a wrong one, or a lease that is missing, malformed, badly
	// signed, expired or not yet valid. The error is an *AuthError.
	ErrUnauthenticated = errors.New("transport: unauthenticated")
	// ErrPermissionDenied marks a call whose credentials are valid but do
	// not allow it: a lease for another provider, or another requester's
	// session. The error is an *AuthError.
	ErrPermissionDenied = errors.New("transport: permission denied")
	// ErrInvalidArgument marks a request with a field out of its range
	// (a speed that is not a finite number within its cap, say).
	ErrInvalidArgument = errors.New("transport: invalid argument")
	// ErrInsecure marks a clear-text connection or listener beyond
	// loopback that was not explicitly allowed.
	ErrInsecure = errors.New("transport: clear text beyond loopback")
)

// DialError is a provider or seed node that did not answer within the
// dial timeout. It matches ErrUnavailable.
type DialError struct {
	Addr    string        // the address dialled
	Peer    string        // what was expected there: "provider", "seed node"
	Timeout time.Duration // how long it was waited for
	Err     error         // the last connection error, or what was seen instead
}

func (e *DialError) Error() string {
	return fmt.Sprintf("transport: dial %s: no %s answered within %v: %v", e.Addr, e.Peer, e.Timeout, e.Err)
}

// Unwrap returns ErrUnavailable and the connection error.
func (e *DialError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// AuthReason says why an *AuthError refused a call.
type AuthReason string

// The reasons of an *AuthError. The first group matches
// ErrUnauthenticated, the second ErrPermissionDenied.
const (
	ReasonMissing     AuthReason = "missing"       // no credential where one is required
	ReasonMalformed   AuthReason = "malformed"     // a credential that cannot be read
	ReasonBadToken    AuthReason = "bad token"     // a bearer token that is not allowed
	ReasonSignature   AuthReason = "bad signature" // a lease not signed by the seed node's key
	ReasonExpired     AuthReason = "expired"       // a lease past its expiry
	ReasonNotYetValid AuthReason = "not yet valid" // a lease before its issue time
	ReasonUnverified  AuthReason = "unverified"    // an address that does not answer with the key that registered it
	ReasonKeyProof    AuthReason = "key proof"     // a call with a key-bound lease and no fresh proof by that key

	ReasonOtherProvider  AuthReason = "other provider"  // a lease that names another provider
	ReasonNotOwner       AuthReason = "not owner"       // a session or entry that belongs to another identity
	ReasonOtherRequester AuthReason = "other requester" // a lease issued to another identity than the caller's
)

// AuthError is a refused credential or identity.
type AuthError struct {
	Reason   AuthReason
	Identity string // the caller's identity, when it is known
	Detail   string
}

func (e *AuthError) Error() string {
	var msg string
	if e.denied() {
		msg = "transport: permission denied: " + string(e.Reason)
	} else {
		msg = "transport: unauthenticated: " + string(e.Reason)
	}
	if e.Identity != "" {
		msg += " (identity " + e.Identity + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *AuthError) denied() bool {
	return e.Reason == ReasonOtherProvider || e.Reason == ReasonNotOwner || e.Reason == ReasonOtherRequester
}

// Is makes errors.Is match ErrPermissionDenied or ErrUnauthenticated,
// according to the reason.
func (e *AuthError) Is(t error) bool {
	if e.denied() {
		return t == ErrPermissionDenied
	}
	return t == ErrUnauthenticated
}

// LimitError says which limit a request exceeded. Capacity limits
// (sessions, resident bytes) are retryable later; size limits (nodes, one
// tensor, one graph) are not.
type LimitError struct {
	What     string // "sessions", "sessions per identity", "nodes", "tensor bytes", "session bytes", "provider bytes", "graph bytes", ...
	Limit    int64
	Got      int64
	Capacity bool   // the limit is on what is in use, not on the request alone
	Provider string // the provider whose limit it is (its name, and address when it knows it), when it said
}

func (e *LimitError) Error() string {
	if e.Provider != "" {
		return fmt.Sprintf("transport: provider %s: %s: %d exceeds the limit of %d", e.Provider, e.What, e.Got, e.Limit)
	}
	return fmt.Sprintf("transport: %s: %d exceeds the limit of %d", e.What, e.Got, e.Limit)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(t error) bool { return t == ErrLimit }

// protocolError returns an error matching ErrProtocol.
func protocolError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// toStatus turns an error of the executor, of graph decoding or of the
// server's own checks into a gRPC status error whose details carry the
// typed error's fields. It is the only place where errors become codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isTyped(err) {
		return err
	}
	d := &rookeryv1.ErrorDetail{}
	code := codes.Internal
	var (
		specErr  *exec.SpecError
		mbErr    *exec.MicroBatchLimitError
		feedErr  *exec.FeedError
		nameErr  *exec.NameError
		orderErr *exec.OrderError
		runErr   *exec.RunError
		limErr   *LimitError
		glimErr  *graph.LimitError
		authErr  *AuthError
	)
	switch {
	case errors.As(err, &authErr):
		d.Kind, d.Reason, d.Name, d.Sentinel = rookeryv1.ErrorDetail_KIND_AUTH, authErr.Detail, authErr.Identity, string(authErr.Reason)
		code = codes.Unauthenticated
		if authErr.denied() {
			code = codes.PermissionDenied
		}
	case errors.As(err, &limErr):
		// A limit's name field carries the provider.
		d.Kind, d.LimitWhat, d.Limit, d.Got, d.Name = rookeryv1.ErrorDetail_KIND_LIMIT, limErr.What, limErr.Limit, limErr.Got, limErr.Provider
		code = codes.InvalidArgument
		if limErr.Capacity {
			code = codes.ResourceExhausted
		}
	case errors.As(err, &glimErr):
		d.Kind, d.Sentinel, d.LimitWhat, d.Limit, d.Got = rookeryv1.ErrorDetail_KIND_GRAPH, "limit", glimErr.What, glimErr.Limit, glimErr.Got
		code = codes.InvalidArgument
	case errors.As(err, &mbErr):
		d.Kind, d.Part, d.Node, d.Limit, d.Got = rookeryv1.ErrorDetail_KIND_MICRO_BATCHES, int32(mbErr.Part), -1, int64(mbErr.Limit), int64(mbErr.MicroBatches)
		code = codes.InvalidArgument
	case errors.As(err, &specErr):
		d.Kind, d.Part, d.Node, d.Reason = rookeryv1.ErrorDetail_KIND_SPEC, int32(specErr.Part), specErr.Node, specErr.Reason
		code = codes.InvalidArgument
	case errors.As(err, &feedErr):
		d.Kind, d.Part, d.Node, d.Name = rookeryv1.ErrorDetail_KIND_FEED, int32(feedErr.Part), feedErr.Node, feedErr.Name
		d.MicroBatch, d.Reason = int32(feedErr.MicroBatch), feedErr.Reason
		d.WantShape, d.GotShape = shapeToWire(feedErr.Want), shapeToWire(feedErr.Got)
		d.WantDtype, d.GotDtype = feedErr.WantDType, feedErr.GotDType
		code = codes.InvalidArgument
	case errors.As(err, &nameErr):
		d.Kind, d.Part, d.Name = rookeryv1.ErrorDetail_KIND_NAME, int32(nameErr.Part), nameErr.Name
		code = codes.NotFound
	case errors.As(err, &orderErr):
		d.Kind, d.Part, d.MicroBatch, d.Reason = rookeryv1.ErrorDetail_KIND_ORDER, int32(orderErr.Part), int32(orderErr.MicroBatch), orderErr.Reason
		code = codes.FailedPrecondition
	case errors.As(err, &runErr):
		d.Kind, d.Part, d.MicroBatch, d.Phase = rookeryv1.ErrorDetail_KIND_RUN, int32(runErr.Part), int32(runErr.MicroBatch), runErr.Phase
		if runErr.Err != nil {
			d.Reason = runErr.Err.Error()
		}
		code = codes.Internal
	case errors.Is(err, exec.ErrClosed):
		d.Kind, d.Reason = rookeryv1.ErrorDetail_KIND_CLOSED, err.Error()
		code = codes.FailedPrecondition
	case errors.Is(err, exec.ErrSolver):
		d.Kind, d.Reason = rookeryv1.ErrorDetail_KIND_SOLVER, err.Error()
		code = codes.InvalidArgument
	case errors.Is(err, exec.ErrSpec):
		d.Kind, d.Part, d.Node, d.Reason = rookeryv1.ErrorDetail_KIND_SPEC, -1, -1, err.Error()
		code = codes.InvalidArgument
	case errors.Is(err, exec.ErrFeed):
		d.Kind, d.Part, d.Node, d.MicroBatch, d.Reason = rookeryv1.ErrorDetail_KIND_FEED, -1, -1, -1, err.Error()
		code = codes.InvalidArgument
	case errors.Is(err, graph.ErrVersion):
		d.Kind, d.Sentinel, d.Reason = rookeryv1.ErrorDetail_KIND_GRAPH, "version", err.Error()
		code = codes.InvalidArgument
	case errors.Is(err, graph.ErrMalformed):
		d.Kind, d.Sentinel, d.Reason = rookeryv1.ErrorDetail_KIND_GRAPH, "malformed", err.Error()
		code = codes.InvalidArgument
	case errors.Is(err, graph.ErrInvalid):
		d.Kind, d.Sentinel, d.Reason = rookeryv1.ErrorDetail_KIND_GRAPH, "invalid", err.Error()
		code = codes.InvalidArgument
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrStalled):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, ErrNoRequesterKey):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
	st, derr := status.New(code, err.Error()).WithDetails(d)
	if derr != nil {
		return status.Error(code, err.Error())
	}
	return st.Err()
}

// isTyped reports whether err is one of the errors that toStatus carries
// in detail (a status error that wraps nothing is passed through as is).
func isTyped(err error) bool {
	var limErr *LimitError
	var authErr *AuthError
	return errors.As(err, &limErr) || errors.As(err, &authErr) || errors.Is(err, exec.ErrClosed) || errors.Is(err, exec.ErrSpec) ||
		errors.Is(err, exec.ErrFeed) || errors.Is(err, exec.ErrUnknownName) || errors.Is(err, exec.ErrOrder) ||
		errors.Is(err, graph.ErrInvalid) || errors.Is(err, graph.ErrMalformed) || errors.Is(err, graph.ErrLimit)
}

// fromStatus turns a gRPC error back into the typed error that the
// provider's executor returned. what names the call for errors without
// detail. ctx is the call's context: a call cut short by the caller's own
// context returns that context's error.
func fromStatus(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, det := range st.Details() {
		d, ok := det.(*rookeryv1.ErrorDetail)
		if !ok {
			continue
		}
		switch d.Kind {
		case rookeryv1.ErrorDetail_KIND_SPEC:
			return &exec.SpecError{Part: int(d.Part), Node: d.Node, Reason: d.Reason}
		case rookeryv1.ErrorDetail_KIND_MICRO_BATCHES:
			return &exec.MicroBatchLimitError{Part: int(d.Part), MicroBatches: int(clampInt(d.Got)), Limit: int(clampInt(d.Limit))}
		case rookeryv1.ErrorDetail_KIND_FEED:
			return &exec.FeedError{Part: int(d.Part), Node: d.Node, Name: d.Name, MicroBatch: int(d.MicroBatch), Reason: d.Reason,
				Want: shapeFromWire(d.WantShape), Got: shapeFromWire(d.GotShape), WantDType: d.WantDtype, GotDType: d.GotDtype}
		case rookeryv1.ErrorDetail_KIND_NAME:
			return &exec.NameError{Part: int(d.Part), Name: d.Name}
		case rookeryv1.ErrorDetail_KIND_ORDER:
			return &exec.OrderError{Part: int(d.Part), MicroBatch: int(d.MicroBatch), Reason: d.Reason}
		case rookeryv1.ErrorDetail_KIND_RUN:
			return &exec.RunError{Part: int(d.Part), MicroBatch: int(d.MicroBatch), Phase: d.Phase, Err: errors.New(d.Reason)}
		case rookeryv1.ErrorDetail_KIND_CLOSED:
			return fmt.Errorf("%w: %s", exec.ErrClosed, d.Reason)
		case rookeryv1.ErrorDetail_KIND_SOLVER:
			return fmt.Errorf("%w: %s", exec.ErrSolver, d.Reason)
		case rookeryv1.ErrorDetail_KIND_LIMIT:
			return &LimitError{What: d.LimitWhat, Limit: d.Limit, Got: d.Got, Capacity: st.Code() == codes.ResourceExhausted, Provider: d.Name}
		case rookeryv1.ErrorDetail_KIND_AUTH:
			return &AuthError{Reason: AuthReason(d.Sentinel), Identity: d.Name, Detail: d.Reason}
		case rookeryv1.ErrorDetail_KIND_GRAPH:
			switch d.Sentinel {
			case "limit":
				return &graph.LimitError{What: d.LimitWhat, Limit: d.Limit, Got: d.Got}
			case "version":
				return fmt.Errorf("%w: %s", graph.ErrVersion, d.Reason)
			case "malformed":
				return fmt.Errorf("%w: %s", graph.ErrMalformed, d.Reason)
			default:
				return fmt.Errorf("%w: %s", graph.ErrInvalid, d.Reason)
			}
		}
	}
	switch st.Code() {
	case codes.Canceled:
		return fmt.Errorf("transport: %s: %w", what, context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("transport: %s: %w", what, context.DeadlineExceeded)
	case codes.Unavailable:
		return fmt.Errorf("transport: %s: %w: %s", what, ErrUnavailable, st.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("transport: %s: %w", what, &AuthError{Reason: ReasonMissing, Detail: st.Message()})
	case codes.PermissionDenied:
		return fmt.Errorf("transport: %s: %w", what, &AuthError{Reason: ReasonNotOwner, Detail: st.Message()})
	case codes.FailedPrecondition:
		if msg := st.Message(); strings.HasPrefix(msg, ErrNoRequesterKey.Error()) {
			return fmt.Errorf("transport: %s: %w%s", what, ErrNoRequesterKey, strings.TrimPrefix(msg, ErrNoRequesterKey.Error()))
		}
	case codes.InvalidArgument:
		if msg := st.Message(); len(msg) > 0 {
			return fmt.Errorf("transport: %s: %w", what, errors.New(msg))
		}
	}
	return fmt.Errorf("transport: %s: %s: %s", what, st.Code(), st.Message())
}

func shapeToWire(s graph.Shape) []int64 {
	if s == nil {
		return nil
	}
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}

func shapeFromWire(s []int64) graph.Shape {
	if s == nil {
		return nil
	}
	out := make(graph.Shape, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

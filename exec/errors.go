package exec

import (
	"errors"
	"fmt"

	"github.com/rookery-ml/rookery/graph"
)

// Sentinel errors to branch on with errors.Is. The typed errors below match
// them.
var (
	// ErrClosed marks a call on a closed session or pipeline.
	ErrClosed = errors.New("exec: closed")
	// ErrSpec marks a SessionSpec, plan or pipeline set-up that cannot work.
	ErrSpec = errors.New("exec: invalid spec")
	// ErrFeed marks a missing, unknown or mis-shaped tensor in a call.
	ErrFeed = errors.New("exec: bad feed")
	// ErrUnknownName marks a resident tensor name that the session does
	// not hold.
	ErrUnknownName = errors.New("exec: unknown name")
	// ErrOrder marks calls in an order that the protocol forbids: Backward
	// before Forward for a micro-batch, Step with nothing accumulated.
	ErrOrder = errors.New("exec: out of order")
	// ErrSolver marks a solver configuration that is not valid.
	ErrSolver = errors.New("exec: invalid solver")
	// ErrUnavailable marks an executor that cannot be reached or stopped
	// answering: a provider process that died, a connection that broke.
	// What the session held there may be lost; a caller that kept a
	// snapshot can reopen the part elsewhere. Remote executors wrap their
	// transport failures with it.
	ErrUnavailable = errors.New("exec: executor unavailable")
)

// SpecError says what is wrong with a part's spec. Node is -1 when the
// problem is not about one node.
type SpecError struct {
	Part   int
	Node   int64
	Reason string
}

func (e *SpecError) Error() string {
	if e.Node < 0 {
		return fmt.Sprintf("exec: part %d: %s", e.Part, e.Reason)
	}
	return fmt.Sprintf("exec: part %d: node %d: %s", e.Part, e.Node, e.Reason)
}

// Is makes errors.Is(err, ErrSpec) true.
func (e *SpecError) Is(t error) bool { return t == ErrSpec }

// MicroBatchLimitError says that a spec asks for more micro-batches
// (SessionSpec.MicroBatches) than the executor holds: Open refuses it.
type MicroBatchLimitError struct {
	Part         int
	MicroBatches int // the count the spec asks for
	Limit        int // the most the executor holds
}

func (e *MicroBatchLimitError) Error() string {
	return fmt.Sprintf("exec: part %d: %d micro-batches, the executor holds at most %d", e.Part, e.MicroBatches, e.Limit)
}

// Is makes errors.Is(err, ErrSpec) true.
func (e *MicroBatchLimitError) Is(t error) bool { return t == ErrSpec }

// FeedError says that a tensor handed to a session (a feed, a gradient, a
// resident value) is missing, unexpected, or of the wrong shape or dtype.
type FeedError struct {
	Part       int
	Node       int64  // the node the tensor is for
	Name       string // the resident name, for Put
	Want, Got  graph.Shape
	WantDType  string
	GotDType   string
	Reason     string
	MicroBatch int
}

func (e *FeedError) Error() string {
	what := fmt.Sprintf("node %d", e.Node)
	if e.Name != "" {
		what = fmt.Sprintf("%q", e.Name)
	}
	switch {
	case e.Reason != "":
		return fmt.Sprintf("exec: part %d: micro-batch %d: %s: %s", e.Part, e.MicroBatch, what, e.Reason)
	case e.WantDType != e.GotDType:
		return fmt.Sprintf("exec: part %d: micro-batch %d: %s: dtype %s, want %s", e.Part, e.MicroBatch, what, e.GotDType, e.WantDType)
	default:
		return fmt.Sprintf("exec: part %d: micro-batch %d: %s: shape %v, want %v", e.Part, e.MicroBatch, what, e.Got, e.Want)
	}
}

// Is makes errors.Is(err, ErrFeed) true.
func (e *FeedError) Is(t error) bool { return t == ErrFeed }

// NameError says that a resident name is not known to the session.
type NameError struct {
	Part int
	Name string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("exec: part %d: unknown name %q", e.Part, e.Name)
}

// Is makes errors.Is(err, ErrUnknownName) true.
func (e *NameError) Is(t error) bool { return t == ErrUnknownName }

// OrderError says that a call came out of order.
type OrderError struct {
	Part       int
	MicroBatch int // -1 when not about one micro-batch
	Reason     string
}

func (e *OrderError) Error() string {
	if e.MicroBatch < 0 {
		return fmt.Sprintf("exec: part %d: %s", e.Part, e.Reason)
	}
	return fmt.Sprintf("exec: part %d: micro-batch %d: %s", e.Part, e.MicroBatch, e.Reason)
}

// Is makes errors.Is(err, ErrOrder) true.
func (e *OrderError) Is(t error) bool { return t == ErrOrder }

// RunError wraps a failure of the machine that runs a part.
type RunError struct {
	Part       int
	MicroBatch int
	Phase      string // "build", "forward" or "backward"
	Err        error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("exec: part %d: micro-batch %d: %s: %v", e.Part, e.MicroBatch, e.Phase, e.Err)
}

func (e *RunError) Unwrap() error { return e.Err }

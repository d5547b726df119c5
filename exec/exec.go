package exec

import (
	"context"
	"fmt"
	"slices"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// Executor opens sessions, one per part of a partitioned model. The CPU
// executor (NewCPU) runs them in this process; a remote executor runs them
// on a provider. Nothing in this package knows which kind it holds.
type Executor interface {
	// Open builds the part described by spec and returns a session that
	// trains it. The executor keeps nothing from spec after Open returns
	// except what the session needs.
	Open(ctx context.Context, spec SessionSpec) (Session, error)
}

// Keeper is a Session that can store a resident tensor without copying
// it (the in-process CPU session does). See Keep.
type Keeper interface {
	// Keep is Put, except that the session may hold t itself instead of
	// a copy: the caller hands t over and must not change it afterwards.
	Keep(ctx context.Context, name string, t *tensor.Dense) error
}

// Keep stores t in s without a copy where s is a Keeper, and with Put
// otherwise. The caller hands t over: it must not change t afterwards. A
// data set made resident on an in-process session (ravml's shards) then
// costs one copy of memory instead of two.
func Keep(ctx context.Context, s Session, name string, t *tensor.Dense) error {
	if k, ok := s.(Keeper); ok {
		return k.Keep(ctx, name, t)
	}
	return s.Put(ctx, name, t)
}

// Session is one part of a model, resident on an executor: its parameters,
// its optimiser state, the activations it keeps between the forward and
// the backward pass of each micro-batch, and the gradients it accumulates
// until Step.
//
// All tensors that cross this interface are *tensor.Dense of float32 or
// float64 (Get may also return int or bool tensors that were Put). Feeds,
// outputs and gradients are keyed by IR node id. A Session is safe for use
// by several goroutines, but its calls are carried out one at a time.
type Session interface {
	// Put stores a resident tensor under name. ParamName(id) names the
	// value of learnable parameter id (its shape and dtype must match the
	// node), GradName(id) replaces its gradient accumulated since the
	// last Step; any other name stores a tensor the caller can Get back, and
	// InputName(id) supplies input id to Forward whenever the feeds lack it.
	Put(ctx context.Context, name string, t *tensor.Dense) error
	// Get returns copies of resident tensors: parameters (ParamName),
	// optimiser state (StateName), accumulated gradients (GradName) and
	// whatever was Put.
	Get(ctx context.Context, names ...string) (map[string]*tensor.Dense, error)
	// Forward runs micro-batch microBatch forward. feeds holds a value for
	// every input of the part (SessionSpec.Inputs, SessionSpec.DataInputs),
	// shaped as in the part's graph. It returns the values of
	// SessionSpec.Outputs and, when the part holds the loss, of the loss.
	// The session keeps what the micro-batch's backward pass needs until
	// Backward or the next Forward of the same micro-batch index; a
	// Forward that no Backward follows (an evaluation) changes nothing.
	Forward(ctx context.Context, microBatch int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error)
	// Backward runs micro-batch microBatch backward. gradOutputs holds the
	// gradient of the mini-batch loss with respect to every output in
	// SessionSpec.Outputs (the loss, if the part holds it, is seeded by the
	// session itself). It returns the gradients with respect to
	// SessionSpec.Inputs and adds the gradients of the part's parameters
	// to the accumulated ones.
	Backward(ctx context.Context, microBatch int, gradOutputs map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error)
	// Step applies the solver once to the part's parameters, using the
	// mean of the gradients accumulated over the micro-batches since the
	// last Step, and then clears them.
	Step(ctx context.Context) error
	// Close releases the session; any later call returns ErrClosed.
	Close() error
}

// SessionSpec describes one part of a partitioned model.
type SessionSpec struct {
	// Part is the index of the part in its plan; errors name it.
	Part int
	// Graph is the part's IR. Values that come from other parts, and the
	// data the requester feeds, are nodes of role input with the same ids
	// as in the whole graph; the part's learnable parameters have role
	// learnable (with their initial values, or Put before the first
	// Forward); constants the part uses are copied in.
	Graph *graph.Graph
	// Inputs are the ids of input nodes whose values come from other parts:
	// Backward returns their gradients. A learnable parameter owned by
	// another part arrives as such an input.
	Inputs []int64
	// DataInputs are the ids of input nodes that the requester feeds
	// (data, labels); they get no gradient.
	DataInputs []int64
	// Outputs are the ids of the part's nodes whose values other parts
	// consume. Backward receives their gradients. A learnable parameter of
	// this part that other parts use is listed here too.
	Outputs []int64
	// Loss is the id of the scalar loss when HasLoss is set.
	Loss    int64
	HasLoss bool
	// Solver configures the optimiser that Step applies.
	Solver SolverConfig
	// EvalMode runs BatchNorm on its running statistics and Dropout as the
	// identity, as at inference; otherwise both are in training mode. In
	// training mode BatchNorm normalises each micro-batch by its own
	// statistics (as GPipe does), so results depend on the number of
	// micro-batches, and the running statistics it keeps stay with the
	// session.
	EvalMode bool
	// MicroBatches is the number of micro-batches the session holds
	// between two Steps: Forward and Backward take the indexes 0 to
	// MicroBatches-1. An executor that cannot hold that many refuses the
	// spec at Open with a *MicroBatchLimitError. 0 means
	// DefaultMicroBatches.
	MicroBatches int
	// ExportGrads says the requester reads the accumulated gradients
	// (GradName) after the last Backward of every step, as Replicas does
	// to sum them across replicas. An executor that defers gradient work
	// to Step then finishes it in the Backward that completes the step's
	// MicroBatchCount micro-batches, so that the work counts as the
	// step's compute and the read costs only the copy.
	ExportGrads bool
}

// MicroBatchCount returns the number of micro-batches the session holds:
// MicroBatches, or DefaultMicroBatches where it is 0.
func (s *SessionSpec) MicroBatchCount() int {
	if s.MicroBatches == 0 {
		return DefaultMicroBatches
	}
	return s.MicroBatches
}

// Validate checks that the spec is complete and consistent with its graph.
func (s *SessionSpec) Validate() error {
	if s.Graph == nil || s.Graph.Len() == 0 {
		return &SpecError{Part: s.Part, Node: -1, Reason: "empty graph"}
	}
	if err := s.Solver.Validate(); err != nil {
		return &SpecError{Part: s.Part, Node: -1, Reason: err.Error()}
	}
	if s.MicroBatches < 0 {
		return &SpecError{Part: s.Part, Node: -1, Reason: fmt.Sprintf("%d micro-batches", s.MicroBatches)}
	}
	seen := make(map[int64]string)
	check := func(ids []int64, what string, ok func(n *graph.Node) bool) error {
		for _, id := range ids {
			n, found := s.Graph.Node(id)
			if !found {
				return &SpecError{Part: s.Part, Node: id, Reason: what + " is not in the part's graph"}
			}
			if !ok(n) {
				return &SpecError{Part: s.Part, Node: id, Reason: fmt.Sprintf("%s has role %v", what, n.Role)}
			}
			if prev, dup := seen[id]; dup && !(what == "output" && prev == "output") {
				return &SpecError{Part: s.Part, Node: id, Reason: fmt.Sprintf("listed as %s and as %s", prev, what)}
			}
			seen[id] = what
		}
		return nil
	}
	isIn := func(n *graph.Node) bool { return n.Role == graph.RoleInput }
	if err := check(s.Inputs, "input", isIn); err != nil {
		return err
	}
	if err := check(s.DataInputs, "data input", isIn); err != nil {
		return err
	}
	for _, n := range s.Graph.Nodes() {
		if n.Role == graph.RoleInput {
			if _, ok := seen[n.ID]; !ok {
				return &SpecError{Part: s.Part, Node: n.ID, Reason: "input is neither in Inputs nor in DataInputs"}
			}
		}
	}
	for _, id := range s.Inputs {
		n, _ := s.Graph.Node(id)
		if n.DType != graph.Float32 && n.DType != graph.Float64 {
			return &SpecError{Part: s.Part, Node: id, Reason: fmt.Sprintf("input of dtype %v cannot carry a gradient", n.DType)}
		}
	}
	isOut := func(n *graph.Node) bool { return n.Role == graph.RoleOp || n.Role == graph.RoleLearnable }
	if err := check(s.Outputs, "output", isOut); err != nil {
		return err
	}
	if s.HasLoss {
		n, ok := s.Graph.Node(s.Loss)
		if !ok {
			return &SpecError{Part: s.Part, Node: s.Loss, Reason: "loss is not in the part's graph"}
		}
		if len(n.Shape) != 0 || (n.DType != graph.Float32 && n.DType != graph.Float64) {
			return &SpecError{Part: s.Part, Node: s.Loss, Reason: fmt.Sprintf("loss must be a float scalar, is %v %v", n.DType, n.Shape)}
		}
	}
	if !s.HasLoss && len(s.Outputs) == 0 {
		return &SpecError{Part: s.Part, Node: -1, Reason: "part has neither outputs nor the loss"}
	}
	return nil
}

// CheckGradients checks the gradients handed to Backward of micro-batch
// mb: one for every output of the part, none for anything else, each
// shaped as its output. It returns a *FeedError, or nil.
func (s *SessionSpec) CheckGradients(mb int, gradOutputs map[int64]*tensor.Dense) error {
	for id := range gradOutputs {
		if !slices.Contains(s.Outputs, id) {
			return &FeedError{Part: s.Part, Node: id, MicroBatch: mb, Reason: "gradient for a node that is not an output of the part"}
		}
	}
	for _, id := range s.Outputs {
		t, ok := gradOutputs[id]
		n, _ := s.Graph.Node(id)
		if !ok {
			return &FeedError{Part: s.Part, Node: id, MicroBatch: mb, Reason: fmt.Sprintf("missing gradient for output %q", n.Name)}
		}
		if err := checkTensor(s.Part, mb, n, t); err != nil {
			return err
		}
	}
	return nil
}

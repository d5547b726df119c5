package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// ErrInvalid marks a checkpoint that cannot be read or does not fit the
// graph it is applied to.
var ErrInvalid = errors.New("checkpoint: invalid")

// Error says what is wrong with a checkpoint.
type Error struct {
	Node   int64 // -1 when not about one node
	Reason string
}

// Error says what is wrong, and with which node when it is about one.
func (e *Error) Error() string {
	if e.Node < 0 {
		return "checkpoint: " + e.Reason
	}
	return fmt.Sprintf("checkpoint: node %d: %s", e.Node, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(t error) bool { return t == ErrInvalid }

// State is the state of a training run at one step.
type State struct {
	// Steps is the number of steps taken, which is also the optimiser's
	// update count.
	Steps int
	// Graph is the whole graph, its learnables with their values.
	Graph *graph.Graph
	// Slots holds the optimiser state by exec.StateName(parameter, slot).
	Slots map[string]*tensor.Dense
}

// WithParams returns a copy of g in which the learnable nodes hold the
// values in params (by node id); learnables missing from params keep
// theirs. It is the trained model that a checkpoint holds and that
// Trainer.Save writes.
func WithParams(g *graph.Graph, params map[int64]*tensor.Dense) (*graph.Graph, error) {
	out := graph.New()
	for _, n := range g.Nodes() {
		if n.Role == graph.RoleLearnable {
			if v, ok := params[n.ID]; ok {
				n.Value = v
			}
		}
		if err := out.Add(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// WriteModel writes the trained model that p drives, the graph g it was
// opened with holding p's current parameters, in the rookery.v1 protobuf
// encoding (what Trainer.Save writes and exec.ReadModel reads).
func WriteModel(ctx context.Context, p *exec.Pipeline, g *graph.Graph, w io.Writer) error {
	params, err := p.Params(ctx)
	if err != nil {
		return err
	}
	out, err := WithParams(g, params)
	if err != nil {
		return err
	}
	b, err := out.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Capture reads the state of the run that p drives: its parameters and
// every part's optimiser slots for solver. g is the whole graph p was
// opened with; steps the number of steps taken.
func Capture(ctx context.Context, p *exec.Pipeline, g *graph.Graph, solver exec.SolverConfig, steps int) (*State, error) {
	params, err := p.Params(ctx)
	if err != nil {
		return nil, err
	}
	var slots []string
	if s, err := exec.NewSolver(solver, 0); err == nil {
		slots = s.Slots()
	}
	state := make(map[string]*tensor.Dense)
	for i, spec := range p.Layout().Specs {
		var names []string
		for _, id := range spec.Graph.Learnables() {
			for _, slot := range slots {
				names = append(names, exec.StateName(id, slot))
			}
		}
		if len(names) == 0 {
			continue
		}
		got, err := p.Sessions()[i].Get(ctx, names...)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			state[n] = got[n]
		}
	}
	wg, err := WithParams(g, params)
	if err != nil {
		return nil, err
	}
	return &State{Steps: steps, Graph: wg, Slots: state}, nil
}

// Apply checks that the checkpoint was written from g (the same nodes, in
// the same order, with the same roles, ops, types, shapes and inputs) and
// copies its parameter values into g.
func (s *State) Apply(g *graph.Graph) error {
	if s.Graph.Len() != g.Len() {
		return &Error{Node: -1, Reason: fmt.Sprintf("%d nodes, the graph has %d", s.Graph.Len(), g.Len())}
	}
	for _, n := range g.Nodes() {
		cn, ok := s.Graph.Node(n.ID)
		if !ok {
			return &Error{Node: n.ID, Reason: "not in the checkpoint"}
		}
		if cn.Role != n.Role || cn.Op.Kind != n.Op.Kind || cn.DType != n.DType || !cn.Shape.Eq(n.Shape) || fmt.Sprint(cn.Inputs) != fmt.Sprint(n.Inputs) {
			return &Error{Node: n.ID, Reason: fmt.Sprintf("checkpoint has %v %v %v %v of %v, the graph %v %v %v %v of %v",
				cn.Role, cn.Op.Kind, cn.DType, cn.Shape, cn.Inputs, n.Role, n.Op.Kind, n.DType, n.Shape, n.Inputs)}
		}
		if n.Role == graph.RoleLearnable {
			if cn.Value == nil {
				return &Error{Node: n.ID, Reason: "parameter has no value"}
			}
			in, _ := g.Node(n.ID)
			in.Value = cn.Value
		}
	}
	return nil
}

// Restore puts the optimiser state and the update count into every part
// of each pipeline, opened on the graph the checkpoint was applied to
// (several: the replicas of an exec.Replicas).
func (s *State) Restore(ctx context.Context, pipes ...*exec.Pipeline) error {
	for _, p := range pipes {
		if err := s.restore(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (s *State) restore(ctx context.Context, p *exec.Pipeline) error {
	for i, spec := range p.Layout().Specs {
		ids := spec.Graph.Learnables()
		if len(ids) == 0 {
			continue
		}
		sess := p.Sessions()[i]
		for _, id := range ids {
			prefix := exec.ParamName(id) + "/"
			names := make([]string, 0, 2)
			for n := range s.Slots {
				if len(n) > len(prefix) && n[:len(prefix)] == prefix {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			for _, n := range names {
				if err := sess.Put(ctx, n, s.Slots[n]); err != nil {
					return fmt.Errorf("%w: restoring %s: %w", ErrInvalid, n, err)
				}
			}
		}
		if err := sess.Put(ctx, exec.SolverStepName, tensor.New(tensor.FromScalar(s.Steps))); err != nil {
			return fmt.Errorf("%w: restoring the update count: %w", ErrInvalid, err)
		}
	}
	return nil
}

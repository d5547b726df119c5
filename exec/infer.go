package exec

import (
	"context"
	"fmt"
	"io"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// Model is a trained model: a graph whose learnable nodes hold their
// values, which predicts in this process (Infer) without any executor.
// rookery.Load reads one from what rookery.Trainer.Save writes.
type Model struct {
	g *graph.Graph
}

// NewModel returns g as a Model; every learnable node of g must hold a
// value.
func NewModel(g *graph.Graph) (*Model, error) {
	for _, id := range g.Learnables() {
		if n, _ := g.Node(id); n.Value == nil {
			return nil, fmt.Errorf("exec: parameter %q (node %d) has no value", n.Name, id)
		}
	}
	return &Model{g: g}, nil
}

// ReadModel reads a graph in the rookery.v1 encoding (graph.MarshalBinary)
// as a Model.
func ReadModel(r io.Reader) (*Model, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	g := graph.New()
	if err := g.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return NewModel(g)
}

// Graph returns the model's graph.
func (m *Model) Graph() *graph.Graph { return m.g }

// ID returns the id of the node named name.
func (m *Model) ID(name string) (int64, error) {
	n, ok := m.g.ByName(name)
	if !ok {
		return 0, fmt.Errorf("exec: no node named %q", name)
	}
	return n.ID, nil
}

// Predict computes the nodes outputs from feeds with Infer: in inference
// mode, feeding only the inputs the outputs depend on, on any batch size.
func (m *Model) Predict(ctx context.Context, feeds map[int64]*tensor.Dense, outputs ...int64) (map[int64]*tensor.Dense, error) {
	return Infer(ctx, m.g, feeds, outputs...)
}

// Infer computes the nodes outputs of g from feeds in this process, with
// the values g's learnable nodes hold, in inference mode (BatchNorm on
// running statistics, Dropout the identity). It runs only the part of g
// that outputs depend on, so only the inputs of that part need feeding.
// The feeds may have another batch size on axis 0 than g was built with
// (all the same one); g is rebatched for them.
func Infer(ctx context.Context, g *graph.Graph, feeds map[int64]*tensor.Dense, outputs ...int64) (map[int64]*tensor.Dense, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(outputs) == 0 {
		return nil, fmt.Errorf("exec: infer: no outputs asked")
	}
	pg, err := prune(g, outputs)
	if err != nil {
		return nil, err
	}
	for _, id := range pg.Inputs() {
		if _, ok := feeds[id]; !ok {
			n, _ := pg.Node(id)
			return nil, fmt.Errorf("exec: infer: input %q (node %d) is needed and not fed", n.Name, id)
		}
	}
	var data []int64
	from, to := -1, -1
	for id, t := range feeds {
		if n, ok := g.Node(id); !ok || n.Role != graph.RoleInput {
			return nil, fmt.Errorf("exec: infer: node %d is not an input of the graph", id)
		}
		n, ok := pg.Node(id)
		if !ok {
			continue // not needed for these outputs
		}
		data = append(data, id)
		if len(n.Shape) > 0 && t.Shape().Dims() == len(n.Shape) && t.Shape()[0] != n.Shape[0] {
			if to >= 0 && (to != t.Shape()[0] || from != n.Shape[0]) {
				return nil, fmt.Errorf("exec: infer: feeds disagree on the batch size")
			}
			from, to = n.Shape[0], t.Shape()[0]
		}
	}
	if to >= 0 {
		rg, err := Rebatch(pg, data, from, to)
		if err != nil {
			return nil, err
		}
		pg = rg
	}
	eg := gorgonia.NewGraph()
	nodes, err := Lower(pg, eg)
	if err != nil {
		return nil, err
	}
	roots := make(gorgonia.Nodes, len(outputs))
	vals := make([]gorgonia.Value, len(outputs))
	for i, id := range outputs {
		n, ok := nodes[id]
		if !ok {
			return nil, fmt.Errorf("exec: infer: node %d is not in the graph", id)
		}
		roots[i] = gorgonia.Read(n, &vals[i])
	}
	for _, id := range data {
		if err := gorgonia.Let(nodes[id], feeds[id]); err != nil {
			return nil, fmt.Errorf("exec: infer: feeding node %d: %w", id, err)
		}
	}
	vm := gorgonia.NewTapeMachine(eg.SubgraphRoots(roots...), gorgonia.EvalMode())
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		return nil, err
	}
	out := make(map[int64]*tensor.Dense, len(outputs))
	for i, id := range outputs {
		switch v := vals[i].(type) {
		case *tensor.Dense:
			out[id] = v
		case gorgonia.Scalar:
			out[id] = tensor.New(tensor.FromScalar(v.Data()))
		default:
			return nil, fmt.Errorf("exec: infer: node %d gave %T", id, vals[i])
		}
	}
	return out, nil
}

// prune returns the part of g that outputs depend on.
func prune(g *graph.Graph, outputs []int64) (*graph.Graph, error) {
	need := make(map[int64]bool)
	for _, id := range outputs {
		if _, ok := g.Node(id); !ok {
			return nil, fmt.Errorf("exec: infer: node %d is not in the graph", id)
		}
		need[id] = true
	}
	nodes := g.Nodes()
	for i := len(nodes) - 1; i >= 0; i-- {
		if need[nodes[i].ID] {
			for _, in := range nodes[i].Inputs {
				need[in] = true
			}
		}
	}
	out := graph.New()
	for _, n := range nodes {
		if need[n.ID] {
			if err := out.Add(n); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

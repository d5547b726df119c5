package rookery

import (
	"context"
	"fmt"
	"io"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// Model is a trained model read by Load: a graph with its parameter
// values, which predicts in this process without any executor.
type Model struct {
	g *graph.Graph
}

// Load reads a model written by Trainer.Save.
func Load(r io.Reader) (*Model, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	g := graph.New()
	if err := g.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	for _, id := range g.Learnables() {
		if n, _ := g.Node(id); n.Value == nil {
			return nil, fmt.Errorf("rookery: parameter %q (node %d) has no value", n.Name, id)
		}
	}
	return &Model{g: g}, nil
}

// Graph returns the model's graph.
func (m *Model) Graph() *graph.Graph { return m.g }

// ID returns the id of the node named name.
func (m *Model) ID(name string) (int64, error) {
	n, ok := m.g.ByName(name)
	if !ok {
		return 0, fmt.Errorf("rookery: no node named %q", name)
	}
	return n.ID, nil
}

// Predict computes the nodes outputs from feeds, in inference mode
// (BatchNorm on running statistics, Dropout off) with exec.Infer. Only
// the inputs the outputs depend on need feeding. The feeds may have
// another batch size than the graph was built with, on axis 0.
func (m *Model) Predict(ctx context.Context, feeds map[int64]*tensor.Dense, outputs ...int64) (map[int64]*tensor.Dense, error) {
	if len(outputs) == 0 {
		return nil, fmt.Errorf("%w: no outputs asked", ErrConfig)
	}
	return exec.Infer(ctx, m.g, feeds, outputs...)
}

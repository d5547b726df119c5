package exec_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// inferGraph is y = x·w with a learnable w = [3 4]ᵀ, built for a batch of
// one row, and beside it z' = z·w on another input z.
func inferGraph() *graph.Graph {
	g := graph.New()
	in := graph.NewOp(graph.KindInput)
	w := tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]float64{3, 4}))
	g.MustAdd(graph.Node{ID: 1, Name: "x", Role: graph.RoleInput, Op: in, DType: graph.Float64, Shape: graph.Shape{1, 2}})
	g.MustAdd(graph.Node{ID: 2, Name: "w", Role: graph.RoleLearnable, Op: in, DType: graph.Float64, Shape: graph.Shape{2, 1}, Value: w})
	g.MustAdd(graph.Node{ID: 3, Name: "y", Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2},
		DType: graph.Float64, Shape: graph.Shape{1, 1}})
	g.MustAdd(graph.Node{ID: 4, Name: "z", Role: graph.RoleInput, Op: in, DType: graph.Float64, Shape: graph.Shape{1, 2}})
	g.MustAdd(graph.Node{ID: 5, Name: "z'", Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{4, 2},
		DType: graph.Float64, Shape: graph.Shape{1, 1}})
	return g
}

// TestInfer: Infer runs only what the outputs need, on another batch size
// than the graph's, and says which feed is missing or wrong.
func TestInfer(t *testing.T) {
	ctx := context.Background()
	g := inferGraph()
	x := tensor.New(tensor.WithShape(3, 2), tensor.WithBacking([]float64{1, 0, 0, 1, 1, 2}))
	out, err := exec.Infer(ctx, g, map[int64]*tensor.Dense{1: x}, 3) // z is not needed for y
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out[3].Float64s(), []float64{3, 4, 11}; !reflect.DeepEqual(got, want) {
		t.Errorf("y = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(x.Float64s(), []float64{1, 0, 0, 1, 1, 2}) {
		t.Error("Infer changed a feed")
	}
	for _, tc := range []struct {
		name    string
		feeds   map[int64]*tensor.Dense
		outputs []int64
		want    string
	}{
		{"no outputs", map[int64]*tensor.Dense{1: x}, nil, "no outputs"},
		{"missing input", map[int64]*tensor.Dense{1: x}, []int64{3, 5}, `input "z" (node 4) is needed and not fed`},
		{"feeding a parameter", map[int64]*tensor.Dense{1: x, 2: x}, []int64{3}, "node 2 is not an input"},
		{"unknown output", map[int64]*tensor.Dense{1: x}, []int64{9}, "node 9 is not in the graph"},
		{"two batch sizes", map[int64]*tensor.Dense{1: x, 4: tensor.New(tensor.WithShape(2, 2), tensor.Of(tensor.Float64))}, []int64{3, 5}, "disagree on the batch size"},
	} {
		if _, err := exec.Infer(ctx, g, tc.feeds, tc.outputs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

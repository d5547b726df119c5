package exec

import (
	"context"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// TestExportGradsFinishesInLastBackward checks that with
// SessionSpec.ExportGrads a CPU session computes its deferred weight
// gradients in the Backward that completes the step's micro-batches, not
// when they are read, and that they are the same.
func TestExportGradsFinishesInLastBackward(t *testing.T) {
	ctx := context.Background()
	var grads [2][]float64
	for k, export := range []bool{false, true} {
		g := graph.New()
		w := tensor.New(tensor.WithShape(3, 4), tensor.WithBacking([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}))
		g.MustAdd(graph.Node{ID: 1, Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{2, 3}, DType: graph.Float64, Name: "x"})
		g.MustAdd(graph.Node{ID: 2, Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{3, 4}, DType: graph.Float64, Name: "w", Value: w})
		g.MustAdd(graph.Node{ID: 3, Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2}, Shape: graph.Shape{2, 4}, DType: graph.Float64})
		g.MustAdd(graph.Node{ID: 4, Role: graph.RoleOp, Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 1)), Inputs: []int64{3}, DType: graph.Float64})
		spec := SessionSpec{Graph: g, DataInputs: []int64{1}, Loss: 4, HasLoss: true, Solver: SGD(0.1, 0), MicroBatches: 2, ExportGrads: export}
		sess, err := NewCPU().Open(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		s := sess.(*cpuHandle)
		if len(s.a.deferred) != 1 {
			t.Fatalf("%d deferred weights, want 1", len(s.a.deferred))
		}
		for mb := range 2 {
			x := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float64{1, 2, 3, 4, 5, float64(6 + mb)}))
			if _, err := s.Forward(ctx, mb, map[int64]*tensor.Dense{1: x}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Backward(ctx, mb, map[int64]*tensor.Dense{}); err != nil {
				t.Fatal(err)
			}
		}
		s.mu.Lock()
		waiting := len(s.defMB)
		s.mu.Unlock()
		if want := map[bool]int{false: 2, true: 0}[export]; waiting != want {
			t.Errorf("ExportGrads %v: %d micro-batches' weight gradients wait after the last Backward, want %d", export, waiting, want)
		}
		got, err := s.Get(ctx, GradName(2))
		if err != nil {
			t.Fatal(err)
		}
		grads[k] = got[GradName(2)].Data().([]float64)
	}
	if !slices.Equal(grads[0], grads[1]) {
		t.Errorf("gradients differ: %v without ExportGrads, %v with", grads[0], grads[1])
	}
}

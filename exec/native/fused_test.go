package native

import (
	"context"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// TestFusedDenseBitIdentical trains the MLP (dense layers with a bias and
// a ReLU) with the fused bias-ReLU kernels and without them, two
// micro-batches a step, and requires the same bits: a trainer whose parts
// are cut differently (a checkpoint resumed with another layout) fuses
// different layers, and must not drift.
func TestFusedDenseBitIdentical(t *testing.T) {
	ctx := context.Background()
	m := exectest.MLP(tensor.Float64, 8, 12, 16, 10, 4)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	spec := exec.SessionSpec{Graph: ir, DataInputs: exec.NodeIDs(m.Data), Loss: int64(m.Loss.ID()), HasLoss: true,
		Solver: exec.Adam(0.01), MicroBatches: 2}
	fused, err := plan.Lower(&spec, plan.WithHostKernels())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range fused.Forward {
		if plan.KernelBase(l.Kernel) == "bias_relu_rows" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d dense bias-ReLU launches, want 2", n)
	}
	rng := rand.New(rand.NewSource(5))
	batches := []map[int64]*tensor.Dense{{}, {}}
	for _, b := range batches {
		for node, v := range m.Batch(rng) {
			b[int64(node.ID())] = v
		}
	}
	run := func(e exec.Executor) map[string]*tensor.Dense {
		s, err := e.Open(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for range 5 {
			for mb, feeds := range batches {
				if _, err := s.Forward(ctx, mb, feeds); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Backward(ctx, mb, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Step(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var names []string
		for _, l := range m.Learn {
			names = append(names, exec.ParamName(int64(l.ID())))
		}
		got, err := s.Get(ctx, names...)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	a := run(&plan.Executor{Dev: newDevice(1), Lower: []plan.LowerOption{plan.WithHostKernels()}})
	b := run(&plan.Executor{Dev: newDevice(1)})
	for name, want := range b {
		got := a[name].Float64s()
		for i, v := range want.Float64s() {
			if got[i] != v {
				t.Fatalf("%s[%d]: %v fused, %v not", name, i, got[i], v)
			}
		}
	}
}

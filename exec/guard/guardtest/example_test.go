package guardtest_test

import (
	"context"
	"errors"
	"fmt"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard/guardtest"
	"github.com/rookery-ml/rookery/graph"
)

// An executor that dies after its first two calls, as a provider whose
// process was killed, and one that flips the sign of its results from the
// start.
func Example() {
	ctx := context.Background()
	g := graph.New()
	g.MustAdd(graph.Node{ID: 1, Name: "x", Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{1, 2}})
	g.MustAdd(graph.Node{ID: 2, Name: "w", Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{2, 1},
		Value: tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]float64{3, 4}))})
	g.MustAdd(graph.Node{ID: 3, Name: "y", Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2}, DType: graph.Float64, Shape: graph.Shape{1, 1}})
	spec := exec.SessionSpec{Graph: g, DataInputs: []int64{1}, Outputs: []int64{3}, Solver: exec.SGD(0.1, 0)}
	x := map[int64]*tensor.Dense{1: tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{1, 2}))}

	s, _ := guardtest.Dying("p", exec.NewCPU(), 2).Open(ctx, spec)
	for i := 0; i < 3; i++ {
		out, err := s.Forward(ctx, 0, x)
		if err != nil {
			fmt.Println("call", i, "unavailable:", errors.Is(err, exec.ErrUnavailable))
			continue
		}
		fmt.Println("call", i, "y =", out[3].Float64s())
	}

	l, _ := guardtest.Liar("liar", exec.NewCPU(), guardtest.FlipSign, 0, 1).Open(ctx, spec)
	out, _ := l.Forward(ctx, 0, x)
	fmt.Println("liar: y =", out[3].Float64s())
	// Output:
	// call 0 y = [11]
	// call 1 y = [11]
	// call 2 unavailable: true
	// liar: y = [-11]
}

package guard_test

import (
	"context"
	"errors"
	"fmt"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/exec/guard/guardtest"
	"github.com/rookery-ml/rookery/graph"
)

// A part runs on two replicas, one of which starts flipping the sign of
// its results after its first two calls. The disagreement calls in an
// arbiter (the spare); the liar is excluded and the arbiter takes its
// place, and training goes on with the honest result.
func Example() {
	ctx := context.Background()
	// y = x·w, loss = sum(y), with a learnable w.
	g := graph.New()
	g.MustAdd(graph.Node{ID: 1, Name: "x", Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{1, 2}})
	g.MustAdd(graph.Node{ID: 2, Name: "w", Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{2, 1},
		Value: tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]float64{3, 4}))})
	g.MustAdd(graph.Node{ID: 3, Name: "y", Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2}, DType: graph.Float64, Shape: graph.Shape{1, 1}})
	g.MustAdd(graph.Node{ID: 4, Name: "loss", Role: graph.RoleOp, Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 1)), Inputs: []int64{3}, DType: graph.Float64, Shape: graph.Shape{}})

	gd, err := guard.New(guard.WithRedundancy(2), guard.WithSpares(guard.Named("spare", exec.NewCPU())),
		guard.WithEvents(func(e guard.Event) {
			if e.Kind == guard.EventExcluded || e.Kind == guard.EventReplaced {
				fmt.Println("event:", e)
			}
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	e := gd.Executor(guard.Named("honest", exec.NewCPU()), guardtest.Liar("liar", exec.NewCPU(), guardtest.FlipSign, 2, 1))
	s, err := e.Open(ctx, exec.SessionSpec{Graph: g, DataInputs: []int64{1}, Loss: 4, HasLoss: true, Solver: exec.SGD(0.1, 0)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	x := map[int64]*tensor.Dense{1: tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{1, 2}))}
	for step := 0; step < 2; step++ {
		out, err := s.Forward(ctx, 0, x)
		if err != nil {
			fmt.Println(err)
			return
		}
		if _, err := s.Backward(ctx, 0, nil); err != nil {
			fmt.Println(err)
			return
		}
		if err := s.Step(ctx); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("step %d: loss %.2f\n", step, out[4].Float64s()[0])
	}
	fmt.Println("excluded:", gd.Excluded())

	// Errors of the call itself pass through.
	_, err = s.Forward(ctx, 0, map[int64]*tensor.Dense{1: tensor.New(tensor.WithShape(3), tensor.WithBacking([]float64{1, 2, 3}))})
	fmt.Println("bad feed:", errors.Is(err, exec.ErrFeed))
	// Output:
	// step 0: loss 11.00
	// event: part 0 step 1: excluded liar: guard: part 0: forward (micro-batch 0) on liar: 4[0] = -10.5, the others agree on 10.5
	// event: part 0 step 1: replaced liar -> spare
	// step 1: loss 10.50
	// excluded: [liar]
	// bad feed: true
}

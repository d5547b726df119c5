package checkpoint_test

import (
	"bytes"
	"context"
	"fmt"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/checkpoint"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// Write the state of a run after two steps, and continue it in a new
// pipeline from the bytes.
func Example() {
	ctx := context.Background()
	// loss = mean(x·w), one learnable w, trained with momentum.
	build := func() (*graph.Graph, int64, int64) {
		g := gorgonia.NewGraph()
		x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(2, 1), gorgonia.WithName("x"))
		w := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(1, 1), gorgonia.WithName("w"),
			gorgonia.WithValue(tensor.New(tensor.WithShape(1, 1), tensor.WithBacking([]float64{1}))))
		loss := gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.Mul(x, w))))
		ir, err := graph.FromGorgonia(g, graph.Learnables(w), graph.WithValues())
		if err != nil {
			panic(err)
		}
		return ir, int64(loss.ID()), int64(x.ID())
	}
	solver := exec.SGD(0.5, 0.9)
	open := func(ir *graph.Graph, loss, x int64) *exec.Pipeline {
		all := make([]int64, 0, ir.Len())
		for _, n := range ir.Nodes() {
			all = append(all, n.ID)
		}
		p, err := exec.NewPipeline(ctx, ir, loss, []int64{x}, [][]int64{all}, []exec.Executor{exec.NewCPU()}, exec.WithSolver(solver))
		if err != nil {
			panic(err)
		}
		return p
	}
	step := func(p *exec.Pipeline, x int64) float64 {
		l, err := p.Step(ctx, map[int64]*tensor.Dense{x: tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]float64{1, 3}))})
		if err != nil {
			panic(err)
		}
		return l
	}

	ir, loss, x := build()
	p := open(ir, loss, x)
	defer p.Close()
	step(p, x)
	step(p, x)
	s, err := checkpoint.Capture(ctx, p, ir, solver, 2)
	if err != nil {
		panic(err)
	}
	var file bytes.Buffer
	if _, err := s.WriteTo(&file); err != nil {
		panic(err)
	}
	fmt.Printf("uninterrupted: steps 3 and 4 lose %.2f, %.2f\n", step(p, x), step(p, x))

	back, err := checkpoint.Read(&file)
	if err != nil {
		panic(err)
	}
	ir2, loss2, x2 := build()
	if err := back.Apply(ir2); err != nil { // the parameters
		panic(err)
	}
	p2 := open(ir2, loss2, x2)
	defer p2.Close()
	if err := back.Restore(ctx, p2); err != nil { // the momentum and the step count
		panic(err)
	}
	fmt.Printf("resumed at step %d: steps 3 and 4 lose %.2f, %.2f\n", back.Steps, step(p2, x2), step(p2, x2))
	// Output:
	// uninterrupted: steps 3 and 4 lose -3.80, -9.22
	// resumed at step 2: steps 3 and 4 lose -3.80, -9.22
}

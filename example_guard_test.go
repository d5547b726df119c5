package rookery_test

import (
	"bytes"
	"context"
	"fmt"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/exec/guard/guardtest"
)

// linear builds y = x·w with a squared loss, and one mini-batch.
func linear() (*gorgonia.ExprGraph, *gorgonia.Node, gorgonia.Nodes, gorgonia.Nodes, map[*gorgonia.Node]*tensor.Dense) {
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(4, 2), gorgonia.WithName("x"))
	t := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(4, 1), gorgonia.WithName("t"))
	w := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(2, 1), gorgonia.WithName("w"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]float64{0, 0}))))
	d := gorgonia.Must(gorgonia.Sub(gorgonia.Must(gorgonia.Mul(x, w)), t))
	loss := gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.Square(d))))
	feeds := map[*gorgonia.Node]*tensor.Dense{
		x: tensor.New(tensor.WithShape(4, 2), tensor.WithBacking([]float64{1, 0, 0, 1, 1, 1, 2, 1})),
		t: tensor.New(tensor.WithShape(4, 1), tensor.WithBacking([]float64{2, -1, 1, 3})),
	}
	return g, loss, gorgonia.Nodes{w}, gorgonia.Nodes{x, t}, feeds
}

// Checkpoint a run after 5 steps; a new trainer (in a new process, say)
// resumes from the checkpoint and reaches the same model as the run that
// went on.
func ExampleTrainer_Checkpoint() {
	ctx := context.Background()
	g, loss, learn, in, feeds := linear()
	tr, err := rookery.NewTrainer(ctx, g, loss, learn, in, rookery.WithSolver(exec.Adam(0.1)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	for range 5 {
		tr.Step(ctx, feeds)
	}
	var ck bytes.Buffer
	if err := tr.Checkpoint(ctx, &ck); err != nil {
		fmt.Println(err)
		return
	}
	var want float64
	for range 5 {
		want, _ = tr.Step(ctx, feeds)
	}

	g2, loss2, learn2, in2, feeds2 := linear()
	resumed, err := rookery.NewTrainer(ctx, g2, loss2, learn2, in2, rookery.WithSolver(exec.Adam(0.1)), rookery.WithCheckpoint(&ck))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resumed.Close()
	fmt.Println("resumed at step", resumed.Steps())
	var got float64
	for range 5 {
		got, _ = resumed.Step(ctx, feeds2)
	}
	fmt.Println("same loss at step 10:", got == want)
	// Output:
	// resumed at step 5
	// same loss at step 10: true
}

// Train with redundancy 2: every part runs on two executors, and one of
// them lies from its third call on. It is caught, named and excluded, and
// the spare takes over.
func ExampleWithRedundancy() {
	ctx := context.Background()
	g, loss, learn, in, feeds := linear()
	liar := guardtest.Liar("liar", exec.NewCPU(), guardtest.Noise, 2, 1)
	tr, err := rookery.NewTrainer(ctx, g, loss, learn, in, rookery.WithSolver(exec.SGD(0.1, 0)),
		rookery.WithExecutors(liar), rookery.WithRedundancy(2),
		rookery.WithSpares(guard.Named("spare-a", exec.NewCPU()), guard.Named("spare-b", exec.NewCPU())),
		rookery.WithEvents(func(e guard.Event) {
			if e.Kind == guard.EventExcluded {
				fmt.Println("excluded", e.Provider, "at step", e.Step)
			}
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	for range 3 {
		if _, err := tr.Step(ctx, feeds); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("excluded:", tr.Guard().Excluded())
	// Output:
	// excluded liar at step 1
	// excluded: [liar]
}

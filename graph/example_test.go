package graph_test

import (
	"fmt"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// A requester reads its model into the IR; a provider rebuilds it and
// computes the same value.
func ExampleFromGorgonia() {
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(2, 3), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float64{1, 2, 3, 4, 5, 6}))))
	w := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(3, 1), gorgonia.WithName("w"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(3, 1), tensor.WithBacking([]float64{0.5, -1, 2}))))
	b := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(1), gorgonia.WithName("b"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(1), tensor.WithBacking([]float64{10}))))
	y := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(x, w)), b, nil, []byte{0}))

	ir, err := graph.FromGorgonia(g, graph.Learnables(x, w, b), graph.WithValues())
	if err != nil {
		panic(err)
	}
	for _, n := range ir.Nodes() {
		fmt.Printf("%d %-9s %-13s %v\n", n.ID, n.Role, n.Op.Kind, n.Shape)
	}

	// On the provider: rebuild and run.
	dst := gorgonia.NewGraph()
	nodes, err := ir.Lower(dst)
	if err != nil {
		panic(err)
	}
	vm := gorgonia.NewTapeMachine(dst)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		panic(err)
	}
	fmt.Println(nodes[y.ID()].Value().Data())
	// Output:
	// 0 learnable input         [2 3]
	// 1 learnable input         [3 1]
	// 2 learnable input         [1]
	// 3 op        matmul        [2 1]
	// 7 op        broadcast_add [2 1]
	// [14.5 19]
}

package partition_test

import (
	"fmt"

	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/partition"
)

// A six-layer perceptron split for two providers, the second twice as
// fast as the first.
func ExampleSplit() {
	g := graph.New()
	id := int64(0)
	add := func(n graph.Node) int64 {
		n.ID, n.DType = id, graph.Float64
		id++
		g.MustAdd(n)
		return n.ID
	}
	h := add(graph.Node{Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{8, 32}, Name: "x"})
	for l := 0; l < 6; l++ {
		w := add(graph.Node{Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{32, 32}, Name: fmt.Sprint("w", l)})
		h = add(graph.Node{Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{h, w}, Shape: graph.Shape{8, 32}, Name: fmt.Sprint("mm", l)})
		h = add(graph.Node{Role: graph.RoleOp, Op: graph.NewOp(graph.KindTanh), Inputs: []int64{h}, Shape: graph.Shape{8, 32}, Name: fmt.Sprint("act", l)})
	}

	plan, err := partition.Split(g, 2, partition.WithCapacities([]float64{1, 2}))
	if err != nil {
		panic(err)
	}
	if err := plan.Validate(g); err != nil {
		panic(err)
	}
	for i, p := range plan.Parts {
		var names []string
		for _, id := range p.Nodes {
			n, _ := g.Node(id)
			names = append(names, n.Name)
		}
		fmt.Printf("part %d: share %.2f, cost %.0f FLOPs, %d param bytes: %v\n", i, p.Share, p.Cost, p.ParamBytes, names)
	}
	for _, c := range plan.Cuts {
		fmt.Printf("node %d sends %d bytes from part %d to part %d\n", c.Producer, c.Bytes, c.From, c.To)
	}
	fmt.Printf("method %v, imbalance %.3f, cut %d bytes\n", plan.Method, plan.Imbalance(), plan.CutBytes())
	// Output:
	// part 0: share 0.33, cost 34816 FLOPs, 16384 param bytes: [x w0 mm0 act0 w1 mm1 act1]
	// part 1: share 0.67, cost 69632 FLOPs, 32768 param bytes: [w2 mm2 act2 w3 mm3 act3 w4 mm4 act4 w5 mm5 act5]
	// node 6 sends 2048 bytes from part 0 to part 1
	// method chain, imbalance 0.000, cut 2048 bytes
}

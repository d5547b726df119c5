package plan_test

import (
	"fmt"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// Lower needs no device: it prints the launches that a device runs for
// loss = Σ tanh(x·w), forward and backward.
func ExampleLower() {
	g := graph.New()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(g.Add(graph.Node{ID: 1, Name: "x", Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{2, 3}, DType: graph.Float32}))
	must(g.Add(graph.Node{ID: 2, Name: "w", Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{3, 4}, DType: graph.Float32}))
	must(g.Add(graph.Node{ID: 3, Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2}, Shape: graph.Shape{2, 4}, DType: graph.Float32}))
	must(g.Add(graph.Node{ID: 4, Role: graph.RoleOp, Op: graph.NewOp(graph.KindTanh), Inputs: []int64{3}, Shape: graph.Shape{2, 4}, DType: graph.Float32}))
	must(g.Add(graph.Node{ID: 5, Role: graph.RoleOp, Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 1)), Inputs: []int64{4}, Shape: graph.Shape{}, DType: graph.Float32}))
	spec := exec.SessionSpec{Graph: g, DataInputs: []int64{1}, Loss: 5, HasLoss: true, Solver: exec.SGD(0.1, 0)}
	p, err := plan.Lower(&spec)
	if err != nil {
		panic(err)
	}
	fmt.Print(p)
	// Output:
	// plan float32: 9 buffers, 3 forward and 4 backward launches
	//   b0 param node 2: 12 elems
	//   b1 accum node 2: 12 elems
	//   b2 input node 1: 6 elems
	//   b3 activation node 3: 8 elems
	//   b4 activation node 4: 8 elems
	//   b5 activation node 5: 1 elems
	//   b6 grad_in node 5: 1 elems
	//   b7 grad: 8 elems
	//   b8 grad: 8 elems
	// forward:
	//   3: sgemm NN m=4 n=2 k=3 alpha=1 A=b0 lda=4 B=b2 ldb=3 beta=0 C=b3 ldc=4
	//   4: unary_f32[tanh] grid=1 block=256 (16, 8, 0, 1, 2, 4, 8, 8, 4, 1, b3, b4)
	//   5: reduce_f32[sum] grid=1 block=256 (0, 1, 0, 1, 1, 1, 1, 1, 1, 2, 4, 8, 8, 4, 1, b4, b5)
	// backward:
	//   5: fill_f32 grid=1 block=256 (1, 1, b6)
	//   5: unary_f32[copy] grid=1 block=256 (0, 8, 0, 1, 2, 4, 1, 1, 0, 0, b6, b7)
	//   4: unary_grad_f32[tanh] grid=1 block=256 (16, 8, 0, b3, b4, b7, b8)
	//   3: sgemm NT m=4 n=3 k=2 alpha=1 A=b8 lda=4 B=b2 ldb=3 beta=1 C=b1 ldc=4
}

package graph

import "testing"

func TestMLKindsShapeErrors(t *testing.T) {
	vec := &Node{Shape: Shape{4}, DType: Float64}
	mat := &Node{Shape: Shape{4, 3}, DType: Float64}
	ints := &Node{Shape: Shape{4, 3}, DType: Int}
	for _, tc := range []struct {
		name string
		op   Op
		in   []*Node
	}{
		{"top_k k too large", NewOp(KindTopK, IntAttr("k", 4)), []*Node{mat}},
		{"top_k vector", NewOp(KindTopK, IntAttr("k", 1)), []*Node{vec}},
		{"top_k ints", NewOp(KindTopK, IntAttr("k", 1)), []*Node{ints}},
		{"matmul_top_k inner sizes differ", NewOp(KindMatMulTopK, IntAttr("k", 1)), []*Node{mat, mat}},
		{"matmul_top_k k too large", NewOp(KindMatMulTopK, IntAttr("k", 4)), []*Node{mat, &Node{Shape: Shape{3, 3}, DType: Float64}}},
		{"matmul_top_k dtypes differ", NewOp(KindMatMulTopK, IntAttr("k", 1)), []*Node{mat, &Node{Shape: Shape{3, 3}, DType: Float32}}},
		{"matmul_top_k float32 too wide", NewOp(KindMatMulTopK, IntAttr("k", 1)), []*Node{{Shape: Shape{4, 3}, DType: Float32}, {Shape: Shape{3, 1<<24 + 1}, DType: Float32}}},
		{"argmin vector", NewOp(KindArgMin), []*Node{vec}},
		{"log_softmax_rows vector", NewOp(KindLogSoftmaxRows), []*Node{vec}},
		{"log_softmax_rows ints", NewOp(KindLogSoftmaxRows), []*Node{ints}},
		{"one_hot matrix", NewOp(KindOneHot, IntAttr("depth", 2)), []*Node{mat}},
		{"one_hot depth 0", NewOp(KindOneHot, IntAttr("depth", 0)), []*Node{vec}},
		{"take matrix", NewOp(KindTake), []*Node{mat, vec}},
		{"tree_route tree shape", NewOp(KindTreeRoute), []*Node{mat, &Node{Shape: Shape{4, 2}, DType: Float64}}},
		{"segment_sum rows differ", NewOp(KindSegmentSum, IntAttr("groups", 2)), []*Node{mat, &Node{Shape: Shape{3}, DType: Float64}}},
		{"gather_rows vector", NewOp(KindGatherRows), []*Node{vec, vec}},
		{"histogram rows differ", NewOp(KindHistogram, IntAttr("groups", 1), IntAttr("bins", 2)), []*Node{mat, &Node{Shape: Shape{3}, DType: Float64}, mat}},
	} {
		if _, _, err := infer(tc.op, tc.in); err == nil {
			t.Errorf("%s: got no error, want one", tc.name)
		}
	}
}

func TestMLKindsEncode(t *testing.T) {
	g := New()
	g.MustAdd(Node{ID: 1, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{5, 4}, DType: Float64, Name: "x"})
	g.MustAdd(Node{ID: 2, Role: RoleOp, Op: NewOp(KindTopK, IntAttr("k", 2), BoolAttr("indices", true)), Inputs: []int64{1}, Shape: Shape{5, 2}, DType: Float64})
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h := New()
	if err := h.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	n, _ := h.Node(2)
	if got, want := n.Op.String(), g.Nodes()[1].Op.String(); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

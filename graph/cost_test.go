package graph

import (
	"fmt"
	"math"
	"testing"

	"gorgonia.org/tensor"
)

// TestCostMLP checks every node of the 784-256-10 MLP at batch 64 in
// float64 (see mlpGraph) against counts worked out by hand.
func TestCostMLP(t *testing.T) {
	g := mlpGraph(t, 64, 256, Float64)
	tests := []struct {
		id   int64
		what string
		want Cost
	}{
		// Sources: no FLOPs; bytes = elements × 8.
		{1, "x (64,784)", Cost{OutputBytes: 64 * 784 * 8}},                   // 401,408
		{2, "y (64,10)", Cost{OutputBytes: 64 * 10 * 8}},                     // 5,120
		{3, "w1 (784,256)", Cost{OutputBytes: 1605632, ParamBytes: 1605632}}, // 784×256 = 200,704 elements × 8
		{4, "b1 (256)", Cost{OutputBytes: 2048, ParamBytes: 2048}},           // 256 × 8
		{5, "w2 (256,10)", Cost{OutputBytes: 20480, ParamBytes: 20480}},      // 2,560 × 8
		{6, "b2 (10)", Cost{OutputBytes: 80, ParamBytes: 80}},                // 10 × 8
		{7, "zero ()", Cost{OutputBytes: 8}},                                 // a scalar is one element
		// x·w1: 2mkn = 2 × 64 × 784 × 256 = 25,690,112; out 64×256×8 = 131,072;
		// reads x and w1: 401,408 + 1,605,632 = 2,007,040.
		{8, "x·w1", Cost{FLOPs: 25690112, OutputBytes: 131072, InputBytes: 2007040}},
		// +b1: one per output element, 64 × 256 = 16,384; reads 131,072 + 2,048.
		{9, "+b1", Cost{FLOPs: 16384, OutputBytes: 131072, InputBytes: 133120}},
		// ≥0 (ReLU's mask): 16,384; reads 131,072 + 8.
		{10, "≥0", Cost{FLOPs: 16384, OutputBytes: 131072, InputBytes: 131080}},
		// ⊙ mask: 16,384; reads 2 × 131,072.
		{11, "relu", Cost{FLOPs: 16384, OutputBytes: 131072, InputBytes: 262144}},
		// h·w2: 2 × 64 × 256 × 10 = 327,680; out 640 × 8 = 5,120; reads 131,072 + 20,480.
		{12, "h·w2", Cost{FLOPs: 327680, OutputBytes: 5120, InputBytes: 151552}},
		// +b2: 640; reads 5,120 + 80.
		{13, "+b2", Cost{FLOPs: 640, OutputBytes: 5120, InputBytes: 5200}},
		// log-softmax: 5 × 640 = 3,200.
		{14, "log-softmax", Cost{FLOPs: 3200, OutputBytes: 5120, InputBytes: 5120}},
		// ⊙ y: 640; reads 2 × 5,120.
		{15, "⊙y", Cost{FLOPs: 640, OutputBytes: 5120, InputBytes: 10240}},
		// sum of all: the input's 640 elements; a scalar out.
		{16, "sum", Cost{FLOPs: 640, OutputBytes: 8, InputBytes: 5120}},
		// neg of a scalar: 1.
		{17, "neg", Cost{FLOPs: 1, OutputBytes: 8, InputBytes: 8}},
	}
	for _, tt := range tests {
		if got := g.Cost(tt.id); got != tt.want {
			t.Errorf("Cost(%d) %s: got %+v, want %+v", tt.id, tt.what, got, tt.want)
		}
	}
	// FLOPs: 25,690,112 + 3 × 16,384 + 327,680 + 640 + 3,200 + 640 + 640 + 1
	//      = 26,072,065.
	// Parameters: 1,605,632 + 2,048 + 20,480 + 80 = 1,628,240 bytes.
	// Outputs: sources 401,408 + 5,120 + 1,605,632 + 2,048 + 20,480 + 80 + 8
	//      = 2,034,776; ops 4 × 131,072 + 4 × 5,120 + 8 + 8 = 544,784;
	//      together 2,579,560.
	// Inputs: 2,007,040 + 133,120 + 131,080 + 262,144 + 151,552 + 5,200
	//      + 5,120 + 10,240 + 5,120 + 8 = 2,710,624.
	want := Cost{FLOPs: 26072065, OutputBytes: 2579560, ParamBytes: 1628240, InputBytes: 2710624}
	if got := g.TotalCost(); got != want {
		t.Errorf("TotalCost: got %+v, want %+v", got, want)
	}
}

// TestCostMLPFloat32 halves every byte count and keeps the FLOPs.
func TestCostMLPFloat32(t *testing.T) {
	g64, g32 := mlpGraph(t, 64, 256, Float64), mlpGraph(t, 64, 256, Float32)
	c64, c32 := g64.TotalCost(), g32.TotalCost()
	want := Cost{FLOPs: c64.FLOPs, OutputBytes: c64.OutputBytes / 2, ParamBytes: c64.ParamBytes / 2, InputBytes: c64.InputBytes / 2}
	if c32 != want {
		t.Errorf("float32 TotalCost: got %+v, want %+v", c32, want)
	}
}

// costOfOp builds a graph of float64 inputs of the given shapes and one op
// over them (its shape inferred), and returns the op's cost.
func costOfOp(t *testing.T, op Op, in ...Shape) Cost {
	t.Helper()
	g := New()
	var ids []int64
	for i, s := range in {
		id := int64(i + 1)
		if err := g.Add(Node{ID: id, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: s, DType: Float64}); err != nil {
			t.Fatalf("%s: input %d: %v", op.Kind, i, err)
		}
		ids = append(ids, id)
	}
	ins := make([]*Node, len(ids))
	for i, id := range ids {
		ins[i], _ = g.Node(id)
	}
	s, dt, err := g.inferNode(op, ins)
	if err != nil {
		t.Fatalf("%s: %v", op.Kind, err)
	}
	if err := g.Add(Node{ID: 100, Role: RoleOp, Op: op, Inputs: ids, Shape: s, DType: dt}); err != nil {
		t.Fatalf("%s: %v", op.Kind, err)
	}
	return g.Cost(100)
}

func TestCostPerKind(t *testing.T) {
	stats := func(n int) *tensor.Dense { return tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(n)) }
	tests := []struct {
		name      string
		op        Op
		in        []Shape
		flops     int64
		outputLen int64 // output elements; OutputBytes is 8 × this
	}{
		{"exp: a transcendental counts 4", NewOp(KindExp), shapes(shp(3, 5)), 4 * 15, 15},
		{"tanh", NewOp(KindTanh), shapes(shp(10)), 40, 10},
		{"neg counts 1", NewOp(KindNeg), shapes(shp(3, 5)), 15, 15},
		{"sqrt counts 1", NewOp(KindSqrt), shapes(shp(3, 5)), 15, 15},
		{"sub", NewOp(KindSub), shapes(shp(3, 5), shp(3, 5)), 15, 15},
		{"scalar times a matrix", NewOp(KindMul), shapes(nil, shp(3, 5)), 15, 15},
		{"pow counts 4", NewOp(KindPow), shapes(shp(3, 5), nil), 60, 15},
		{"comparison", NewOp(KindLt, BoolAttr("ret_same", true)), shapes(shp(4), shp(4)), 4, 4},
		{"broadcast add: output elements", NewOp(KindBroadcastAdd, AxesAttr("right", 0)), shapes(shp(64, 10), shp(10)), 640, 640},
		{"broadcast pow", NewOp(KindBroadcastPow, AxesAttr("left", 0)), shapes(shp(10), shp(64, 10)), 2560, 640},
		// 2mkn = 2 × 2 × 3 × 4.
		{"matmul", NewOp(KindMatMul), shapes(shp(2, 3), shp(3, 4)), 48, 8},
		// trans_a: A is (k,m) = (3,2); 2 × 2 × 3 × 4.
		{"matmul trans_a", NewOp(KindMatMul, BoolAttr("trans_a", true)), shapes(shp(3, 2), shp(3, 4)), 48, 8},
		// trans_b: B is (n,k) = (4,3); still 48.
		{"matmul trans_b", NewOp(KindMatMul, BoolAttr("trans_b", true)), shapes(shp(2, 3), shp(4, 3)), 48, 8},
		// 2mn = 2 × 3 × 4.
		{"matvec", NewOp(KindMatVec), shapes(shp(3, 4), shp(4)), 24, 3},
		{"matvec trans_a", NewOp(KindMatVec, BoolAttr("trans_a", true)), shapes(shp(4, 3), shp(4)), 24, 3},
		// 2n.
		{"vecdot", NewOp(KindVecDot), shapes(shp(7), shp(7)), 14, 1},
		// mn.
		{"outer", NewOp(KindOuter), shapes(shp(3), shp(5)), 15, 15},
		// 2bmkn = 2 × 2 × 3 × 4 × 5.
		{"batched matmul", NewOp(KindBatchedMatMul), shapes(shp(2, 3, 4), shp(2, 4, 5)), 240, 30},
		{"batched matmul trans_a", NewOp(KindBatchedMatMul, BoolAttr("trans_a", true)), shapes(shp(2, 4, 3), shp(2, 4, 5)), 240, 30},
		// Two batch dims: 2 × (2×2) × 3 × 4 × 5.
		{"batched matmul rank 4", NewOp(KindBatchedMatMul), shapes(shp(2, 2, 3, 4), shp(2, 2, 4, 5)), 480, 60},
		// (2,3,4)·(4,5) over 4: output (2,3,5) = 30 elements; 2 × 30 × 4.
		{"tensordot", NewOp(KindTensordot, IntsAttr("a_axes", 2), IntsAttr("b_axes", 0)), shapes(shp(2, 3, 4), shp(4, 5)), 240, 30},
		// Full contraction of (2,3) with (3,2): a scalar; 2 × 1 × 6.
		{"tensordot to a scalar", NewOp(KindTensordot, IntsAttr("a_axes", 0, 1), IntsAttr("b_axes", 1, 0)), shapes(shp(2, 3), shp(3, 2)), 12, 1},
		{"sum: input elements", NewOp(KindSum, AxesAttr("axes", 1)), shapes(shp(6, 7)), 42, 6},
		{"max: input elements", NewOp(KindMax, AxesAttr("axes")), shapes(shp(6, 7)), 42, 1},
		{"softmax: 5 per element", NewOp(KindSoftmax, IntAttr("axis", -1)), shapes(shp(64, 10)), 3200, 640},
		// (1,3,5,5) with 3×3 kernels, pad 1: (1,5,5,27) = 675 elements moved.
		{"im2col moves data only", NewOp(KindIm2Col, ShapeAttr("kernel", 3, 3), ShapeAttr("pad", 1, 1), ShapeAttr("stride", 1, 1), ShapeAttr("dilation", 1, 1)), shapes(shp(1, 3, 5, 5)), 0, 675},
		// (1,2,4,4) pooled 2×2 by 2: (1,2,2,2) = 8 outputs × 4.
		{"maxpool", NewOp(KindMaxPool2D, ShapeAttr("kernel", 2, 2), ShapeAttr("pad", 0, 0, 0, 0), ShapeAttr("stride", 2, 2)), shapes(shp(1, 2, 4, 4)), 32, 8},
		// (1,1,5,5) 3×2 kernel, stride 1: (1,1,3,4) = 12 × 6.
		{"avgpool", NewOp(KindAvgPool2D, ShapeAttr("kernel", 3, 2), ShapeAttr("pad", 0, 0, 0, 0), ShapeAttr("stride", 1, 1)), shapes(shp(1, 1, 5, 5)), 72, 12},
		{"global avgpool: input elements", NewOp(KindGlobalAvgPool2D), shapes(shp(2, 3, 4, 5)), 120, 6},
		{"dropout", NewOp(KindDropout, FloatAttr("probability", 0.5)), shapes(shp(3, 4)), 12, 12},
		{"batchnorm: 8 per element", NewOp(KindBatchNorm, FloatAttr("momentum", 0.9), FloatAttr("epsilon", 1e-5),
			TensorAttr("running_mean", stats(3)), TensorAttr("running_var", stats(3))), shapes(shp(2, 3, 4, 4)), 768, 96},
		{"reshape", NewOp(KindReshape, ShapeAttr("shape", 6)), shapes(shp(2, 3)), 0, 6},
		{"transpose", NewOp(KindTranspose, AxesAttr("perm", 1, 0)), shapes(shp(2, 3)), 0, 6},
		{"slice", NewOp(KindSlice, IntAttr("axis", 0), IntAttr("start", 0), IntAttr("end", 2), IntAttr("step", 1)), shapes(shp(4, 3)), 0, 6},
		{"concat", NewOp(KindConcat, IntAttr("axis", 0)), shapes(shp(2, 3), shp(1, 3)), 0, 9},
		{"at", NewOp(KindAt, IntsAttr("coords", 1, 1)), shapes(shp(2, 3)), 0, 1},
		{"size_of", NewOp(KindSizeOf, IntAttr("axis", 1)), shapes(shp(2, 3)), 0, 1},
	}
	for _, tt := range tests {
		got := costOfOp(t, tt.op, tt.in...)
		var in int64
		for _, s := range tt.in {
			in += 8 * s.Size()
		}
		want := Cost{FLOPs: tt.flops, OutputBytes: 8 * tt.outputLen, InputBytes: in}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, want)
		}
	}
}

// TestCostConv: a convolution is im2col → reshape → matmul(trans_b) →
// reshape → transpose, and costs its matmul.
func TestCostConv(t *testing.T) {
	// 8 images 1×28×28, 32 filters of 1×5×5, no padding: 24×24 outputs.
	g := New()
	add := func(n Node) {
		t.Helper()
		if err := g.Add(n); err != nil {
			t.Fatalf("Add(%d): %v", n.ID, err)
		}
	}
	add(Node{ID: 1, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(8, 1, 28, 28), DType: Float32, Name: "x"})
	add(Node{ID: 2, Role: RoleLearnable, Op: Op{Kind: KindInput}, Shape: shp(32, 1, 5, 5), DType: Float32, Name: "filter"})
	add(Node{ID: 3, Role: RoleOp, Op: NewOp(KindIm2Col, ShapeAttr("kernel", 5, 5), ShapeAttr("pad", 0, 0), ShapeAttr("stride", 1, 1), ShapeAttr("dilation", 1, 1)),
		Inputs: []int64{1}, Shape: shp(8, 24, 24, 25), DType: Float32})
	add(Node{ID: 4, Role: RoleOp, Op: NewOp(KindReshape, ShapeAttr("shape", 8*24*24, 25)), Inputs: []int64{3}, Shape: shp(4608, 25), DType: Float32})
	add(Node{ID: 5, Role: RoleOp, Op: NewOp(KindReshape, ShapeAttr("shape", 32, 25)), Inputs: []int64{2}, Shape: shp(32, 25), DType: Float32})
	add(Node{ID: 6, Role: RoleOp, Op: NewOp(KindMatMul, BoolAttr("trans_b", true)), Inputs: []int64{4, 5}, Shape: shp(4608, 32), DType: Float32})
	add(Node{ID: 7, Role: RoleOp, Op: NewOp(KindReshape, ShapeAttr("shape", 8, 24, 24, 32)), Inputs: []int64{6}, Shape: shp(8, 24, 24, 32), DType: Float32})
	add(Node{ID: 8, Role: RoleOp, Op: NewOp(KindTranspose, AxesAttr("perm", 0, 3, 1, 2)), Inputs: []int64{7}, Shape: shp(8, 32, 24, 24), DType: Float32})
	// im2col moves 8 × 24 × 24 × 25 = 115,200 float32s: 460,800 bytes, no FLOPs.
	if got, want := g.Cost(3), (Cost{OutputBytes: 460800, InputBytes: 8 * 28 * 28 * 4}); got != want {
		t.Errorf("im2col: got %+v, want %+v", got, want)
	}
	// The matmul (4608,25)×(25,32)ᵀ: 2 × 4608 × 25 × 32 = 7,372,800, which
	// is 2 × (outputs 8×32×24×24) × (kernel 1×5×5), the textbook count.
	if got, want := g.TotalCost().FLOPs, int64(2*8*32*24*24*1*5*5); got != want || want != 7372800 {
		t.Errorf("conv FLOPs: got %d, want 7372800", got)
	}
	// The filter's 32 × 25 float32s are the only parameter bytes.
	if got := g.TotalCost().ParamBytes; got != 3200 {
		t.Errorf("conv ParamBytes: got %d, want 3200", got)
	}
}

func TestCostUnknownNode(t *testing.T) {
	g := mlpGraph(t, 2, 3, Float64)
	if got := g.Cost(999); got != (Cost{}) {
		t.Errorf("Cost(999): got %+v, want the zero Cost", got)
	}
	if got := New().TotalCost(); got != (Cost{}) {
		t.Errorf("empty TotalCost: got %+v, want the zero Cost", got)
	}
}

func TestCostSaturates(t *testing.T) {
	tests := []struct {
		a, b, mul, add int64
	}{
		{3, 4, 12, 7},
		{math.MaxInt64, 2, math.MaxInt64, math.MaxInt64},
		{1 << 40, 1 << 40, math.MaxInt64, 1 << 41},
		{0, math.MaxInt64, 0, math.MaxInt64},
	}
	for _, tt := range tests {
		if got := mulSat(tt.a, tt.b); got != tt.mul {
			t.Errorf("mulSat(%d, %d): got %d, want %d", tt.a, tt.b, got, tt.mul)
		}
		if got := addSat(tt.a, tt.b); got != tt.add {
			t.Errorf("addSat(%d, %d): got %d, want %d", tt.a, tt.b, got, tt.add)
		}
	}
}

// chainGraph is n alternating tanh and matmul nodes over a (64,64) input,
// the shape of graph the partitioner meets at scale.
func chainGraph(tb testing.TB, n int) *Graph {
	tb.Helper()
	g := New()
	add := func(nd Node) {
		if err := g.Add(nd); err != nil {
			tb.Fatal(err)
		}
	}
	add(Node{ID: 1, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(64, 64), DType: Float32})
	add(Node{ID: 2, Role: RoleLearnable, Op: Op{Kind: KindInput}, Shape: shp(64, 64), DType: Float32})
	for i := 3; i < n; i++ {
		nd := Node{ID: int64(i), Role: RoleOp, Op: NewOp(KindTanh), Inputs: []int64{int64(i - 1)}, Shape: shp(64, 64), DType: Float32}
		if i%2 == 0 {
			nd.Op, nd.Inputs = NewOp(KindMatMul), []int64{int64(i - 1), 2}
		}
		add(nd)
	}
	return g
}

func BenchmarkCost(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		g := chainGraph(b, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for p := range g.Nodes() {
					_ = g.Cost(g.Nodes()[p].ID)
				}
			}
		})
	}
}

func TestCostDoesNotAllocate(t *testing.T) {
	g := chainGraph(t, 100)
	allocs := testing.AllocsPerRun(10, func() {
		for _, n := range g.Nodes() {
			_ = g.Cost(n.ID)
		}
		_ = g.TotalCost()
	})
	if allocs != 0 {
		t.Errorf("got %v allocations, want 0", allocs)
	}
}

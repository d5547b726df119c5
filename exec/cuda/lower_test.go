package cuda

import (
	"context"
	"errors"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// lowerCase lowers one op case (see ops_test.go) and returns the plan.
func lowerCase(t *testing.T, c opCase) *Plan {
	t.Helper()
	spec := c.Spec(t, newRand())
	p, err := Lower(&spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLowerLaunches checks, for one op of each family, what the forward
// pass launches: the kernel, its op code, its sizes and strides, and the
// launch configuration.
func TestLowerLaunches(t *testing.T) {
	m := graph.Shape{3, 4}
	for _, tc := range []struct {
		c    opCase
		want string // the forward launch of node 10
	}{
		{opCase{Op: graph.NewOp(graph.KindExp), In: []graph.Shape{m}, Out: m},
			"unary_f64[exp] grid=1 block=256 (8, 12, 0, 1, 3, 4, 12, 12, 4, 1, b0, b3)"},
		{opCase{Op: graph.NewOp(graph.KindBroadcastAdd, graph.AxesAttr("right", 0)), In: []graph.Shape{m, {4}}, Out: m},
			"binary_f64[add] grid=1 block=256 (0, 12, 0, 1, 3, 4, 12, 12, 4, 1, 4, 4, 0, 1, b0, b3, b6)"},
		{opCase{Op: graph.NewOp(graph.KindBroadcastMul, graph.AxesAttr("left", 1)), In: []graph.Shape{{3}, m}, Out: m},
			"binary_f64[mul] grid=1 block=256 (2, 12, 0, 1, 3, 4, 3, 3, 1, 0, 12, 12, 4, 1, b0, b3, b6)"},
		{opCase{Op: graph.NewOp(graph.KindMul), In: []graph.Shape{m, {}}, Out: m},
			"binary_f64[mul] grid=1 block=256 (2, 12, 0, 1, 3, 4, 12, 12, 4, 1, 0, 0, 0, 0, b0, b3, b6)"},
		{opCase{Op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_a", true)), In: []graph.Shape{{4, 3}, {4, 5}}, Out: graph.Shape{3, 5}},
			"dgemm NT m=5 n=3 k=4 alpha=1 A=b3 lda=5 B=b0 ldb=3 beta=0 C=b6 ldc=5"},
		{opCase{Op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_b", true)), In: []graph.Shape{m, {5, 4}}, Out: graph.Shape{3, 5}},
			"dgemm TN m=5 n=3 k=4 alpha=1 A=b3 lda=4 B=b0 ldb=4 beta=0 C=b6 ldc=5"},
		{opCase{Op: graph.NewOp(graph.KindMatVec), In: []graph.Shape{m, {4}}, Out: graph.Shape{3}},
			"dgemm NN m=1 n=3 k=4 alpha=1 A=b3 lda=1 B=b0 ldb=4 beta=0 C=b6 ldc=1"},
		{opCase{Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 2)), In: []graph.Shape{{2, 3, 4}}, Out: graph.Shape{3}},
			"reduce_f64[sum] grid=1 block=256 (0, 3, 0, 1, 1, 3, 1, 1, 2, 1, 4, 24, 12, 4, 1, b0, b3)"},
		{opCase{Op: graph.NewOp(graph.KindMax, graph.AxesAttr("axes", 1)), In: []graph.Shape{m}, Out: graph.Shape{3}},
			"reduce_f64[max] grid=1 block=256 (1, 3, 0, 1, 1, 3, 1, 1, 1, 1, 4, 12, 12, 4, 1, b0, b3)"},
		{opCase{Op: graph.NewOp(graph.KindTranspose, graph.AxesAttr("perm", 0, 2, 3, 1)), In: []graph.Shape{{2, 3, 4, 5}}, Out: graph.Shape{2, 4, 5, 3}},
			"unary_f64[copy] grid=1 block=256 (0, 120, 0, 4, 5, 3, 60, 5, 1, 20, b0, b3)"},
		{opCase{Op: graph.NewOp(graph.KindSoftmax, graph.IntAttr("axis", -1), graph.BoolAttr("log", true)), In: []graph.Shape{m}, Out: m},
			"softmax_f64 grid=1 block=256 (3, 4, 1, b0, b3)"},
		{opCase{Op: graph.NewOp(graph.KindIm2Col, graph.ShapeAttr("kernel", 3, 2), graph.ShapeAttr("pad", 1, 0), graph.ShapeAttr("stride", 2, 1), graph.ShapeAttr("dilation", 1, 2)),
			In: []graph.Shape{{2, 3, 7, 6}}, Out: graph.Shape{2, 4, 4, 18}},
			"im2col_f64 grid=3 block=256 (576, 3, 7, 6, 4, 4, 3, 2, 1, 0, 2, 1, 1, 2, b0, b3)"},
		{opCase{Op: graph.NewOp(graph.KindMaxPool2D, graph.ShapeAttr("kernel", 3, 3), graph.ShapeAttr("pad", 1, 2, 1, 2), graph.ShapeAttr("stride", 2, 2)),
			In: []graph.Shape{{2, 3, 7, 6}}, Out: graph.Shape{2, 3, 4, 4}},
			"maxpool_f64 grid=1 block=256 (96, 3, 7, 6, 4, 4, 3, 3, 1, 1, 2, 2, b0, b3)"},
	} {
		t.Run(tc.c.Name(), func(t *testing.T) {
			p := lowerCase(t, tc.c)
			var got []string
			for _, l := range p.Forward {
				if l.Node == 10 {
					got = append(got, l.String())
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("forward launches of the op:\n got %q\nwant %q", got, tc.want)
			}
			for _, l := range append(append([]Launch{}, p.Forward...), p.Backward...) {
				if l.Gemm == nil && (l.Block.X != plan.BlockSize || l.Grid.X < 1) {
					t.Errorf("%v: launch configuration", l)
				}
			}
		})
	}
}

// TestLowerBackwardMLP checks the gradient launches of a dense layer: the
// weight gradient xᵀ·dy is one gemm added into the accumulator, the bias
// gradient one reduction over the batch axis, also added.
func TestLowerBackwardMLP(t *testing.T) {
	m := mlp(t, tensor.Float32, 4, 6, 5, 3)
	p, err := Lower(&m.spec)
	if err != nil {
		t.Fatal(err)
	}
	w0, b0 := m.learn[0], m.learn[1]
	var wGrad, bGrad []Launch
	for _, l := range p.Backward {
		if l.Gemm != nil && l.Gemm.C == p.Accums[0] {
			wGrad = append(wGrad, l)
		}
		if l.Gemm == nil && len(l.Args) > 0 && l.Args[len(l.Args)-1].Buf == p.Accums[1] {
			bGrad = append(bGrad, l)
		}
	}
	if len(wGrad) != 1 {
		t.Fatalf("weight %d: %d gemms into its accumulator, want 1", w0, len(wGrad))
	}
	g := wGrad[0].Gemm
	// dW (6×5) = xᵀ (6×4) · dY (4×5), column-major: dWᵀ = dYᵀ·x.
	if g.M != 5 || g.N != 6 || g.K != 4 || g.TransA || !g.TransB || g.Beta != 1 || g.B != p.Value[m.x] || g.Lda != 5 || g.Ldb != 6 || g.Ldc != 5 {
		t.Errorf("weight gradient %v", wGrad[0])
	}
	if len(bGrad) != 1 || bGrad[0].Kernel != "reduce_f32" || bGrad[0].Args[2].Int != 1 {
		t.Fatalf("bias %d: %v, want one accumulating reduction", b0, bGrad)
	}
	// reduce over rows: out dims (1,1,1,5), reduced dims (1,1,4,1).
	if r := bGrad[0].Args; r[4].Int != 1 || r[5].Int != 1 || r[6].Int != 5 || r[9].Int != 4 || r[10].Int != 1 {
		t.Errorf("bias gradient %v", bGrad[0])
	}
}

// TestLowerReusesGradientBuffers checks that the backward pass of the
// 784-1024-1024-10 MLP needs far fewer pooled buffers than it has
// gradients, and that the plan's memory is what its buffers add up to.
func TestLowerReusesGradientBuffers(t *testing.T) {
	m := mlp(t, tensor.Float32, 256, 784, 1024, 1024, 10)
	p, err := Lower(&m.spec)
	if err != nil {
		t.Fatal(err)
	}
	pooled, ops := 0, 0
	var bytes int64
	for _, b := range p.Buffers {
		if b.Class == BufGrad && b.Node < 0 {
			pooled++
		}
		n := int64(b.Elems) * 4
		if b.Class.PerMicroBatch() {
			n *= 2
		}
		bytes += n
	}
	for _, n := range m.spec.Graph.Nodes() {
		if n.Role == graph.RoleOp {
			ops++
		}
	}
	if pooled == 0 || pooled*3 > ops {
		t.Errorf("%d pooled gradient buffers for %d ops", pooled, ops)
	}
	if got := p.Bytes(2); got != bytes {
		t.Errorf("Bytes(2) = %d, buffers add up to %d", got, bytes)
	}
	t.Logf("%d ops, %d pooled gradient buffers, %.1f MiB for 2 micro-batches", ops, pooled, float64(p.Bytes(2))/(1<<20))
}

// TestUnsupported checks that a part the executor cannot lower is refused
// at Open with an *UnsupportedOpError naming the node and its kind.
func TestUnsupported(t *testing.T) {
	m := graph.Shape{3, 4}
	for _, c := range []opCase{
		{Op: graph.NewOp(graph.KindGlobalAvgPool2D), In: []graph.Shape{{1, 2, 3, 3}}, Out: graph.Shape{1, 2, 1, 1}},
		{Op: graph.NewOp(graph.KindSoftmax, graph.IntAttr("axis", 0)), In: []graph.Shape{m}, Out: m},
		{Op: graph.NewOp(graph.KindBatchedMatMul), In: []graph.Shape{{2, 3, 4}, {2, 4, 5}}, Out: graph.Shape{2, 3, 5}},
		{Op: graph.NewOp(graph.KindDropout, graph.FloatAttr("probability", 0.5)), In: []graph.Shape{m}, Out: m},
		{Op: graph.NewOp(graph.KindAvgPool2D, graph.ShapeAttr("kernel", 2, 2), graph.ShapeAttr("pad", 0, 0, 0, 0), graph.ShapeAttr("stride", 2, 2)), In: []graph.Shape{{1, 1, 4, 4}}, Out: graph.Shape{1, 1, 2, 2}},
	} {
		t.Run(c.Name(), func(t *testing.T) {
			spec := c.Spec(t, newRand())
			spec.Part = 7
			s, err := newReference().Open(context.Background(), spec)
			var ue *UnsupportedOpError
			if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ue) || ue.Part != 7 || ue.Node != 10 || ue.Kind != c.Op.Kind {
				t.Fatalf("Open: got %v, want an *UnsupportedOpError for part 7, node 10, op %s", err, c.Op.Kind)
			}
			if s != nil {
				t.Error("Open returned a session with its error")
			}
		})
	}
	// A dropout is the identity in evaluation mode, but Gorgonia's
	// gradient of it is not: a gradient through it is refused.
	c := opCase{Op: graph.NewOp(graph.KindDropout, graph.FloatAttr("probability", 0.5)), In: []graph.Shape{m}, Out: m, Eval: true}
	spec := c.Spec(t, newRand())
	var ue *UnsupportedOpError
	if _, err := Lower(&spec); !errors.As(err, &ue) || ue.Node != 10 || ue.Kind != graph.KindDropout {
		t.Errorf("dropout in evaluation mode: got %v, want an *UnsupportedOpError for node 10", err)
	}
	// Mixed dtypes in one part are refused too.
	g := graph.New()
	_ = g.Add(graph.Node{ID: 1, Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: m, DType: graph.Float32, Value: tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(3, 4))})
	_ = g.Add(graph.Node{ID: 2, Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: m, DType: graph.Float64, Value: tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(3, 4))})
	_ = g.Add(graph.Node{ID: 3, Role: graph.RoleOp, Op: graph.NewOp(graph.KindNeg), Inputs: []int64{2}, Shape: m, DType: graph.Float64})
	spec = exec.SessionSpec{Graph: g, Outputs: []int64{3}, Solver: exec.SGD(0.1, 0)}
	if _, err := Lower(&spec); !errors.Is(err, ErrUnsupported) {
		t.Errorf("mixed dtypes: got %v, want ErrUnsupported", err)
	}
}

package graph

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// opCase builds one op in a fresh graph from inputs that carry values.
type opCase struct {
	name  string
	kind  OpKind
	attrs []Attr // expected attributes; nil: only the kind is checked
	eval  bool   // run in eval mode
	build func(b *opBuilder) *gorgonia.Node
}

type opBuilder struct {
	g     *gorgonia.ExprGraph
	rng   *rand.Rand
	learn gorgonia.Nodes
}

// in adds an input with a random value; positive values stay positive.
func (b *opBuilder) in(shape ...int) *gorgonia.Node {
	v := randDense(b.rng, tensor.Float64, 1, shape...)
	n := gorgonia.NewTensor(b.g, tensor.Float64, len(shape), gorgonia.WithShape(shape...),
		gorgonia.WithName(fmt.Sprintf("in%d", len(b.learn))), gorgonia.WithValue(v))
	if len(shape) == 0 {
		n = gorgonia.NewScalar(b.g, tensor.Float64, gorgonia.WithName(fmt.Sprintf("in%d", len(b.learn))), gorgonia.WithValue(b.rng.NormFloat64()))
	}
	b.learn = append(b.learn, n)
	return n
}

// pos adds an input with values in [0.5, 1.5).
func (b *opBuilder) pos(shape ...int) *gorgonia.Node {
	n := b.in(shape...)
	d := n.Value().(*tensor.Dense).Float64s()
	for i := range d {
		d[i] = 0.5 + b.rng.Float64()
	}
	return n
}

func must(n *gorgonia.Node, err error) *gorgonia.Node { return gorgonia.Must(n, err) }

func opCases() []opCase {
	var cases []opCase
	bin := []struct {
		kind OpKind
		fn   func(a, b *gorgonia.Node) (*gorgonia.Node, error)
	}{{KindAdd, gorgonia.Add}, {KindSub, gorgonia.Sub}, {KindMul, gorgonia.HadamardProd}, {KindDiv, gorgonia.HadamardDiv}, {KindPow, gorgonia.Pow}}
	for _, c := range bin {
		c := c
		cases = append(cases, opCase{name: string(c.kind), kind: c.kind, attrs: []Attr{},
			build: func(b *opBuilder) *gorgonia.Node { return must(c.fn(b.pos(3, 4), b.pos(3, 4))) }})
	}
	cases = append(cases,
		opCase{name: "mul by scalar", kind: KindMul, build: func(b *opBuilder) *gorgonia.Node {
			return must(gorgonia.Mul(b.in(3, 4), gorgonia.NewConstant(2.5)))
		}},
		opCase{name: "div by scalar", kind: KindDiv, build: func(b *opBuilder) *gorgonia.Node {
			return must(gorgonia.Div(b.in(3, 4), b.pos()))
		}},
	)
	cmp := []struct {
		kind OpKind
		fn   func(a, b *gorgonia.Node, retSame bool) (*gorgonia.Node, error)
	}{{KindLt, gorgonia.Lt}, {KindGt, gorgonia.Gt}, {KindLte, gorgonia.Lte}, {KindGte, gorgonia.Gte}, {KindEq, gorgonia.Eq}, {KindNe, gorgonia.Ne}}
	for _, c := range cmp {
		for _, same := range []bool{true, false} {
			c, same := c, same
			cases = append(cases, opCase{name: fmt.Sprintf("%s retSame=%v", c.kind, same), kind: c.kind, attrs: []Attr{BoolAttr("ret_same", same)},
				build: func(b *opBuilder) *gorgonia.Node {
					x := b.in(2, 5)
					y := b.in(2, 5)
					if c.kind == KindEq || c.kind == KindNe {
						y = must(gorgonia.Ceil(x)) // equal somewhere
						x = must(gorgonia.Floor(x))
					}
					return must(c.fn(x, y, same))
				}})
		}
	}
	for _, k := range UnaryKinds() {
		k := k
		cases = append(cases, opCase{name: string(k), kind: k, attrs: []Attr{}, build: func(b *opBuilder) *gorgonia.Node {
			return must(unaryFns[k](b.pos(2, 3)))
		}})
	}
	cases = append(cases,
		opCase{name: "matmul", kind: KindMatMul, attrs: []Attr{BoolAttr("trans_a", false), BoolAttr("trans_b", false)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Mul(b.in(3, 4), b.in(4, 5))) }},
		opCase{name: "matvec", kind: KindMatVec, attrs: []Attr{BoolAttr("trans_a", false)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Mul(b.in(3, 4), b.in(4))) }},
		opCase{name: "vecdot", kind: KindVecDot, attrs: []Attr{},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Mul(b.in(6), b.in(6))) }},
		opCase{name: "outer", kind: KindOuter, attrs: []Attr{},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.OuterProd(b.in(3), b.in(4))) }},
		opCase{name: "batched matmul transposed", kind: KindBatchedMatMul, attrs: []Attr{BoolAttr("trans_a", true), BoolAttr("trans_b", true)},
			build: func(b *opBuilder) *gorgonia.Node {
				return must(gorgonia.BatchedMatMul(b.in(2, 4, 3), b.in(2, 5, 4), true, true))
			}},
		opCase{name: "tensordot", kind: KindTensordot, attrs: []Attr{IntsAttr("a_axes", 1, 2), IntsAttr("b_axes", 0, 1)},
			build: func(b *opBuilder) *gorgonia.Node {
				return must(gorgonia.Tensordot([]int{1, 2}, []int{0, 1}, b.in(2, 3, 4), b.in(3, 4, 5)))
			}},
		opCase{name: "sum along 1", kind: KindSum, attrs: []Attr{AxesAttr("axes", 1)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Sum(b.in(3, 4, 2), 1)) }},
		opCase{name: "mean along 0", kind: KindDiv,
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Mean(b.in(3, 4), 0)) }},
		opCase{name: "max along 0 and 2", kind: KindMax, attrs: []Attr{AxesAttr("axes", 0, 2)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Max(b.in(3, 4, 2), 0, 2)) }},
		opCase{name: "norm", kind: KindSqrt,
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Norm(b.in(3, 4), 1, 2)) }},
		opCase{name: "reshape", kind: KindReshape, attrs: []Attr{ShapeAttr("shape", 4, 6)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Reshape(b.in(2, 3, 4), tensor.Shape{4, 6})) }},
		opCase{name: "transpose", kind: KindTranspose, attrs: []Attr{AxesAttr("perm", 1, 2, 0)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Transpose(b.in(2, 3, 4), 1, 2, 0)) }},
		opCase{name: "slice range with step", kind: KindSlice, attrs: []Attr{IntAttr("axis", 0), IntAttr("start", 1), IntAttr("end", 6), IntAttr("step", 2)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Slice(b.in(7, 3), gorgonia.S(1, 6, 2))) }},
		opCase{name: "slice second axis", kind: KindSlice, attrs: []Attr{IntAttr("axis", 1), IntAttr("start", 2), IntAttr("end", 3), IntAttr("step", 0)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Slice(b.in(4, 5), nil, gorgonia.S(2))) }},
		opCase{name: "concat", kind: KindConcat, attrs: []Attr{IntAttr("axis", 1)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Concat(1, b.in(2, 3), b.in(2, 1), b.in(2, 4))) }},
		opCase{name: "at", kind: KindAt, attrs: []Attr{IntsAttr("coords", 1, 2)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.At(b.in(3, 4), 1, 2)) }},
		opCase{name: "softmax axis 0", kind: KindSoftmax, attrs: []Attr{IntAttr("axis", 0), BoolAttr("log", false)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.SoftMax(b.in(3, 4), 0)) }},
		opCase{name: "log softmax", kind: KindSoftmax, attrs: []Attr{IntAttr("axis", -1), BoolAttr("log", true)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.LogSoftMax(b.in(3, 4))) }},
		opCase{name: "rectify", kind: KindMul,
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Rectify(b.in(3, 4))) }},
		opCase{name: "leaky relu", kind: KindAdd,
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.LeakyRelu(b.in(3, 4), 0.2)) }},
		opCase{name: "im2col", kind: KindIm2Col, attrs: []Attr{ShapeAttr("dilation", 1, 2), ShapeAttr("kernel", 3, 2), ShapeAttr("pad", 1, 0), ShapeAttr("stride", 2, 1)},
			build: func(b *opBuilder) *gorgonia.Node {
				return must(gorgonia.Im2Col(b.in(2, 3, 7, 8), tensor.Shape{3, 2}, tensor.Shape{1, 0}, tensor.Shape{2, 1}, tensor.Shape{1, 2}))
			}},
		opCase{name: "conv2d", kind: KindTranspose,
			build: func(b *opBuilder) *gorgonia.Node {
				return must(gorgonia.Conv2d(b.in(2, 3, 7, 7), b.in(4, 3, 3, 3), tensor.Shape{3, 3}, []int{1, 1}, []int{2, 2}, []int{1, 1}))
			}},
		opCase{name: "maxpool asymmetric pad", kind: KindMaxPool2D,
			attrs: []Attr{BoolAttr("explicit_pad", true), ShapeAttr("kernel", 3, 2), ShapeAttr("pad", 1, 0, 0, 1), ShapeAttr("stride", 2, 1)},
			build: func(b *opBuilder) *gorgonia.Node {
				return must(gorgonia.MaxPool2D(b.in(2, 3, 7, 6), tensor.Shape{3, 2}, []int{1, 0, 0, 1}, []int{2, 1}))
			}},
		opCase{name: "maxpool", kind: KindMaxPool2D,
			attrs: []Attr{BoolAttr("explicit_pad", false), ShapeAttr("kernel", 2, 2), ShapeAttr("pad", 1, 1, 0, 0), ShapeAttr("stride", 2, 2)},
			build: func(b *opBuilder) *gorgonia.Node {
				return must(gorgonia.MaxPool2D(b.in(1, 2, 6, 6), tensor.Shape{2, 2}, []int{1, 0}, []int{2, 2}))
			}},
		opCase{name: "avgpool", kind: KindAvgPool2D,
			attrs: []Attr{BoolAttr("explicit_pad", false), ShapeAttr("kernel", 3, 3), ShapeAttr("pad", 1, 1, 1, 1), ShapeAttr("stride", 1, 2)},
			build: func(b *opBuilder) *gorgonia.Node {
				return must(gorgonia.AveragePool2D(b.in(2, 2, 6, 7), tensor.Shape{3, 3}, []int{1, 1}, []int{1, 2}))
			}},
		opCase{name: "global avgpool", kind: KindGlobalAvgPool2D, attrs: []Attr{},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.GlobalAveragePool2D(b.in(2, 3, 4, 5))) }},
		opCase{name: "dropout", kind: KindDropout, eval: true, attrs: []Attr{FloatAttr("probability", 0.3), BoolAttr("training", true)},
			build: func(b *opBuilder) *gorgonia.Node { return must(gorgonia.Dropout(b.in(3, 4), 0.3)) }},
		opCase{name: "broadcast expansion used elsewhere", kind: KindAdd, build: func(b *opBuilder) *gorgonia.Node {
			sum := must(gorgonia.BroadcastAdd(b.in(3, 4), b.in(4), nil, []byte{0}))
			var rep *gorgonia.Node
			for _, n := range b.g.AllNodes() {
				if isOp(n, "*gorgonia.repeatOp") {
					rep = n
				}
			}
			return must(gorgonia.Add(sum, must(gorgonia.Square(rep))))
		}},
		opCase{name: "constant tensor", kind: KindAdd, build: func(b *opBuilder) *gorgonia.Node {
			c := gorgonia.NewConstant(tensor.New(tensor.WithShape(2, 2), tensor.WithBacking([]float64{1, 2, 3, 4})), gorgonia.WithName("c"))
			return must(gorgonia.Add(b.in(2, 2), c))
		}},
	)
	bc := []struct {
		kind OpKind
		fn   func(a, b *gorgonia.Node, l, r []byte) (*gorgonia.Node, error)
	}{{KindBroadcastAdd, gorgonia.BroadcastAdd}, {KindBroadcastSub, gorgonia.BroadcastSub}, {KindBroadcastMul, gorgonia.BroadcastHadamardProd},
		{KindBroadcastDiv, gorgonia.BroadcastHadamardDiv}, {KindBroadcastPow, gorgonia.BroadcastPow}}
	for _, c := range bc {
		c := c
		cases = append(cases,
			opCase{name: string(c.kind) + " right", kind: c.kind, attrs: []Attr{AxesAttr("right", 0, 2)},
				build: func(b *opBuilder) *gorgonia.Node { return must(c.fn(b.pos(2, 3, 4), b.pos(3), nil, []byte{0, 2})) }},
			opCase{name: string(c.kind) + " both", kind: c.kind, attrs: []Attr{AxesAttr("left", 1), AxesAttr("right", 0)},
				build: func(b *opBuilder) *gorgonia.Node { return must(c.fn(b.pos(3, 1), b.pos(1, 4), []byte{1}, []byte{0})) }},
		)
	}
	bcc := []struct {
		kind OpKind
		fn   func(a, b *gorgonia.Node, same bool, l, r []byte) (*gorgonia.Node, error)
	}{{KindBroadcastLt, gorgonia.BroadcastLt}, {KindBroadcastGt, gorgonia.BroadcastGt}, {KindBroadcastLte, gorgonia.BroadcastLte},
		{KindBroadcastGte, gorgonia.BroadcastGte}, {KindBroadcastEq, gorgonia.BroadcastEq}, {KindBroadcastNe, gorgonia.BroadcastNe}}
	for _, c := range bcc {
		c := c
		cases = append(cases, opCase{name: string(c.kind), kind: c.kind, attrs: []Attr{AxesAttr("left", 0), BoolAttr("ret_same", true)},
			build: func(b *opBuilder) *gorgonia.Node { return must(c.fn(b.in(4), b.in(3, 4), true, []byte{0}, nil)) }})
	}
	return cases
}

func TestOps(t *testing.T) {
	covered := map[OpKind]bool{KindInput: true, KindConstant: true}
	for i, c := range opCases() {
		t.Run(c.name, func(t *testing.T) {
			b := &opBuilder{g: gorgonia.NewGraph(), rng: rand.New(rand.NewSource(int64(i)))}
			out := c.build(b)
			ir, err := FromGorgonia(b.g, Learnables(b.learn...), WithValues())
			require.NoError(t, err)
			ir = shipped(t, ir)
			n, ok := ir.Node(out.ID())
			require.True(t, ok, "output node %d not in the IR", out.ID())
			for _, m := range ir.Nodes() {
				covered[m.Op.Kind] = true
			}
			if n.Op.Kind != c.kind {
				t.Fatalf("kind: got %s, want %s", n.Op.Kind, c.kind)
			}
			if c.attrs != nil {
				want := NewOp(c.kind, c.attrs...)
				if !reflect.DeepEqual(n.Op.Attrs, want.Attrs) && !(len(n.Op.Attrs) == 0 && len(want.Attrs) == 0) {
					t.Fatalf("attributes: got %v, want %v", n.Op, want)
				}
			}
			dst := gorgonia.NewGraph()
			lowered, err := ir.Lower(dst)
			require.NoError(t, err)
			got, want := run(t, dst, lowered[out.ID()], c.eval), run(t, b.g, out, c.eval)
			require.Equal(t, want, got, "forward values differ")
		})
	}
	for _, k := range Kinds() {
		if !covered[k] && k != KindBatchNorm /* TestBatchNormOp */ && specs[k].class != classCustom /* no Gorgonia op: run by exec, tested there */ {
			t.Errorf("op kind %s is covered by no case", k)
		}
	}
}

// run evaluates out and returns a copy of its value.
func run(t *testing.T, g *gorgonia.ExprGraph, out *gorgonia.Node, eval bool) any {
	t.Helper()
	var v gorgonia.Value
	gorgonia.Read(out, &v)
	var opts []gorgonia.VMOpt
	if eval {
		opts = append(opts, gorgonia.EvalMode())
	}
	vm := gorgonia.NewTapeMachine(g, opts...)
	defer vm.Close()
	require.NoError(t, vm.RunAll())
	if d, ok := v.(*tensor.Dense); ok {
		return d.Clone()
	}
	return v.Data()
}

func TestBatchNormOp(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	g := gorgonia.NewGraph()
	x := gorgonia.NewTensor(g, tensor.Float64, 4, gorgonia.WithShape(3, 2, 4, 4), gorgonia.WithName("x"), gorgonia.WithValue(randDense(rng, tensor.Float64, 1, 3, 2, 4, 4)))
	scale := gorgonia.NewTensor(g, tensor.Float64, 4, gorgonia.WithShape(1, 2, 1, 1), gorgonia.WithName("scale"), gorgonia.WithValue(randDense(rng, tensor.Float64, 1, 1, 2, 1, 1)))
	bias := gorgonia.NewTensor(g, tensor.Float64, 4, gorgonia.WithShape(1, 2, 1, 1), gorgonia.WithName("bias"), gorgonia.WithValue(randDense(rng, tensor.Float64, 1, 1, 2, 1, 1)))
	_, _, _, op, err := gorgonia.BatchNorm(x, scale, bias, 0.7, 1e-3)
	require.NoError(t, err)
	mean := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{0.25, -0.5}))
	variance := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{2, 0.5}))
	require.NoError(t, op.SetStats(mean, variance))
	var bnNode *gorgonia.Node
	for _, n := range g.AllNodes() {
		if n.Op() == gorgonia.Op(op) {
			bnNode = n
		}
	}
	require.NotNil(t, bnNode)
	ir, err := FromGorgonia(g, Learnables(x, scale, bias), WithValues())
	require.NoError(t, err)
	ir = shipped(t, ir)
	n, ok := ir.Node(bnNode.ID())
	require.True(t, ok)
	require.Equal(t, KindBatchNorm, n.Op.Kind)
	require.Equal(t, 0.7, n.Op.Float("momentum"))
	require.Equal(t, 1e-3, n.Op.Float("epsilon"))
	require.Equal(t, true, n.Op.Bool("training"))
	require.Equal(t, []float64{0.25, -0.5}, n.Op.Tensor("running_mean").Float64s())
	require.Equal(t, []float64{2, 0.5}, n.Op.Tensor("running_var").Float64s())
	for _, eval := range []bool{true, false} { // eval first: a training run updates the statistics
		dst := gorgonia.NewGraph()
		lowered, err := ir.Lower(dst)
		require.NoError(t, err)
		// Creating a training machine resets the statistics on both sides.
		got, want := run(t, dst, lowered[bnNode.ID()], eval), run(t, g, bnNode, eval)
		require.Equal(t, want, got, "eval=%v", eval)
	}
}

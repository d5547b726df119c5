package graph

import (
	"fmt"
	"reflect"
	"sync"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// poolMu serialises Gorgonia's pooling constructors (see lowerNode).
var poolMu sync.Mutex

// LowerFunc builds the Gorgonia node of an IR node whose kind Gorgonia has
// no op for (its Props say Extension), from the nodes already built for
// its inputs. The IR node's Shape and DType are those its op infers; the
// node it returns must have that shape. exec.Lower passes one that runs
// the kernels of exec/kernels.
type LowerFunc func(n *Node, in []*gorgonia.Node) (*gorgonia.Node, error)

// Lower rebuilds the graph into dst and returns the new node for each IR
// id. dst should be a fresh graph: Gorgonia merges nodes that look alike
// (same name, type and shape), so nodes already in dst may be reused.
//
// Ops are rebuilt with the same Gorgonia op values as the graph they were
// read from, so a lowered graph computes bit-identical values. Learnable
// parameters and inputs that carry a value are bound to a copy of it.
//
// Lower builds only the kinds that Gorgonia has an op for: a node of an
// Extension kind gives a *NoLoweringError. LowerWith builds those too.
func (g *Graph) Lower(dst *gorgonia.ExprGraph) (map[int64]*gorgonia.Node, error) {
	return g.LowerWith(dst, nil)
}

// LowerWith is Lower that builds the nodes of Extension kinds with ext.
// With a nil ext it is Lower.
func (g *Graph) LowerWith(dst *gorgonia.ExprGraph, ext LowerFunc) (map[int64]*gorgonia.Node, error) {
	if dst == nil {
		return nil, fmt.Errorf("%w: nil destination graph", ErrInvalid)
	}
	out := make(map[int64]*gorgonia.Node, len(g.nodes))
	for i := range g.nodes {
		n := &g.nodes[i]
		in := make([]*gorgonia.Node, len(n.Inputs))
		for j, id := range n.Inputs {
			in[j] = out[id]
		}
		if ext == nil && specs[n.Op.Kind].class == classCustom {
			return nil, &NoLoweringError{Node: n.ID, Kind: n.Op.Kind}
		}
		gn, err := lowerNode(dst, n, in, ext)
		if err != nil {
			return nil, &NodeError{ID: n.ID, Err: err}
		}
		if got := irShape(gn.Shape()); !got.Eq(n.Shape) {
			return nil, &ShapeError{Node: n.ID, Want: n.Shape, Got: got, Reason: "rebuilt node has another shape"}
		}
		out[n.ID] = gn
	}
	return out, nil
}

// MustLower is Lower that panics on error.
func (g *Graph) MustLower(dst *gorgonia.ExprGraph) map[int64]*gorgonia.Node {
	m, err := g.Lower(dst)
	if err != nil {
		panic(err)
	}
	return m
}

var unaryFns = map[OpKind]func(*gorgonia.Node) (*gorgonia.Node, error){
	KindAbs: gorgonia.Abs, KindSign: gorgonia.Sign, KindCeil: gorgonia.Ceil, KindFloor: gorgonia.Floor,
	KindSin: gorgonia.Sin, KindCos: gorgonia.Cos, KindExp: gorgonia.Exp, KindLog: gorgonia.Log, KindLog2: gorgonia.Log2,
	KindNeg: gorgonia.Neg, KindSquare: gorgonia.Square, KindSqrt: gorgonia.Sqrt, KindInverse: gorgonia.Inverse,
	KindInverseSqrt: gorgonia.InverseSqrt, KindCube: gorgonia.Cube, KindTanh: gorgonia.Tanh, KindSigmoid: gorgonia.Sigmoid,
	KindLog1p: gorgonia.Log1p, KindExpm1: gorgonia.Expm1, KindSoftplus: gorgonia.Softplus,
}

var binFns = map[OpKind]func(a, b *gorgonia.Node) (*gorgonia.Node, error){
	KindAdd: gorgonia.Add, KindSub: gorgonia.Sub, KindMul: gorgonia.HadamardProd, KindDiv: gorgonia.HadamardDiv, KindPow: gorgonia.Pow,
}

var cmpFns = map[OpKind]func(a, b *gorgonia.Node, retSame bool) (*gorgonia.Node, error){
	KindLt: gorgonia.Lt, KindGt: gorgonia.Gt, KindLte: gorgonia.Lte, KindGte: gorgonia.Gte, KindEq: gorgonia.Eq, KindNe: gorgonia.Ne,
}

var broadcastFns = map[OpKind]func(a, b *gorgonia.Node, l, r []byte) (*gorgonia.Node, error){
	KindBroadcastAdd: gorgonia.BroadcastAdd, KindBroadcastSub: gorgonia.BroadcastSub, KindBroadcastMul: gorgonia.BroadcastHadamardProd,
	KindBroadcastDiv: gorgonia.BroadcastHadamardDiv, KindBroadcastPow: gorgonia.BroadcastPow,
}

var broadcastCmpFns = map[OpKind]func(a, b *gorgonia.Node, retSame bool, l, r []byte) (*gorgonia.Node, error){
	KindBroadcastLt: gorgonia.BroadcastLt, KindBroadcastGt: gorgonia.BroadcastGt, KindBroadcastLte: gorgonia.BroadcastLte,
	KindBroadcastGte: gorgonia.BroadcastGte, KindBroadcastEq: gorgonia.BroadcastEq, KindBroadcastNe: gorgonia.BroadcastNe,
}

func lowerNode(dst *gorgonia.ExprGraph, n *Node, in []*gorgonia.Node, ext LowerFunc) (*gorgonia.Node, error) {
	op := n.Op
	k := op.Kind
	switch k {
	case KindInput:
		dt, err := n.DType.Tensor()
		if err != nil {
			return nil, err
		}
		opts := []gorgonia.NodeConsOpt{gorgonia.WithName(n.Name)}
		if n.Value != nil {
			opts = append(opts, gorgonia.WithValue(valueOf(n.Value)))
		}
		if len(n.Shape) == 0 {
			return gorgonia.NewScalar(dst, dt, opts...), nil
		}
		opts = append(opts, gorgonia.WithShape(n.Shape...))
		return gorgonia.NewTensor(dst, dt, len(n.Shape), opts...), nil
	case KindConstant:
		c := gorgonia.NewConstant(valueOf(n.Value), gorgonia.WithName(n.Name))
		return dst.AddNode(c), nil
	}
	if fn, ok := unaryFns[k]; ok {
		return fn(in[0])
	}
	if fn, ok := binFns[k]; ok {
		return fn(in[0], in[1])
	}
	if fn, ok := cmpFns[k]; ok {
		return fn(in[0], in[1], op.Bool("ret_same"))
	}
	if fn, ok := broadcastFns[k]; ok {
		return fn(in[0], in[1], bytesOf(op.Ints("left")), bytesOf(op.Ints("right")))
	}
	if fn, ok := broadcastCmpFns[k]; ok {
		return fn(in[0], in[1], op.Bool("ret_same"), bytesOf(op.Ints("left")), bytesOf(op.Ints("right")))
	}
	switch k {
	case KindMatMul, KindMatVec, KindVecDot, KindOuter, KindBatchedMatMul:
		return lowerLinAlg(k, op, in[0], in[1])
	case KindTensordot:
		return gorgonia.Tensordot(op.Ints("a_axes"), op.Ints("b_axes"), in[0], in[1])
	case KindSum:
		return applyAxes(gorgonia.Sum, in[0], op.Ints("axes"))
	case KindMax:
		return applyAxes(gorgonia.Max, in[0], op.Ints("axes"))
	case KindReshape:
		return gorgonia.Reshape(in[0], tensor.Shape(clone(op.Ints("shape"))))
	case KindTranspose:
		return gorgonia.Transpose(in[0], op.Ints("perm")...)
	case KindSlice:
		return lowerSlice(op, in[0])
	case KindConcat:
		return gorgonia.Concat(op.Int("axis"), in...)
	case KindAt:
		return gorgonia.At(in[0], op.Ints("coords")...)
	case KindRepeat:
		return lowerRepeat(op.Int("axis"), in[0], in[1])
	case KindSizeOf:
		return gorgonia.SizeOf(op.Int("axis"), in[0])
	case KindSoftmax:
		if op.Bool("log") {
			return gorgonia.LogSoftMax(in[0], op.Int("axis"))
		}
		return gorgonia.SoftMax(in[0], op.Int("axis"))
	case KindIm2Col:
		return gorgonia.Im2Col(in[0], tensor.Shape(clone(op.Ints("kernel"))), tensor.Shape(clone(op.Ints("pad"))),
			tensor.Shape(clone(op.Ints("stride"))), tensor.Shape(clone(op.Ints("dilation"))))
	case KindMaxPool2D, KindAvgPool2D:
		kernel := tensor.Shape(clone(op.Ints("kernel")))
		pad := op.Ints("pad") // north, south, west, east
		if len(pad) != 4 {
			return nil, fmt.Errorf("%w: pool padding needs 4 values, got %v", ErrInvalid, pad)
		}
		p := []int{pad[0], pad[2]}
		if op.Bool("explicit_pad") {
			p = clone(pad)
		}
		// Gorgonia's pools number a package-level group without a lock;
		// sessions lower their parts concurrently.
		poolMu.Lock()
		defer poolMu.Unlock()
		if k == KindMaxPool2D {
			return gorgonia.MaxPool2D(in[0], kernel, p, clone(op.Ints("stride")))
		}
		return gorgonia.AveragePool2D(in[0], kernel, p, clone(op.Ints("stride")))
	case KindGlobalAvgPool2D:
		return gorgonia.GlobalAveragePool2D(in[0])
	case KindDropout:
		d, err := gorgonia.Dropout(in[0], op.Float("probability"))
		if err == nil {
			if t, ok := d.Op().(interface{ SetTraining(bool) error }); ok {
				err = t.SetTraining(op.Bool("training"))
			}
		}
		return d, err
	case KindBatchNorm:
		return lowerBatchNorm(op, in[0])
	}
	if _, ok := customKinds[k]; ok && ext != nil {
		return ext(n, in)
	}
	return nil, &UnknownKindError{Node: n.ID, Kind: k}
}

func valueOf(t *tensor.Dense) any {
	if t.IsScalar() {
		return t.ScalarValue()
	}
	return t.Clone()
}

func bytesOf(v []int) []byte {
	if len(v) == 0 {
		return nil
	}
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func applyAxes(fn func(*gorgonia.Node, ...int) (*gorgonia.Node, error), x *gorgonia.Node, axes []int) (*gorgonia.Node, error) {
	return fn(x, clone(axes)...)
}

// opProto holds one op value of each Gorgonia type that Lower builds
// directly rather than through a constructor.
var opProto = func() map[string]gorgonia.Op {
	g := gorgonia.NewGraph()
	m := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(2, 2), gorgonia.WithName("m"))
	v := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(2), gorgonia.WithName("v"))
	s := 0
	mm := gorgonia.Must(gorgonia.Mul(m, m))
	sl := gorgonia.Must(gorgonia.Slice(v, gorgonia.S(0, 1)))
	_ = s
	gorgonia.Must(gorgonia.BroadcastAdd(m, v, nil, []byte{0}))
	protos := map[string]gorgonia.Op{"linalg": mm.Op(), "slice": sl.Op()}
	for _, n := range g.AllNodes() {
		if isOp(n, "*gorgonia.repeatOp") {
			protos["repeat"] = n.Op()
		}
	}
	return protos
}()

var linAlgCodes = map[OpKind]uint64{KindMatMul: 0, KindMatVec: 1, KindVecDot: 2, KindOuter: 3, KindBatchedMatMul: 4}

func lowerLinAlg(k OpKind, op Op, a, b *gorgonia.Node) (*gorgonia.Node, error) {
	v := structOf(opProto["linalg"])
	field(v, "āBinaryOperator").SetUint(linAlgCodes[k])
	field(v, "transA").SetBool(op.Bool("trans_a"))
	field(v, "transB").SetBool(op.Bool("trans_b"))
	return gorgonia.ApplyOp(v.Interface().(gorgonia.Op), a, b)
}

func lowerSlice(op Op, x *gorgonia.Node) (*gorgonia.Node, error) {
	p := opProto["slice"]
	v := reflect.New(reflect.TypeOf(p).Elem()) // *sliceOp
	e := v.Elem()
	if !op.Bool("all") {
		field(e, "Slice").Set(reflect.ValueOf(gorgonia.S(op.Int("start"), op.Int("end"), op.Int("step"))))
	}
	field(e, "along").SetInt(int64(op.Int("axis")))
	field(e, "d").SetInt(int64(x.Dims()))
	return gorgonia.ApplyOp(v.Interface().(gorgonia.Op), x)
}

func lowerRepeat(axis int, x, count *gorgonia.Node) (*gorgonia.Node, error) {
	p := opProto["repeat"]
	v := reflect.New(reflect.TypeOf(p).Elem()) // *repeatOp
	e := v.Elem()
	field(e, "along").SetInt(int64(axis))
	field(e, "inputShape").Set(reflect.ValueOf(x.Shape().Clone()))
	return gorgonia.ApplyOp(v.Interface().(gorgonia.Op), x, count)
}

func lowerBatchNorm(op Op, x *gorgonia.Node) (*gorgonia.Node, error) {
	mean, variance := op.Tensor("running_mean"), op.Tensor("running_var")
	if x.Dims() < 2 {
		return nil, fmt.Errorf("%w: batchnorm input needs at least 2 dims, has %v", ErrInvalid, x.Shape())
	}
	channels := x.Shape()[1]
	dt := x.Dtype()
	if mean.Dtype() != dt || variance.Dtype() != dt || mean.Shape().TotalSize() != channels || variance.Shape().TotalSize() != channels {
		return nil, fmt.Errorf("%w: batchnorm statistics must be %v of %d channels", ErrInvalid, dt, channels)
	}
	bn := &gorgonia.BatchNormOp{}
	e := reflect.ValueOf(bn).Elem()
	field(e, "momentum").SetFloat(op.Float("momentum"))
	field(e, "epsilon").SetFloat(op.Float("epsilon"))
	field(e, "dims").SetInt(int64(x.Dims()))
	field(e, "training").SetBool(op.Bool("training"))
	for _, name := range []string{"runningMean", "runningVariance", "saveMean", "saveVariance", "alpha", "beta"} {
		field(e, name).Set(reflect.ValueOf(tensor.New(tensor.Of(dt), tensor.WithShape(channels))))
	}
	mc, vc := mean.Clone().(*tensor.Dense), variance.Clone().(*tensor.Dense)
	if err := mc.Reshape(channels); err != nil {
		return nil, err
	}
	if err := vc.Reshape(channels); err != nil {
		return nil, err
	}
	if err := bn.SetStats(mc, vc); err != nil {
		return nil, err
	}
	return gorgonia.ApplyOp(bn, x)
}

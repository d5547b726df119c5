package graph

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ReadOption configures FromGorgonia.
type ReadOption func(*readConfig)

type readConfig struct {
	learnables []*gorgonia.Node
	values     bool
}

// Learnables marks input nodes as learnable parameters. Nodes that are not
// inputs of the graph being read make FromGorgonia fail.
func Learnables(nodes ...*gorgonia.Node) ReadOption {
	return func(c *readConfig) { c.learnables = append(c.learnables, nodes...) }
}

// WithValues makes the current values of the learnable parameters travel
// with the graph. Without it only their shapes do.
func WithValues() ReadOption { return func(c *readConfig) { c.values = true } }

// FromGorgonia reads every node of g into the IR. IR node ids are the
// Gorgonia node ids. Gorgonia's Broadcast* expansions (reshape, SizeOf and
// repeat nodes feeding an elementwise op) become one broadcast_* node each;
// expansion nodes that something else also uses stay as ordinary nodes.
// An op the IR does not know gives an *UnsupportedOpError.
func FromGorgonia(g *gorgonia.ExprGraph, opts ...ReadOption) (*Graph, error) {
	var cfg readConfig
	for _, o := range opts {
		o(&cfg)
	}
	all := g.AllNodes()
	gn := make(map[int64]*gorgonia.Node, len(all))
	for _, n := range all {
		gn[n.ID()] = n
	}
	learn := make(map[int64]bool, len(cfg.learnables))
	for _, l := range cfg.learnables {
		if l == nil {
			return nil, fmt.Errorf("%w: nil learnable node", ErrInvalid)
		}
		if n, ok := gn[l.ID()]; !ok || n != l {
			return nil, &NodeError{ID: l.ID(), Err: fmt.Errorf("%w: learnable %q is not in the graph", ErrInvalid, l.Name())}
		}
		if l.Op() != nil {
			return nil, &NodeError{ID: l.ID(), Err: fmt.Errorf("%w: learnable %q is not an input node", ErrInvalid, l.Name())}
		}
		learn[l.ID()] = true
	}

	order, children, err := gorgoniaOrder(g, all)
	if err != nil {
		return nil, err
	}

	r := &reader{children: children, byID: gn}
	// First pass: translate every node; broadcasts record the nodes they absorb.
	irs := make([]Node, len(order))
	absorbed := make(map[int64]bool)
	for i, n := range order {
		irn, abs, err := r.read(n, learn[n.ID()], cfg.values)
		if err != nil {
			return nil, err
		}
		irs[i] = irn
		for _, a := range abs {
			absorbed[a] = true
		}
	}
	// Second pass, from the outputs back: keep what is not absorbed, and
	// absorbed nodes that a kept node still reads.
	keep := make([]bool, len(order))
	used := make(map[int64]bool)
	for i := len(order) - 1; i >= 0; i-- {
		id := irs[i].ID
		if absorbed[id] && !used[id] {
			continue
		}
		keep[i] = true
		for _, in := range irs[i].Inputs {
			used[in] = true
		}
	}
	out := New()
	for i := range irs {
		if !keep[i] {
			continue
		}
		if err := out.Add(irs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// gorgoniaOrder returns the nodes with every node after its children, and each
// node's children in order.
func gorgoniaOrder(g *gorgonia.ExprGraph, all gorgonia.Nodes) ([]*gorgonia.Node, map[int64][]*gorgonia.Node, error) {
	children := make(map[int64][]*gorgonia.Node, len(all))
	for _, n := range all {
		it := g.From(n.ID())
		var ch []*gorgonia.Node
		for it.Next() {
			c, ok := it.Node().(*gorgonia.Node)
			if !ok {
				return nil, nil, &NodeError{ID: n.ID(), Err: fmt.Errorf("%w: child of unexpected type %T", ErrInvalid, it.Node())}
			}
			ch = append(ch, c)
		}
		children[n.ID()] = ch
	}
	state := make(map[int64]uint8, len(all)) // 1 visiting, 2 done
	order := make([]*gorgonia.Node, 0, len(all))
	type frame struct {
		n    *gorgonia.Node
		next int
	}
	for _, root := range all {
		if state[root.ID()] != 0 {
			continue
		}
		stack := []frame{{n: root}}
		state[root.ID()] = 1
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			ch := children[top.n.ID()]
			if top.next < len(ch) {
				c := ch[top.next]
				top.next++
				switch state[c.ID()] {
				case 0:
					state[c.ID()] = 1
					stack = append(stack, frame{n: c})
				case 1:
					return nil, nil, &CycleError{Nodes: []int64{top.n.ID(), c.ID()}}
				}
				continue
			}
			state[top.n.ID()] = 2
			order = append(order, top.n)
			stack = stack[:len(stack)-1]
		}
	}
	return order, children, nil
}

// dtypeOf is n.Dtype() for nodes that have one: Gorgonia panics on nodes
// without an element type, such as those Read and Let add.
func dtypeOf(n *gorgonia.Node) (dt tensor.Dtype, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return n.Dtype(), true
}

type reader struct {
	children map[int64][]*gorgonia.Node
	byID     map[int64]*gorgonia.Node
}

func irShape(s tensor.Shape) Shape {
	if len(s) == 0 {
		return nil
	}
	return Shape(append([]int{}, s...))
}

// read translates one node; it returns the ids of expansion nodes that the
// translation absorbed.
func (r *reader) read(n *gorgonia.Node, learnable, values bool) (Node, []int64, error) {
	id := n.ID()
	gdt, ok := dtypeOf(n)
	if !ok {
		return Node{}, nil, &UnsupportedOpError{Node: id, GoType: reflect.TypeOf(n.Op()).String(), Detail: "node has no element type"}
	}
	dt, err := DTypeOf(gdt)
	if err != nil {
		return Node{}, nil, &NodeError{ID: id, Err: err}
	}
	out := Node{ID: id, Shape: irShape(n.Shape()), DType: dt, Name: n.Name()}
	ch := r.children[id]
	for _, c := range ch {
		out.Inputs = append(out.Inputs, c.ID())
	}
	op := n.Op()
	if op == nil {
		out.Role, out.Op = RoleInput, Op{Kind: KindInput}
		if learnable {
			out.Role = RoleLearnable
			if values && n.Value() != nil {
				if out.Value, err = denseOf(n.Value()); err != nil {
					return Node{}, nil, &NodeError{ID: id, Err: err}
				}
			}
		}
		return out, nil, nil
	}
	out.Role = RoleOp
	var absorbed []int64
	switch t := reflect.TypeOf(op).String(); t {
	case "gorgonia.constantScalar", "gorgonia.constantTensor":
		out.Role, out.Op = RoleConstant, Op{Kind: KindConstant}
		if out.Value, err = denseOf(n.Value()); err != nil {
			return Node{}, nil, &NodeError{ID: id, Err: err}
		}
	case "gorgonia.elemBinOp":
		out.Op, err = readElemBin(op)
		if err == nil && len(ch) == 2 {
			if bop, in, abs, ok := r.broadcast(out.Op, ch[0], ch[1]); ok {
				out.Op, out.Inputs, absorbed = bop, in, abs
			}
		}
	case "gorgonia.elemUnaryOp":
		out.Op, err = readElemUnary(op)
	case "gorgonia.linAlgBinOp":
		v := structOf(op)
		kinds := [...]OpKind{KindMatMul, KindMatVec, KindVecDot, KindOuter, KindBatchedMatMul}
		which := field(v, "āBinaryOperator").Uint()
		if which >= uint64(len(kinds)) {
			return Node{}, nil, &UnsupportedOpError{Node: id, GoType: t, Detail: fmt.Sprintf("linear-algebra operator %d", which)}
		}
		var attrs []Attr
		ta, tb := field(v, "transA").Bool(), field(v, "transB").Bool()
		switch kinds[which] {
		case KindMatMul, KindBatchedMatMul:
			attrs = []Attr{BoolAttr("trans_a", ta), BoolAttr("trans_b", tb)}
		case KindMatVec:
			attrs = []Attr{BoolAttr("trans_a", ta)}
		}
		out.Op = NewOp(kinds[which], attrs...)
	case "gorgonia.tensordotOp":
		v := structOf(op)
		out.Op = NewOp(KindTensordot, IntsAttr("a_axes", reflectInts(field(v, "aAxes"))...), IntsAttr("b_axes", reflectInts(field(v, "bAxes"))...))
	case "gorgonia.sumOp":
		out.Op = NewOp(KindSum, AxesAttr("axes", reflectInts(field(structOf(op), "along"))...))
	case "*gorgonia.maxOp", "gorgonia.maxOp":
		out.Op = NewOp(KindMax, AxesAttr("axes", reflectInts(field(structOf(op), "along"))...))
	case "gorgonia.reshapeOp":
		out.Op = NewOp(KindReshape, ShapeAttr("shape", reflectInts(field(structOf(op), "to"))...))
	case "gorgonia.transposeOp":
		out.Op = NewOp(KindTranspose, AxesAttr("perm", reflectInts(field(structOf(op), "pattern"))...))
	case "*gorgonia.sliceOp", "gorgonia.sliceOp":
		v := structOf(op)
		attrs := []Attr{IntAttr("axis", int(field(v, "along").Int()))}
		if s := field(v, "Slice"); s.IsNil() {
			attrs = append(attrs, BoolAttr("all", true))
		} else {
			sl := s.Interface().(tensor.Slice)
			attrs = append(attrs, IntAttr("start", sl.Start()), IntAttr("end", sl.End()), IntAttr("step", sl.Step()))
		}
		out.Op = NewOp(KindSlice, attrs...)
	case "gorgonia.concatOp":
		out.Op = NewOp(KindConcat, IntAttr("axis", int(field(structOf(op), "axis").Int())))
	case "gorgonia.atOp":
		out.Op = NewOp(KindAt, IntsAttr("coords", reflectInts(field(structOf(op), "coordinates"))...))
	case "*gorgonia.repeatOp", "gorgonia.repeatOp":
		out.Op = NewOp(KindRepeat, IntAttr("axis", int(field(structOf(op), "along").Int())))
	case "gorgonia.sizeOp":
		out.Op = NewOp(KindSizeOf, IntAttr("axis", int(field(structOf(op), "axis").Int())))
	case "*gorgonia.softmaxOp":
		v := structOf(op)
		out.Op = NewOp(KindSoftmax, IntAttr("axis", int(field(v, "axis").Int())), BoolAttr("log", field(v, "isLog").Bool()))
	case "gorgonia.im2colOp":
		v := structOf(op)
		f := func(a, b string) []int { return []int{int(field(v, a).Int()), int(field(v, b).Int())} }
		out.Op = NewOp(KindIm2Col, ShapeAttr("kernel", f("h", "w")...), ShapeAttr("pad", f("padH", "padW")...),
			ShapeAttr("stride", f("strideH", "strideW")...), ShapeAttr("dilation", f("dilationH", "dilationW")...))
	case "*gorgonia.maxPoolOp", "*gorgonia.avgPoolOp":
		v := structOf(op)
		f := func(names ...string) []int {
			var s []int
			for _, nm := range names {
				s = append(s, int(field(v, nm).Int()))
			}
			return s
		}
		kind := KindMaxPool2D
		if t == "*gorgonia.avgPoolOp" {
			kind = KindAvgPool2D
		}
		out.Op = NewOp(kind, ShapeAttr("kernel", f("h", "w")...), ShapeAttr("pad", f("padNorth", "padSouth", "padWest", "padEast")...),
			ShapeAttr("stride", f("strideH", "strideW")...), BoolAttr("explicit_pad", field(v, "explicitPadding").Bool()))
	case "*gorgonia.globalAveragePoolOp":
		out.Op = NewOp(KindGlobalAvgPool2D)
	case "*gorgonia.dropoutOp":
		v := structOf(op)
		out.Op = NewOp(KindDropout, FloatAttr("probability", field(v, "probability").Float()), BoolAttr("training", field(v, "isTraining").Bool()))
	case "*gorgonia.BatchNormOp":
		bn := op.(*gorgonia.BatchNormOp)
		v := structOf(op)
		mean, variance := bn.Stats()
		m, err1 := denseOf(mean)
		va, err2 := denseOf(variance)
		if err1 != nil || err2 != nil {
			return Node{}, nil, &NodeError{ID: id, Err: fmt.Errorf("%w: batch-norm statistics: %v %v", ErrInvalid, err1, err2)}
		}
		out.Op = NewOp(KindBatchNorm, FloatAttr("momentum", field(v, "momentum").Float()), FloatAttr("epsilon", field(v, "epsilon").Float()),
			BoolAttr("training", field(v, "training").Bool()), TensorAttr("running_mean", m), TensorAttr("running_var", va))
	default:
		return Node{}, nil, &UnsupportedOpError{Node: id, GoType: t}
	}
	if err != nil {
		return Node{}, nil, &UnsupportedOpError{Node: id, GoType: reflect.TypeOf(op).String(), Detail: err.Error()}
	}
	return out, absorbed, nil
}

var binKinds = map[string]OpKind{
	"+": KindAdd, "-": KindSub, "⊙": KindMul, "÷": KindDiv, "^": KindPow,
	"<": KindLt, ">": KindGt, "<=": KindLte, ">=": KindGte, "==": KindEq, "!=": KindNe,
}

var broadcastOf = map[OpKind]OpKind{
	KindAdd: KindBroadcastAdd, KindSub: KindBroadcastSub, KindMul: KindBroadcastMul, KindDiv: KindBroadcastDiv, KindPow: KindBroadcastPow,
	KindLt: KindBroadcastLt, KindGt: KindBroadcastGt, KindLte: KindBroadcastLte, KindGte: KindBroadcastGte, KindEq: KindBroadcastEq, KindNe: KindBroadcastNe,
}

func isComparison(k OpKind) bool {
	switch k {
	case KindLt, KindGt, KindLte, KindGte, KindEq, KindNe:
		return true
	}
	return false
}

// readElemBin reads an elementwise binary op from its String form
// "<symbol> <retSame>", which Gorgonia v0.9.18 keeps stable.
func readElemBin(op gorgonia.Op) (Op, error) {
	s := fmt.Sprint(op)
	i := strings.LastIndexByte(s, ' ')
	if i < 0 {
		return Op{}, fmt.Errorf("unreadable binary op %q", s)
	}
	kind, ok := binKinds[s[:i]]
	if !ok {
		return Op{}, fmt.Errorf("unknown binary operator %q", s[:i])
	}
	retSame, err := strconv.ParseBool(s[i+1:])
	if err != nil {
		return Op{}, fmt.Errorf("unreadable binary op %q", s)
	}
	if isComparison(kind) {
		return NewOp(kind, BoolAttr("ret_same", retSame)), nil
	}
	return NewOp(kind), nil
}

var unaryKinds = map[string]OpKind{
	"abs": KindAbs, "sign": KindSign, "ceil": KindCeil, "floor": KindFloor, "sin": KindSin, "cos": KindCos,
	"exp": KindExp, "ln": KindLog, "log2": KindLog2, "neg": KindNeg, "square": KindSquare, "sqrt": KindSqrt,
	"inv": KindInverse, "invSqrt": KindInverseSqrt, "cube": KindCube, "tanh": KindTanh, "sigmoid": KindSigmoid,
	"log1p": KindLog1p, "expm1": KindExpm1, "softplus": KindSoftplus,
}

func readElemUnary(op gorgonia.Op) (Op, error) {
	v := structOf(op)
	if field(v, "numericResult").Bool() {
		return Op{}, fmt.Errorf("unary op with numeric result is not supported")
	}
	s := fmt.Sprint(field(v, "ʘUnaryOperator").Interface())
	kind, ok := unaryKinds[s]
	if !ok {
		return Op{}, fmt.Errorf("unknown unary operator %q", s)
	}
	return NewOp(kind), nil
}

// broadcast recognises Gorgonia's Broadcast expansion feeding an elementwise
// op: each broadcast operand is reshape(x) followed by one repeat per axis,
// whose count is SizeOf(axis) of the other operand. It returns the collapsed
// op, its inputs (the operands before expansion) and the absorbed nodes.
func (r *reader) broadcast(op Op, a, b *gorgonia.Node) (Op, []int64, []int64, bool) {
	left, ok := r.unrepeat(a)
	if !ok {
		return Op{}, nil, nil, false
	}
	right, ok := r.unrepeat(b)
	if !ok || (len(left.axes) == 0 && len(right.axes) == 0) {
		return Op{}, nil, nil, false
	}
	// Left sizes are read off the right operand before expansion; right
	// sizes off the left operand after its expansion.
	if len(left.axes) > 0 && (!left.sizesOf(right.orig) || !reshapedFor(left.reshape, left.orig, right.orig.Dims(), left.axes)) {
		return Op{}, nil, nil, false
	}
	if len(right.axes) > 0 && (!right.sizesOf(a) || !reshapedFor(right.reshape, right.orig, a.Dims(), right.axes)) {
		return Op{}, nil, nil, false
	}
	var attrs []Attr
	if len(left.axes) > 0 {
		attrs = append(attrs, AxesAttr("left", left.axes...))
	}
	if len(right.axes) > 0 {
		attrs = append(attrs, AxesAttr("right", right.axes...))
	}
	attrs = append(attrs, op.Attrs...)
	return NewOp(broadcastOf[op.Kind], attrs...), []int64{left.orig.ID(), right.orig.ID()}, append(left.nodes, right.nodes...), true
}

// expansion is one operand of a broadcast as Gorgonia expands it:
// reshape(orig), then one repeat per axis whose count is a SizeOf node.
type expansion struct {
	axes    []int            // in the order they were applied
	orig    *gorgonia.Node   // the operand before expansion
	reshape *gorgonia.Node   // nil when axes is empty
	counted []*gorgonia.Node // the node whose size each repeat's SizeOf counts
	nodes   []int64          // every node of the expansion
}

// sizesOf reports whether every repeat counts the size of node of.
func (e expansion) sizesOf(of *gorgonia.Node) bool {
	for _, c := range e.counted {
		if c != of {
			return false
		}
	}
	return true
}

// unrepeat walks a chain of repeat ops down to the reshape that starts a
// broadcast. A node that is no repeat is its own operand, with no axes.
func (r *reader) unrepeat(n *gorgonia.Node) (expansion, bool) {
	e := expansion{orig: n}
	cur := n
	for isOp(cur, "*gorgonia.repeatOp") {
		ch := r.children[cur.ID()]
		if len(ch) != 2 || !isOp(ch[1], "gorgonia.sizeOp") || len(r.children[ch[1].ID()]) != 1 {
			return expansion{}, false
		}
		along := int(field(structOf(cur.Op()), "along").Int())
		if int(field(structOf(ch[1].Op()), "axis").Int()) != along {
			return expansion{}, false
		}
		e.axes = append([]int{along}, e.axes...)
		e.counted = append(e.counted, r.children[ch[1].ID()][0])
		e.nodes = append(e.nodes, cur.ID(), ch[1].ID())
		cur = ch[0]
	}
	if len(e.axes) == 0 {
		return e, true
	}
	if !isOp(cur, "gorgonia.reshapeOp") || len(r.children[cur.ID()]) != 1 {
		return expansion{}, false
	}
	e.reshape = cur
	e.orig = r.children[cur.ID()][0]
	e.nodes = append(e.nodes, cur.ID())
	return e, true
}

// reshapedFor checks that the reshape feeding a broadcast has exactly the
// shape Gorgonia's Broadcast would give it.
func reshapedFor(reshape, orig *gorgonia.Node, dims int, axes []int) bool {
	want := broadcastShape(Shape(orig.Shape()), dims, axes)
	return Shape(irShape(reshape.Shape())).Eq(want)
}

// broadcastShape is the shape an operand of shape s is reshaped to before
// it is repeated along axes to dims dimensions (Gorgonia's
// calcBroadcastShape).
func broadcastShape(s Shape, dims int, axes []int) Shape {
	var out Shape
	if len(s) == dims {
		out = s.Clone()
	} else {
		out = make(Shape, dims)
		for _, a := range axes {
			if a >= 0 && a < dims {
				out[a] = 1
			}
		}
	}
	switch {
	case len(s) == 0:
		for i := range out {
			out[i] = 1
		}
	case len(s) == dims:
	default:
		for _, d := range s {
			for j := range out {
				if out[j] == 0 {
					out[j] = d
					break
				}
			}
		}
	}
	return out
}

func isOp(n *gorgonia.Node, typ string) bool {
	return n.Op() != nil && reflect.TypeOf(n.Op()).String() == typ
}

// structOf returns an addressable copy of an op's struct value.
func structOf(op any) reflect.Value {
	v := reflect.ValueOf(op)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	return c
}

// field returns a readable and settable view of a (possibly unexported)
// field of an addressable struct value. The op types are pinned to
// Gorgonia v0.9.18, and tests build every one of them.
func field(v reflect.Value, name string) reflect.Value {
	f := v.FieldByName(name)
	if !f.IsValid() {
		panic(fmt.Sprintf("graph: gorgonia op %v has no field %q", v.Type(), name))
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

func reflectInts(v reflect.Value) []int {
	out := make([]int, v.Len())
	for i := range out {
		out[i] = int(v.Index(i).Int())
	}
	return out
}

// denseOf copies a Gorgonia value (scalar or tensor) into a new dense tensor.
func denseOf(v gorgonia.Value) (*tensor.Dense, error) {
	switch x := v.(type) {
	case nil:
		return nil, fmt.Errorf("%w: no value", ErrInvalid)
	case *tensor.Dense:
		if _, err := DTypeOf(x.Dtype()); err != nil {
			return nil, err
		}
		return x.Clone().(*tensor.Dense), nil
	case tensor.Tensor:
		return nil, fmt.Errorf("%w: value of type %T is not a dense tensor", ErrInvalid, v)
	}
	if _, err := DTypeOf(v.Dtype()); err != nil {
		return nil, err
	}
	switch d := v.Data().(type) {
	case float64, float32, int, bool:
		return tensor.New(tensor.FromScalar(d)), nil
	}
	return nil, fmt.Errorf("%w: scalar value of type %T", ErrInvalid, v.Data())
}

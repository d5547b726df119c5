package graph

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The tests in this file build each op in Gorgonia v0.9.18 and compare the
// node's Shape() and Dtype() with what infer computes for the same op in
// the IR, for float64 and float32 operands.

// gBuilder builds the Gorgonia equivalent of an IR op over input nodes.
type gBuilder func(g *G.ExprGraph, in []*G.Node) (*G.Node, error)

// shapeCase is one op applied to inputs of the given shapes.
type shapeCase struct {
	name  string
	op    Op
	in    []Shape
	build gBuilder
}

var shapeTestDTypes = []DType{Float64, Float32}

func shp(d ...int) Shape { return Shape(d) }

func shapes(s ...Shape) []Shape { return s }

// gInputs makes one Gorgonia input per shape.
func gInputs(g *G.ExprGraph, dt DType, in []Shape) []*G.Node {
	tdt, err := dt.Tensor()
	if err != nil {
		panic(err)
	}
	nodes := make([]*G.Node, len(in))
	for i, s := range in {
		name := fmt.Sprintf("in%d", i)
		if len(s) == 0 {
			nodes[i] = G.NewScalar(g, tdt, G.WithName(name))
		} else {
			nodes[i] = G.NewTensor(g, tdt, len(s), G.WithShape([]int(s)...), G.WithName(name))
		}
	}
	return nodes
}

// irInputs makes one IR input node per shape.
func irInputs(dt DType, in []Shape) []*Node {
	nodes := make([]*Node, len(in))
	for i, s := range in {
		nodes[i] = &Node{ID: int64(i + 1), Role: RoleInput, Op: Op{Kind: KindInput}, Shape: s, DType: dt}
	}
	return nodes
}

// gorgoniaBuild runs a builder, turning Gorgonia's panics into errors.
func gorgoniaBuild(b gBuilder, dt DType, in []Shape) (n *G.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	g := G.NewGraph()
	return b(g, gInputs(g, dt, in))
}

// compareWithGorgonia checks infer against Gorgonia for one case.
func compareWithGorgonia(t *testing.T, c shapeCase) {
	t.Helper()
	for _, dt := range shapeTestDTypes {
		gn, gerr := gorgoniaBuild(c.build, dt, c.in)
		got, gotDT, err := infer(c.op, irInputs(dt, c.in))
		if gerr != nil {
			if err == nil {
				t.Errorf("%s %v: infer got %v %v, want an error (Gorgonia: %v)", c.name, dt, got, gotDT, gerr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %v: infer got error %v, want %v (Gorgonia's shape)", c.name, dt, err, gn.Shape())
			continue
		}
		want := Shape(gn.Shape())
		if !got.Eq(want) {
			t.Errorf("%s %v: infer got shape %v, want %v", c.name, dt, got, want)
		}
		wantDT, err := DTypeOf(gn.Dtype())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if gotDT != wantDT {
			t.Errorf("%s %v: infer got dtype %v, want %v", c.name, dt, gotDT, wantDT)
		}
	}
}

func runShapeCases(t *testing.T, cases []shapeCase) {
	t.Helper()
	for _, c := range cases {
		compareWithGorgonia(t, c)
	}
}

// setOpFields returns a copy of a Gorgonia op value with unexported fields
// set, for the op variants no exported constructor builds.
func setOpFields(proto G.Op, fields map[string]any) G.Op {
	v := reflect.ValueOf(proto)
	isPtr := v.Kind() == reflect.Pointer
	if isPtr {
		v = v.Elem()
	}
	cp := reflect.New(v.Type()).Elem()
	cp.Set(v)
	for name, val := range fields {
		f := cp.FieldByName(name)
		if !f.IsValid() {
			panic("no field " + name)
		}
		f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
		f.Set(reflect.ValueOf(val).Convert(f.Type()))
	}
	if isPtr {
		return cp.Addr().Interface().(G.Op)
	}
	return cp.Interface().(G.Op)
}

// linAlgProto is a Gorgonia linAlgBinOp value.
var linAlgProto = func() G.Op {
	g := G.NewGraph()
	m := G.NewMatrix(g, tensor.Float64, G.WithShape(2, 2), G.WithName("m"))
	return G.Must(G.Mul(m, m)).Op()
}()

// linAlg builds Gorgonia's linear-algebra op number which (0 matmul,
// 1 matvec, 2 vecdot, 3 outer, 4 batched) with the transpose flags.
func linAlg(which uint8, transA, transB bool) gBuilder {
	return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		op := setOpFields(linAlgProto, map[string]any{"āBinaryOperator": which, "transA": transA, "transB": transB})
		return G.ApplyOp(op, in[0], in[1])
	}
}

var gUnaryFns = map[OpKind]func(*G.Node) (*G.Node, error){
	KindAbs: G.Abs, KindSign: G.Sign, KindCeil: G.Ceil, KindFloor: G.Floor, KindSin: G.Sin, KindCos: G.Cos,
	KindExp: G.Exp, KindLog: G.Log, KindLog2: G.Log2, KindNeg: G.Neg, KindSquare: G.Square, KindSqrt: G.Sqrt,
	KindInverse: G.Inverse, KindInverseSqrt: G.InverseSqrt, KindCube: G.Cube, KindTanh: G.Tanh,
	KindSigmoid: G.Sigmoid, KindLog1p: G.Log1p, KindExpm1: G.Expm1, KindSoftplus: G.Softplus,
}

var gArithFns = map[OpKind]func(a, b *G.Node) (*G.Node, error){
	KindAdd: G.Add, KindSub: G.Sub, KindMul: G.HadamardProd, KindDiv: G.HadamardDiv, KindPow: G.Pow,
}

var gCmpFns = map[OpKind]func(a, b *G.Node, retSame bool) (*G.Node, error){
	KindLt: G.Lt, KindGt: G.Gt, KindLte: G.Lte, KindGte: G.Gte, KindEq: G.Eq, KindNe: G.Ne,
}

var gBroadcastFns = map[OpKind]func(a, b *G.Node, left, right []byte) (*G.Node, error){
	KindBroadcastAdd: G.BroadcastAdd, KindBroadcastSub: G.BroadcastSub, KindBroadcastMul: G.BroadcastHadamardProd,
	KindBroadcastDiv: G.BroadcastHadamardDiv, KindBroadcastPow: G.BroadcastPow,
}

var gBroadcastCmpFns = map[OpKind]func(a, b *G.Node, retSame bool, left, right []byte) (*G.Node, error){
	KindBroadcastLt: G.BroadcastLt, KindBroadcastGt: G.BroadcastGt, KindBroadcastLte: G.BroadcastLte,
	KindBroadcastGte: G.BroadcastGte, KindBroadcastEq: G.BroadcastEq, KindBroadcastNe: G.BroadcastNe,
}

func TestInferUnaryMatchesGorgonia(t *testing.T) {
	ins := []Shape{nil, shp(3), shp(1), shp(2, 3), shp(1, 1), shp(3, 1), shp(2, 3, 4, 5)}
	if len(gUnaryFns) != len(UnaryKinds()) {
		t.Fatalf("got %d unary builders, want %d", len(gUnaryFns), len(UnaryKinds()))
	}
	var cases []shapeCase
	for _, k := range UnaryKinds() {
		fn := gUnaryFns[k]
		for _, s := range ins {
			cases = append(cases, shapeCase{
				name: fmt.Sprintf("%s%v", k, s), op: NewOp(k), in: shapes(s),
				build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return fn(in[0]) },
			})
		}
	}
	runShapeCases(t, cases)
}

// binaryShapePairs covers equal shapes, scalars on either side, all-ones
// shapes of several ranks, vectors against row and column vectors, and
// mismatches.
var binaryShapePairs = [][2]Shape{
	{shp(2, 3), shp(2, 3)},
	{shp(2, 3, 4), shp(2, 3, 4)},
	{shp(4), shp(4)},
	{nil, shp(2, 3)},
	{shp(2, 3), nil},
	{nil, nil},
	{shp(1), nil},
	{nil, shp(1, 1)},
	{shp(1, 1), nil},
	{shp(1), shp(1, 1)},
	{shp(1, 1), shp(1)},
	{shp(1, 1), shp(1, 1, 1)},
	{shp(1, 1, 1), shp(1, 1)},
	{shp(3), shp(1, 3)},
	{shp(1, 3), shp(3)},
	{shp(3, 1), shp(3)},
	{shp(3), shp(3, 1)},
	{shp(3, 1), shp(1, 3)},
	{shp(1), shp(3)},
	{shp(2, 3), shp(3, 2)},
	{shp(2, 3), shp(2, 3, 1)},
}

func TestInferBinaryMatchesGorgonia(t *testing.T) {
	var cases []shapeCase
	for _, p := range binaryShapePairs {
		for k, fn := range gArithFns {
			cases = append(cases, shapeCase{
				name: fmt.Sprintf("%s%v%v", k, p[0], p[1]), op: NewOp(k), in: shapes(p[0], p[1]),
				build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return fn(in[0], in[1]) },
			})
		}
		for k, fn := range gCmpFns {
			for _, same := range []bool{false, true} {
				cases = append(cases, shapeCase{
					name: fmt.Sprintf("%s(ret_same=%v)%v%v", k, same, p[0], p[1]), op: NewOp(k, BoolAttr("ret_same", same)), in: shapes(p[0], p[1]),
					build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return fn(in[0], in[1], same) },
				})
			}
		}
	}
	runShapeCases(t, cases)
}

func TestInferBroadcastMatchesGorgonia(t *testing.T) {
	type bc struct {
		a, b        Shape
		left, right []int
	}
	bcs := []bc{
		{shp(3, 4), shp(4), nil, []int{0}},
		{shp(64, 256), shp(256), nil, []int{0}},
		{shp(3, 4), shp(3), nil, []int{1}},
		{shp(4), shp(3, 4), []int{0}, nil},
		{shp(3), shp(3, 4), []int{1}, nil},
		{nil, shp(3, 4), []int{0, 1}, nil},
		{shp(3, 4), nil, nil, []int{0, 1}},
		{shp(3, 1), shp(1, 4), []int{1}, []int{0}},
		{shp(2, 3, 4), shp(3, 4), nil, []int{0}},
		{shp(2, 3, 4), shp(2, 4), nil, []int{1}},
		{shp(2, 3, 4), shp(4), nil, []int{0, 1}},
		{shp(2, 3, 4, 5), shp(5), nil, []int{0, 1, 2}},
		{shp(2, 3, 4, 5), shp(3), nil, []int{0, 2, 3}},
		{shp(2, 1, 4), shp(2, 3, 4), []int{1}, nil},
		{shp(3, 4), shp(3, 4), nil, nil},
		{shp(3, 4), shp(5), nil, []int{0}},       // expands to (3,5): mismatch
		{shp(3, 4), shp(4), nil, []int{2}},       // no axis 2 on the left
		{shp(3, 4), shp(4), []int{0}, nil},       // cannot reshape (3,4) to rank 1
		{shp(3, 4), shp(2, 4), nil, []int{0}},    // (6,4) against (3,4)
		{shp(3, 1), shp(3, 1, 5), []int{2}, nil}, // (3,1) cannot take rank 3 with only one free slot filled
	}
	var cases []shapeCase
	for _, c := range bcs {
		var attrs []Attr
		if c.left != nil {
			attrs = append(attrs, AxesAttr("left", c.left...))
		}
		if c.right != nil {
			attrs = append(attrs, AxesAttr("right", c.right...))
		}
		left, right := bytesOfAxes(c.left), bytesOfAxes(c.right)
		for k, fn := range gBroadcastFns {
			cases = append(cases, shapeCase{
				name: fmt.Sprintf("%s%v%v l%v r%v", k, c.a, c.b, c.left, c.right), op: NewOp(k, attrs...), in: shapes(c.a, c.b),
				build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return fn(in[0], in[1], left, right) },
			})
		}
		for k, fn := range gBroadcastCmpFns {
			for _, same := range []bool{false, true} {
				cases = append(cases, shapeCase{
					name: fmt.Sprintf("%s(ret_same=%v)%v%v l%v r%v", k, same, c.a, c.b, c.left, c.right),
					op:   NewOp(k, append([]Attr{BoolAttr("ret_same", same)}, attrs...)...), in: shapes(c.a, c.b),
					build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
						return fn(in[0], in[1], same, left, right)
					},
				})
			}
		}
	}
	runShapeCases(t, cases)
}

func bytesOfAxes(axes []int) []byte {
	var b []byte
	for _, a := range axes {
		b = append(b, byte(a))
	}
	return b
}

func TestInferLinAlgMatchesGorgonia(t *testing.T) {
	mul := func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Mul(in[0], in[1]) }
	outer := func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.OuterProd(in[0], in[1]) }
	batched := func(ta, tb bool) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.BatchedMatMul(in[0], in[1], ta, tb) }
	}
	tensordot := func(a, b []int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Tensordot(a, b, in[0], in[1]) }
	}
	mm := func(ta, tb bool) Op { return NewOp(KindMatMul, BoolAttr("trans_a", ta), BoolAttr("trans_b", tb)) }
	mv := func(ta bool) Op { return NewOp(KindMatVec, BoolAttr("trans_a", ta)) }
	bmm := func(ta, tb bool) Op {
		return NewOp(KindBatchedMatMul, BoolAttr("trans_a", ta), BoolAttr("trans_b", tb))
	}
	td := func(a, b []int) Op { return NewOp(KindTensordot, IntsAttr("a_axes", a...), IntsAttr("b_axes", b...)) }
	runShapeCases(t, []shapeCase{
		{"matmul", mm(false, false), shapes(shp(2, 3), shp(3, 4)), mul},
		{"matmul 784", mm(false, false), shapes(shp(64, 784), shp(784, 256)), mul},
		{"matmul to 1x1", mm(false, false), shapes(shp(1, 3), shp(3, 1)), mul},
		{"matmul outer-like", mm(false, false), shapes(shp(5, 1), shp(1, 5)), mul},
		{"matmul mismatch", mm(false, false), shapes(shp(2, 3), shp(4, 5)), mul},
		{"matmul op", mm(false, false), shapes(shp(2, 3), shp(3, 4)), linAlg(0, false, false)},
		{"matmul trans_a", mm(true, false), shapes(shp(3, 2), shp(3, 4)), linAlg(0, true, false)},
		{"matmul trans_b", mm(false, true), shapes(shp(2, 3), shp(4, 3)), linAlg(0, false, true)},
		{"matmul trans_a trans_b", mm(true, true), shapes(shp(3, 2), shp(4, 3)), linAlg(0, true, true)},
		{"matmul trans_a mismatch", mm(true, false), shapes(shp(2, 3), shp(3, 4)), linAlg(0, true, false)},
		{"matvec", mv(false), shapes(shp(3, 4), shp(4)), mul},
		{"matvec square", mv(false), shapes(shp(4, 4), shp(4)), mul},
		{"matvec op", mv(false), shapes(shp(3, 4), shp(4)), linAlg(1, false, false)},
		{"matvec trans_a", mv(true), shapes(shp(4, 3), shp(4)), linAlg(1, true, false)},
		{"matvec mismatch", mv(false), shapes(shp(3, 4), shp(5)), mul},
		{"vecdot", NewOp(KindVecDot), shapes(shp(3), shp(3)), mul},
		{"outer", NewOp(KindOuter), shapes(shp(3), shp(4)), outer},
		{"outer ones", NewOp(KindOuter), shapes(shp(1), shp(5)), outer},
		{"batched", bmm(false, false), shapes(shp(2, 3, 4), shp(2, 4, 5)), batched(false, false)},
		{"batched trans_a", bmm(true, false), shapes(shp(2, 4, 3), shp(2, 4, 5)), batched(true, false)},
		{"batched trans_b", bmm(false, true), shapes(shp(2, 3, 4), shp(2, 5, 4)), batched(false, true)},
		{"batched both", bmm(true, true), shapes(shp(2, 4, 3), shp(2, 5, 4)), batched(true, true)},
		{"batched rank 4", bmm(false, false), shapes(shp(2, 2, 3, 4), shp(2, 2, 4, 5)), batched(false, false)},
		{"batched batch mismatch", bmm(false, false), shapes(shp(2, 3, 4), shp(3, 4, 5)), batched(false, false)},
		{"tensordot one axis", td([]int{2}, []int{0}), shapes(shp(2, 3, 4), shp(4, 5)), tensordot([]int{2}, []int{0})},
		{"tensordot first axes", td([]int{0}, []int{1}), shapes(shp(3, 4), shp(5, 3)), tensordot([]int{0}, []int{1})},
		{"tensordot full", td([]int{0, 1}, []int{1, 0}), shapes(shp(2, 3), shp(3, 2)), tensordot([]int{0, 1}, []int{1, 0})},
		{"tensordot two axes", td([]int{1, 2}, []int{0, 1}), shapes(shp(2, 3, 4), shp(3, 4, 5)), tensordot([]int{1, 2}, []int{0, 1})},
		{"tensordot vectors", td([]int{0}, []int{0}), shapes(shp(3), shp(3)), tensordot([]int{0}, []int{0})},
		{"tensordot size mismatch", td([]int{1}, []int{0}), shapes(shp(2, 3), shp(4, 5)), tensordot([]int{1}, []int{0})},
		{"tensordot axis out of range", td([]int{2}, []int{0}), shapes(shp(2, 3), shp(3, 5)), tensordot([]int{2}, []int{0})},
		{"tensordot duplicate axes", td([]int{0, 0}, []int{0, 1}), shapes(shp(3, 3), shp(3, 3)), tensordot([]int{0, 0}, []int{0, 1})},
		{"tensordot axis count mismatch", td([]int{0}, []int{0, 1}), shapes(shp(3, 3), shp(3, 3)), tensordot([]int{0}, []int{0, 1})},
	})
}

func TestInferReductionsMatchGorgonia(t *testing.T) {
	type rc struct {
		in   Shape
		axes []int
	}
	rcs := []rc{
		{shp(2, 3, 4), []int{0}}, {shp(2, 3, 4), []int{1}}, {shp(2, 3, 4), []int{2}},
		{shp(2, 3, 4), []int{0, 2}}, {shp(2, 3, 4), []int{2, 0}}, {shp(2, 3, 4), []int{0, 1, 2}}, {shp(2, 3, 4), nil},
		{shp(5), []int{0}}, {shp(5), nil}, {shp(3, 4), []int{1, 0}}, {shp(3, 4), []int{1}}, {shp(1, 4), []int{0}},
		{shp(3, 4), []int{2}}, {shp(3, 4), []int{-1}},
	}
	var cases []shapeCase
	for _, c := range rcs {
		for k, fn := range map[OpKind]func(*G.Node, ...int) (*G.Node, error){KindSum: G.Sum, KindMax: G.Max} {
			cases = append(cases, shapeCase{
				name: fmt.Sprintf("%s%v axes %v", k, c.in, c.axes), op: NewOp(k, AxesAttr("axes", c.axes...)), in: shapes(c.in),
				build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return fn(in[0], c.axes...) },
			})
		}
	}
	runShapeCases(t, cases)
}

func TestInferShapeOpsMatchGorgonia(t *testing.T) {
	reshape := func(to ...int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Reshape(in[0], tensor.Shape(to).Clone()) }
	}
	transpose := func(perm ...int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Transpose(in[0], perm...) }
	}
	concat := func(axis int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Concat(axis, in...) }
	}
	at := func(coords ...int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.At(in[0], coords...) }
	}
	sizeOf := func(axis int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.SizeOf(axis, in[0]) }
	}
	rs := func(to ...int) Op { return NewOp(KindReshape, ShapeAttr("shape", to...)) }
	tr := func(perm ...int) Op { return NewOp(KindTranspose, AxesAttr("perm", perm...)) }
	cc := func(axis int) Op { return NewOp(KindConcat, IntAttr("axis", axis)) }
	atOp := func(coords ...int) Op { return NewOp(KindAt, IntsAttr("coords", coords...)) }
	so := func(axis int) Op { return NewOp(KindSizeOf, IntAttr("axis", axis)) }
	runShapeCases(t, []shapeCase{
		{"reshape 2x3 to 3x2", rs(3, 2), shapes(shp(2, 3)), reshape(3, 2)},
		{"reshape flat", rs(6), shapes(shp(2, 3)), reshape(6)},
		{"reshape row", rs(1, 6), shapes(shp(2, 3)), reshape(1, 6)},
		{"reshape rank 3", rs(2, 3, 1), shapes(shp(2, 3)), reshape(2, 3, 1)},
		{"reshape vector", rs(2, 3), shapes(shp(6)), reshape(2, 3)},
		{"reshape to scalar", rs(), shapes(shp(1)), reshape()},
		{"reshape 1x1 to scalar", rs(), shapes(shp(1, 1)), reshape()},
		{"reshape scalar to 1", rs(1), shapes(nil), reshape(1)},
		{"reshape conv", rs(64, 32, 24, 24), shapes(shp(64, 24, 24, 32)), reshape(64, 32, 24, 24)},
		{"reshape size mismatch", rs(4), shapes(shp(2, 3)), reshape(4)},
		{"transpose matrix", tr(1, 0), shapes(shp(2, 3)), transpose(1, 0)},
		{"transpose default", tr(), shapes(shp(2, 3, 4)), transpose()},
		{"transpose 201", tr(2, 0, 1), shapes(shp(2, 3, 4)), transpose(2, 0, 1)},
		{"transpose 120", tr(1, 2, 0), shapes(shp(2, 3, 4)), transpose(1, 2, 0)},
		{"transpose 021", tr(0, 2, 1), shapes(shp(2, 3, 4)), transpose(0, 2, 1)},
		{"transpose nchw", tr(0, 3, 1, 2), shapes(shp(8, 24, 24, 32)), transpose(0, 3, 1, 2)},
		{"transpose identity", tr(0, 1), shapes(shp(2, 3)), transpose(0, 1)},
		{"transpose repeated axis", tr(0, 0), shapes(shp(2, 3)), transpose(0, 0)},
		{"transpose too many axes", tr(0, 1, 2), shapes(shp(2, 3)), transpose(0, 1, 2)},
		{"transpose axis out of range", tr(0, 2), shapes(shp(2, 3)), transpose(0, 2)},
		{"concat rows", cc(0), shapes(shp(2, 3), shp(4, 3)), concat(0)},
		{"concat columns", cc(1), shapes(shp(2, 3), shp(2, 5), shp(2, 1)), concat(1)},
		{"concat one", cc(0), shapes(shp(2, 3)), concat(0)},
		{"concat vectors", cc(0), shapes(shp(2), shp(3)), concat(0)},
		{"concat rank 3", cc(2), shapes(shp(2, 3, 1), shp(2, 3, 4)), concat(2)},
		{"concat mismatch", cc(0), shapes(shp(2, 3), shp(3, 4)), concat(0)},
		{"concat rank mismatch", cc(0), shapes(shp(2, 3), shp(3)), concat(0)},
		{"concat axis out of range", cc(2), shapes(shp(2, 3), shp(2, 3)), concat(2)},
		{"concat scalars", cc(0), shapes(nil, nil), concat(0)},
		{"at matrix", atOp(1, 2), shapes(shp(2, 3)), at(1, 2)},
		{"at vector", atOp(3), shapes(shp(4)), at(3)},
		{"at scalar", atOp(0), shapes(nil), at(0)},
		{"at scalar nonzero", atOp(1), shapes(nil), at(1)},
		{"size_of 0", so(0), shapes(shp(2, 3)), sizeOf(0)},
		{"size_of 1", so(1), shapes(shp(2, 3)), sizeOf(1)},
		{"size_of vector", so(0), shapes(shp(5)), sizeOf(0)},
		{"size_of axis out of range", so(2), shapes(shp(2, 3)), sizeOf(2)},
		{"size_of scalar", so(0), shapes(nil), sizeOf(0)},
	})
}

func TestInferSliceMatchesGorgonia(t *testing.T) {
	type sc struct {
		in                     Shape
		axis, start, end, step int
	}
	scs := []sc{
		{shp(5, 4), 0, 0, 5, 2},    // floor(5/2) = 2
		{shp(5, 4), 0, 0, 5, 1},    // whole axis
		{shp(5, 4), 0, 1, 2, 0},    // single index, as gorgonia.S(1) writes it
		{shp(5, 4), 0, 1, 2, 1},    // single index with step 1
		{shp(5, 4), 1, 3, 4, 0},    // single index on the last axis
		{shp(5, 4), 0, 1, 3, 1},    // range
		{shp(5, 4), 1, 1, 3, 1},    // range on axis 1
		{shp(5, 4), 0, 2, 3, 5},    // one element, step larger than the range
		{shp(5, 4), 0, 3, 6, 1},    // end clamped to the size
		{shp(5, 4), 0, 0, 3, 2},    // one element from a longer range: Gorgonia panics
		{shp(5, 4), 1, 3, 6, 1},    // clamped to one element: Gorgonia panics
		{shp(5, 4), 0, 0, 4, 3},    // floor(4/3) = 1: Gorgonia panics
		{shp(5, 4), 1, 4, 5, 0},    // start past the end
		{shp(5, 4), 0, 1, 4, 0},    // step 0 over a range
		{shp(5, 4), 0, 3, 1, 1},    // start after end
		{shp(5), 0, 2, 3, 0},       // a vector to a scalar
		{shp(5), 0, 1, 5, 2},       // (5) to (2)
		{shp(2, 3, 4), 2, 1, 3, 1}, // last axis of a rank-3 tensor
		{shp(2, 3, 4), 1, 0, 1, 0}, // middle axis removed
		{shp(64, 10), 0, 0, 32, 1}, // a micro-batch
	}
	var cases []shapeCase
	for _, c := range scs {
		cases = append(cases, shapeCase{
			name: fmt.Sprintf("slice%v axis %d %d:%d:%d", c.in, c.axis, c.start, c.end, c.step),
			op:   NewOp(KindSlice, IntAttr("axis", c.axis), IntAttr("start", c.start), IntAttr("end", c.end), IntAttr("step", c.step)),
			in:   shapes(c.in),
			build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
				sl := make([]tensor.Slice, c.axis+1)
				sl[c.axis] = G.S(c.start, c.end, c.step)
				return G.Slice(in[0], sl...)
			},
		})
	}
	for _, s := range []Shape{shp(5, 4), shp(3)} {
		cases = append(cases, shapeCase{
			name: fmt.Sprintf("slice%v all", s), op: NewOp(KindSlice, IntAttr("axis", 0), BoolAttr("all", true)), in: shapes(s),
			build: func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Slice(in[0], nil) },
		})
	}
	runShapeCases(t, cases)
}

func TestInferNNMatchesGorgonia(t *testing.T) {
	softmax := func(log bool, axes ...int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
			if log {
				return G.LogSoftMax(in[0], axes...)
			}
			return G.SoftMax(in[0], axes...)
		}
	}
	sm := func(log bool, axis int) Op { return NewOp(KindSoftmax, IntAttr("axis", axis), BoolAttr("log", log)) }
	im2col := func(k, p, s, d []int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
			return G.Im2Col(in[0], tensor.Shape(k), tensor.Shape(p), tensor.Shape(s), tensor.Shape(d))
		}
	}
	ic := func(k, p, s, d []int) Op {
		return NewOp(KindIm2Col, ShapeAttr("kernel", k...), ShapeAttr("pad", p...), ShapeAttr("stride", s...), ShapeAttr("dilation", d...))
	}
	pool := func(avg bool, k, p, s []int) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
			if avg {
				return G.AveragePool2D(in[0], tensor.Shape(k), p, s)
			}
			return G.MaxPool2D(in[0], tensor.Shape(k), p, s)
		}
	}
	pl := func(avg bool, k, p, s []int) Op {
		kind := KindMaxPool2D
		if avg {
			kind = KindAvgPool2D
		}
		return NewOp(kind, ShapeAttr("kernel", k...), ShapeAttr("pad", p...), ShapeAttr("stride", s...), BoolAttr("explicit_pad", true))
	}
	global := func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.GlobalAveragePool2D(in[0]) }
	dropout := func(p float64) gBuilder {
		return func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Dropout(in[0], p) }
	}
	do := func(p float64) Op {
		return NewOp(KindDropout, FloatAttr("probability", p), BoolAttr("training", true))
	}
	ints := func(v ...int) []int { return v }
	cases := []shapeCase{
		{"softmax last", sm(false, -1), shapes(shp(2, 3)), softmax(false)},
		{"softmax axis 0", sm(false, 0), shapes(shp(2, 3)), softmax(false, 0)},
		{"softmax axis 1", sm(false, 1), shapes(shp(2, 3)), softmax(false, 1)},
		{"softmax vector", sm(false, -1), shapes(shp(5)), softmax(false)},
		{"softmax rank 3", sm(false, 1), shapes(shp(2, 3, 4)), softmax(false, 1)},
		{"log softmax", sm(true, -1), shapes(shp(64, 10)), softmax(true)},
		{"log softmax axis 0", sm(true, 0), shapes(shp(64, 10)), softmax(true, 0)},
		{"im2col same", ic(ints(3, 3), ints(1, 1), ints(1, 1), ints(1, 1)), shapes(shp(1, 3, 5, 5)), im2col(ints(3, 3), ints(1, 1), ints(1, 1), ints(1, 1))},
		{"im2col mnist", ic(ints(5, 5), ints(0, 0), ints(1, 1), ints(1, 1)), shapes(shp(2, 1, 28, 28)), im2col(ints(5, 5), ints(0, 0), ints(1, 1), ints(1, 1))},
		{"im2col stride 2", ic(ints(3, 3), ints(0, 0), ints(2, 2), ints(1, 1)), shapes(shp(1, 2, 7, 7)), im2col(ints(3, 3), ints(0, 0), ints(2, 2), ints(1, 1))},
		{"im2col dilation 2", ic(ints(3, 3), ints(0, 0), ints(1, 1), ints(2, 2)), shapes(shp(1, 1, 7, 7)), im2col(ints(3, 3), ints(0, 0), ints(1, 1), ints(2, 2))},
		{"im2col asymmetric", ic(ints(2, 3), ints(1, 0), ints(1, 2), ints(1, 1)), shapes(shp(3, 2, 6, 9)), im2col(ints(2, 3), ints(1, 0), ints(1, 2), ints(1, 1))},
		{"im2col kernel equals input", ic(ints(4, 4), ints(0, 0), ints(1, 1), ints(1, 1)), shapes(shp(1, 1, 4, 4)), im2col(ints(4, 4), ints(0, 0), ints(1, 1), ints(1, 1))},
		{"im2col zero stride", ic(ints(3, 3), ints(0, 0), ints(0, 1), ints(1, 1)), shapes(shp(1, 1, 5, 5)), im2col(ints(3, 3), ints(0, 0), ints(0, 1), ints(1, 1))},
		{"im2col negative pad", ic(ints(3, 3), ints(-1, 0), ints(1, 1), ints(1, 1)), shapes(shp(1, 1, 5, 5)), im2col(ints(3, 3), ints(-1, 0), ints(1, 1), ints(1, 1))},
		{"im2col zero kernel", ic(ints(0, 3), ints(0, 0), ints(1, 1), ints(1, 1)), shapes(shp(1, 1, 5, 5)), im2col(ints(0, 3), ints(0, 0), ints(1, 1), ints(1, 1))},
		{"global avgpool", NewOp(KindGlobalAvgPool2D), shapes(shp(2, 3, 4, 5)), global},
		{"global avgpool rank 3", NewOp(KindGlobalAvgPool2D), shapes(shp(2, 3, 4)), global},
		{"dropout", do(0.5), shapes(shp(2, 3)), dropout(0.5)},
		{"dropout vector", do(0), shapes(shp(4)), dropout(0)},
	}
	for _, avg := range []bool{false, true} {
		cases = append(cases,
			shapeCase{"pool 2x2", pl(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 2)), shapes(shp(1, 1, 4, 4)), pool(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 2))},
			shapeCase{"pool same", pl(avg, ints(3, 3), ints(1, 1, 1, 1), ints(1, 1)), shapes(shp(2, 3, 5, 5)), pool(avg, ints(3, 3), ints(1, 1, 1, 1), ints(1, 1))},
			shapeCase{"pool asymmetric pad", pl(avg, ints(2, 2), ints(0, 1, 1, 0), ints(2, 2)), shapes(shp(1, 1, 5, 6)), pool(avg, ints(2, 2), ints(0, 1, 1, 0), ints(2, 2))},
			shapeCase{"pool uneven", pl(avg, ints(3, 2), ints(0, 0, 0, 0), ints(2, 3)), shapes(shp(4, 8, 11, 13)), pool(avg, ints(3, 2), ints(0, 0, 0, 0), ints(2, 3))},
			shapeCase{"pool cnn", pl(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 2)), shapes(shp(64, 32, 24, 24)), pool(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 2))},
			shapeCase{"pool kernel too big", pl(avg, ints(6, 2), ints(0, 0, 0, 0), ints(1, 1)), shapes(shp(1, 1, 5, 5)), pool(avg, ints(6, 2), ints(0, 0, 0, 0), ints(1, 1))},
			shapeCase{"pool kernel fits padding", pl(avg, ints(6, 2), ints(1, 0, 0, 0), ints(1, 1)), shapes(shp(1, 1, 5, 5)), pool(avg, ints(6, 2), ints(1, 0, 0, 0), ints(1, 1))},
			shapeCase{"pool zero stride", pl(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 0)), shapes(shp(1, 1, 4, 4)), pool(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 0))},
			shapeCase{"pool negative pad", pl(avg, ints(2, 2), ints(0, -1, 0, 0), ints(2, 2)), shapes(shp(1, 1, 4, 4)), pool(avg, ints(2, 2), ints(0, -1, 0, 0), ints(2, 2))},
			shapeCase{"pool rank 3", pl(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 2)), shapes(shp(1, 4, 4)), pool(avg, ints(2, 2), ints(0, 0, 0, 0), ints(2, 2))},
		)
	}
	runShapeCases(t, cases)
}

func TestInferBatchNormMatchesGorgonia(t *testing.T) {
	for _, s := range []Shape{shp(2, 3), shp(2, 3, 4, 4), shp(8, 16, 5, 5)} {
		for _, dt := range shapeTestDTypes {
			tdt, _ := dt.Tensor()
			g := G.NewGraph()
			x := gInputs(g, dt, shapes(s))[0]
			_, _, _, bn, err := G.BatchNorm(x, nil, nil, 0.9, 1e-5)
			if err != nil {
				t.Fatalf("BatchNorm%v: %v", s, err)
			}
			var gn *G.Node
			for _, n := range g.AllNodes() {
				if n.Op() == G.Op(bn) {
					gn = n
				}
			}
			if gn == nil {
				t.Fatalf("BatchNorm%v: no batch-norm node", s)
			}
			stats := func() *tensor.Dense { return tensor.New(tensor.Of(tdt), tensor.WithShape(s[1])) }
			op := NewOp(KindBatchNorm, FloatAttr("momentum", 0.9), FloatAttr("epsilon", 1e-5), BoolAttr("training", true),
				TensorAttr("running_mean", stats()), TensorAttr("running_var", stats()))
			got, gotDT, err := infer(op, irInputs(dt, shapes(s)))
			if err != nil {
				t.Fatalf("batchnorm%v %v: %v", s, dt, err)
			}
			if want := Shape(gn.Shape()); !got.Eq(want) || gotDT != dt {
				t.Errorf("batchnorm%v %v: got %v %v, want %v %v", s, dt, got, gotDT, want, dt)
			}
		}
	}
}

// repeatProto is a Gorgonia repeatOp, taken from a broadcast.
var repeatProto = func() G.Op {
	g := G.NewGraph()
	m := G.NewMatrix(g, tensor.Float64, G.WithShape(2, 2), G.WithName("m"))
	v := G.NewVector(g, tensor.Float64, G.WithShape(2), G.WithName("v"))
	G.Must(G.BroadcastAdd(m, v, nil, []byte{0}))
	for _, n := range g.AllNodes() {
		if n.Op() != nil && reflect.TypeOf(n.Op()).String() == "*gorgonia.repeatOp" {
			return n.Op()
		}
	}
	panic("no repeat op in a broadcast")
}()

// TestInferRepeatMatchesGorgonia repeats x along an axis by the size of
// another node along the same axis, Gorgonia's only well-defined use of
// repeat. In the IR the count is a size_of node that carries its value.
func TestInferRepeatMatchesGorgonia(t *testing.T) {
	type rc struct {
		x, of Shape
		axis  int
	}
	rcs := []rc{
		{shp(1, 4), shp(3, 4), 0},
		{shp(3, 1), shp(3, 5), 1},
		{shp(2, 1, 4), shp(2, 6, 4), 1},
		{shp(2, 3), shp(5, 3), 0}, // a non-unit axis multiplies
		{shp(4), shp(3, 4), 0},
		{shp(4), shp(3, 1), 1},       // a vector grows an axis: (4,1)
		{shp(4), shp(3, 5), 1},       // (4,5) does not fit the vector type: Gorgonia panics
		{nil, shp(6), 0},             // a scalar becomes (6)
		{shp(2, 3), shp(2, 3, 4), 2}, // no axis 2: Gorgonia panics
	}
	for _, c := range rcs {
		for _, dt := range shapeTestDTypes {
			gn, gerr := gorgoniaBuild(func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
				size, err := G.SizeOf(c.axis, in[1])
				if err != nil {
					return nil, err
				}
				op := setOpFields(repeatProto, map[string]any{"along": c.axis, "inputShape": tensor.Shape(in[0].Shape())})
				return G.ApplyOp(op, in[0], size)
			}, dt, shapes(c.x, c.of))
			ir := irInputs(dt, shapes(c.x, c.of))
			count := &Node{ID: 3, Role: RoleOp, Op: NewOp(KindSizeOf, IntAttr("axis", c.axis)), Inputs: []int64{2}, DType: dt}
			if c.axis < len(c.of) {
				count.Value = scalarValue(dt, float64(c.of[c.axis]))
			}
			op := NewOp(KindRepeat, IntAttr("axis", c.axis))
			got, gotDT, err := infer(op, []*Node{ir[0], count})
			// In a graph the count needs no value: it is measured.
			g := New()
			if err := g.Add(*ir[1]); err != nil {
				t.Fatal(err)
			}
			bare := *count
			bare.Value = nil
			gotG, gotGDT, errG := g.inferNode(op, []*Node{ir[0], &bare})
			name := fmt.Sprintf("repeat%v by size of %v along %d, %v", c.x, c.of, c.axis, dt)
			switch {
			case gerr != nil && (err == nil || errG == nil):
				t.Errorf("%s: infer got %v, inferNode got %v, want errors (Gorgonia: %v)", name, got, gotG, gerr)
			case gerr == nil && (err != nil || errG != nil):
				t.Errorf("%s: infer got error %v, inferNode %v, want %v", name, err, errG, gn.Shape())
			case gerr == nil && (!got.Eq(Shape(gn.Shape())) || gotDT != dt || !gotG.Eq(got) || gotGDT != dt):
				t.Errorf("%s: infer got %v %v, inferNode %v %v, want %v %v", name, got, gotDT, gotG, gotGDT, gn.Shape(), dt)
			}
		}
	}
}

func scalarValue(dt DType, v float64) *tensor.Dense {
	switch dt {
	case Float32:
		return tensor.New(tensor.FromScalar(float32(v)))
	case Int:
		return tensor.New(tensor.FromScalar(int(v)))
	}
	return tensor.New(tensor.FromScalar(v))
}

// TestInferRepeatCount checks how the count is read: from a constant's
// value, from a size_of that carries its value, and never from shapes.
func TestInferRepeatCount(t *testing.T) {
	x := &Node{ID: 1, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(1, 4), DType: Float64}
	y := &Node{ID: 2, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(3, 4), DType: Float64}
	constant := func(v *tensor.Dense, dt DType) *Node {
		return &Node{ID: 3, Role: RoleConstant, Op: Op{Kind: KindConstant}, DType: dt, Value: v}
	}
	sizeOf := func(axis int, v *tensor.Dense) *Node {
		return &Node{ID: 3, Role: RoleOp, Op: NewOp(KindSizeOf, IntAttr("axis", axis)), Inputs: []int64{2}, DType: Float64, Value: v}
	}
	tests := []struct {
		name    string
		count   *Node
		axis    int
		want    Shape
		wantErr string
	}{
		{"constant", constant(scalarValue(Float64, 3), Float64), 0, shp(3, 4), ""},
		{"constant on axis 1", constant(scalarValue(Float64, 2), Float64), 1, shp(1, 8), ""},
		{"size_of with value", sizeOf(0, scalarValue(Float64, 3)), 0, shp(3, 4), ""},
		{"size_of without value", sizeOf(0, nil), 0, nil, "not known from shapes"},
		{"size_of along another axis", sizeOf(1, scalarValue(Float64, 4)), 0, nil, "repeats along axis 0"},
		{"input count", y, 0, nil, "must be a scalar"},
		{"fractional count", constant(scalarValue(Float64, 2.5), Float64), 0, nil, "positive whole number"},
		{"zero count", constant(scalarValue(Float64, 0), Float64), 0, nil, "positive whole number"},
		{"count of another dtype", constant(scalarValue(Float32, 3), Float32), 0, nil, "float32"},
		{"negative axis", constant(scalarValue(Float64, 3), Float64), -1, nil, "negative axis"},
	}
	for _, tt := range tests {
		got, _, err := infer(NewOp(KindRepeat, IntAttr("axis", tt.axis)), []*Node{x, tt.count})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: got %v, %v, want an error containing %q", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !got.Eq(tt.want) {
			t.Errorf("%s: got %v, %v, want %v", tt.name, got, err, tt.want)
		}
	}
}

// TestInferDeviatesFromGorgonia lists the inputs for which Gorgonia builds
// a node but infer refuses: each would fail when run (or is nonsense), so
// the IR rejects it up front. The test pins Gorgonia's own answer too, so
// that a change of Gorgonia shows up here.
func TestInferDeviatesFromGorgonia(t *testing.T) {
	ints := func(v ...int) []int { return v }
	tests := []struct {
		c        shapeCase
		gorgonia string // the shape Gorgonia gives the node
		wantErr  string
	}{
		{shapeCase{"matvec with the wrong inner size", NewOp(KindMatVec, BoolAttr("trans_a", false)), shapes(shp(3, 4), shp(3)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Mul(in[0], in[1]) }},
			"(4)", "inner dimensions differ"},
		{shapeCase{"vecdot of different lengths", NewOp(KindVecDot), shapes(shp(3), shp(4)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Mul(in[0], in[1]) }},
			"()", "one length"},
		{shapeCase{"batched matmul with the wrong inner size", NewOp(KindBatchedMatMul), shapes(shp(2, 3, 4), shp(2, 5, 6)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.BatchedMatMul(in[0], in[1]) }},
			"(2, 3, 6)", "inner dimensions differ"},
		{shapeCase{"sum with a repeated axis", NewOp(KindSum, AxesAttr("axes", 0, 0)), shapes(shp(3, 4)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Sum(in[0], 0, 0) }},
			"(4)", "appears twice"},
		{shapeCase{"at outside the tensor", NewOp(KindAt, IntsAttr("coords", 2, 0)), shapes(shp(2, 3)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.At(in[0], 2, 0) }},
			"()", "out of range"},
		{shapeCase{"at with too few coordinates", NewOp(KindAt, IntsAttr("coords", 1)), shapes(shp(2, 3)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.At(in[0], 1) }},
			"()", "coordinates"},
		{shapeCase{"slice with a negative step", NewOp(KindSlice, IntAttr("axis", 0), IntAttr("start", 1), IntAttr("end", 4), IntAttr("step", -1)), shapes(shp(5, 4)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Slice(in[0], G.S(1, 4, -1)) }},
			"(3, 4)", "negative step"},
		{shapeCase{"im2col kernel larger than the input", NewOp(KindIm2Col, ShapeAttr("kernel", 6, 6), ShapeAttr("pad", 0, 0), ShapeAttr("stride", 2, 2), ShapeAttr("dilation", 1, 1)), shapes(shp(1, 1, 5, 5)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
				return G.Im2Col(in[0], tensor.Shape{6, 6}, tensor.Shape{0, 0}, tensor.Shape{2, 2}, tensor.Shape{1, 1})
			}},
			"(1, 1, 1, 36)", "exceeds the padded input"},
		{shapeCase{"global avgpool of rank 5", NewOp(KindGlobalAvgPool2D), shapes(shp(2, 3, 4, 5, 6)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.GlobalAveragePool2D(in[0]) }},
			"(2, 3, 1, 1)", "(batch, channels, height, width)"},
		{shapeCase{"softmax on a missing axis", NewOp(KindSoftmax, IntAttr("axis", 2)), shapes(shp(2, 3)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.SoftMax(in[0], 2) }},
			"(2, 3)", "out of range"},
		{shapeCase{"softmax of a scalar", NewOp(KindSoftmax, IntAttr("axis", -1)), shapes(nil),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.SoftMax(in[0]) }},
			"()", "scalar"},
		{shapeCase{"dropout probability above 1", NewOp(KindDropout, FloatAttr("probability", 1.5)), shapes(shp(2, 3)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Dropout(in[0], 1.5) }},
			"(2, 3)", "outside [0, 1]"},
		{shapeCase{"reshape a scalar to many elements", NewOp(KindReshape, ShapeAttr("shape", 2, 3)), shapes(nil),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) { return G.Reshape(in[0], tensor.Shape{2, 3}) }},
			"(2, 3)", "cannot reshape"},
		{shapeCase{"pool with two pad values", NewOp(KindMaxPool2D, ShapeAttr("kernel", 2, 2), ShapeAttr("pad", 1, 1), ShapeAttr("stride", 2, 2)), shapes(shp(1, 1, 4, 4)),
			func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
				return G.MaxPool2D(in[0], tensor.Shape{2, 2}, ints(1, 1), ints(2, 2))
			}},
			"(1, 1, 3, 3)", "4 values"},
	}
	for _, tt := range tests {
		gn, gerr := gorgoniaBuild(tt.c.build, Float64, tt.c.in)
		if gerr != nil {
			t.Errorf("%s: Gorgonia got error %v, want shape %s", tt.c.name, gerr, tt.gorgonia)
		} else if got := fmt.Sprint(gn.Shape()); got != tt.gorgonia {
			t.Errorf("%s: Gorgonia got shape %s, want %s", tt.c.name, got, tt.gorgonia)
		}
		got, _, err := infer(tt.c.op, irInputs(Float64, tt.c.in))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: infer got %v, %v, want an error containing %q", tt.c.name, got, err, tt.wantErr)
		}
	}
}

// TestInferErrors covers inputs that no Gorgonia constructor is asked to
// take: mixed dtypes, bad attributes, wrong arity, missing inputs.
func TestInferErrors(t *testing.T) {
	f64 := func(s ...int) *Node { return &Node{Role: RoleInput, Op: Op{Kind: KindInput}, Shape: s, DType: Float64} }
	f32 := func(s ...int) *Node { return &Node{Role: RoleInput, Op: Op{Kind: KindInput}, Shape: s, DType: Float32} }
	stats := func(n int, dt tensor.Dtype) *tensor.Dense { return tensor.New(tensor.Of(dt), tensor.WithShape(n)) }
	bn := func(n int, dt tensor.Dtype) Op {
		return NewOp(KindBatchNorm, FloatAttr("momentum", 0.9), FloatAttr("epsilon", 1e-5),
			TensorAttr("running_mean", stats(n, dt)), TensorAttr("running_var", stats(n, dt)))
	}
	tests := []struct {
		name    string
		op      Op
		in      []*Node
		wantErr string
	}{
		{"add of mixed dtypes", NewOp(KindAdd), []*Node{f64(2), f32(2)}, "input 1 is float32"},
		{"matmul of mixed dtypes", NewOp(KindMatMul), []*Node{f64(2, 3), f32(3, 4)}, "input 1 is float32"},
		{"broadcast of mixed dtypes", NewOp(KindBroadcastAdd, AxesAttr("right", 0)), []*Node{f64(2, 3), f32(3)}, "float32"},
		{"concat of mixed dtypes", NewOp(KindConcat, IntAttr("axis", 0)), []*Node{f64(2), f64(2), f32(2)}, "input 2 is float32"},
		{"broadcast axis 4", NewOp(KindBroadcastAdd, AxesAttr("right", 4)), []*Node{f64(2, 3, 4, 5, 6), f64(6)}, "axes 0 to 3"},
		{"broadcast negative axis", NewOp(KindBroadcastAdd, AxesAttr("left", -1)), []*Node{f64(3), f64(2, 3)}, "axes 0 to 3"},
		{"matmul of vectors", NewOp(KindMatMul), []*Node{f64(3), f64(3)}, "two matrices"},
		{"matvec of matrices", NewOp(KindMatVec), []*Node{f64(2, 3), f64(3, 1)}, "a matrix and a vector"},
		{"outer of matrices", NewOp(KindOuter), []*Node{f64(2, 3), f64(3)}, "two vectors"},
		{"batched of rank 1", NewOp(KindBatchedMatMul), []*Node{f64(3), f64(3)}, "at least 2"},
		{"batched of mixed ranks", NewOp(KindBatchedMatMul), []*Node{f64(2, 3, 4), f64(1, 2, 4, 5)}, "one rank"},
		{"tensordot of a scalar", NewOp(KindTensordot, IntsAttr("a_axes"), IntsAttr("b_axes")), []*Node{f64(), f64(3)}, "at least one dimension"},
		{"tensordot negative axis", NewOp(KindTensordot, IntsAttr("a_axes", -1), IntsAttr("b_axes", 0)), []*Node{f64(3), f64(3)}, "out of range"},
		{"sum of a scalar along 0", NewOp(KindSum, AxesAttr("axes", 0)), []*Node{f64()}, "out of range"},
		{"reshape to a zero dimension", NewOp(KindReshape, ShapeAttr("shape", 0, 6)), []*Node{f64(6)}, "positive"},
		{"transpose a scalar", NewOp(KindTranspose, AxesAttr("perm")), []*Node{f64()}, "scalar"},
		{"slice a scalar", NewOp(KindSlice, IntAttr("axis", 0), IntAttr("start", 0), IntAttr("end", 1)), []*Node{f64()}, "scalar"},
		{"slice axis out of range", NewOp(KindSlice, IntAttr("axis", 2), IntAttr("start", 0), IntAttr("end", 1)), []*Node{f64(2, 3)}, "out of range"},
		{"slice without end", NewOp(KindSlice, IntAttr("axis", 0), IntAttr("start", 1)), []*Node{f64(4)}, "invalid range"},
		{"slice with an empty range", NewOp(KindSlice, IntAttr("axis", 0), IntAttr("start", 1), IntAttr("end", 1)), []*Node{f64(4)}, "empty"},
		{"concat negative axis", NewOp(KindConcat, IntAttr("axis", -1)), []*Node{f64(2), f64(2)}, "out of range"},
		{"im2col of rank 3", NewOp(KindIm2Col, ShapeAttr("kernel", 1, 1), ShapeAttr("pad", 0, 0), ShapeAttr("stride", 1, 1), ShapeAttr("dilation", 1, 1)), []*Node{f64(1, 2, 3)}, "(batch, channels, height, width)"},
		{"im2col kernel of 3 values", NewOp(KindIm2Col, ShapeAttr("kernel", 1, 1, 1), ShapeAttr("pad", 0, 0), ShapeAttr("stride", 1, 1), ShapeAttr("dilation", 1, 1)), []*Node{f64(1, 2, 3, 4)}, "kernel needs 2 values"},
		{"im2col zero dilation", NewOp(KindIm2Col, ShapeAttr("kernel", 1, 1), ShapeAttr("pad", 0, 0), ShapeAttr("stride", 1, 1), ShapeAttr("dilation", 0, 1)), []*Node{f64(1, 2, 3, 4)}, "dilation"},
		{"im2col dilated kernel too big", NewOp(KindIm2Col, ShapeAttr("kernel", 3, 3), ShapeAttr("pad", 0, 0), ShapeAttr("stride", 1, 1), ShapeAttr("dilation", 3, 1)), []*Node{f64(1, 1, 6, 6)}, "exceeds"},
		{"pool zero kernel", NewOp(KindMaxPool2D, ShapeAttr("kernel", 0, 2), ShapeAttr("pad", 0, 0, 0, 0), ShapeAttr("stride", 1, 1)), []*Node{f64(1, 1, 4, 4)}, "kernel"},
		{"dropout NaN", NewOp(KindDropout, FloatAttr("probability", nan())), []*Node{f64(2)}, "outside [0, 1]"},
		{"dropout of a scalar", NewOp(KindDropout, FloatAttr("probability", 0.5)), []*Node{f64()}, "scalar"},
		{"batchnorm of a vector", bn(3, tensor.Float64), []*Node{f64(3)}, "(batch, channels)"},
		{"batchnorm statistics of the wrong size", bn(4, tensor.Float64), []*Node{f64(2, 3)}, "4 elements for 3 channels"},
		{"batchnorm statistics of the wrong dtype", bn(3, tensor.Float32), []*Node{f64(2, 3)}, "float32"},
		{"batchnorm without statistics", NewOp(KindBatchNorm), []*Node{f64(2, 3)}, "running_mean is missing"},
		{"unknown kind", Op{Kind: "conv3d"}, []*Node{f64(2)}, "unknown op kind"},
		{"source kind", Op{Kind: KindInput}, nil, "source"},
		{"too few inputs", NewOp(KindAdd), []*Node{f64(2)}, "takes 2 inputs, got 1"},
		{"too many inputs", NewOp(KindExp), []*Node{f64(2), f64(2)}, "takes 1 inputs, got 2"},
		{"concat without inputs", NewOp(KindConcat, IntAttr("axis", 0)), nil, "at least 1"},
		{"missing input", NewOp(KindAdd), []*Node{f64(2), nil}, "input 1 is missing"},
	}
	for _, tt := range tests {
		got, _, err := infer(tt.op, tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: got %v, %v, want an error containing %q", tt.name, got, err, tt.wantErr)
		}
	}
}

func nan() float64 { var z float64; return z / z }

// mlpGraph builds a 784-hidden-10 classifier with a cross-entropy-like loss
// by hand, as FromGorgonia would read it:
//
//	x(batch,784) · w1(784,hidden) +b1 → relu → · w2(hidden,10) +b2 → log-softmax → ⊙ y → sum → neg
//
// ReLU is Gorgonia's: x ≥ 0 (ret_same) then a Hadamard product.
func mlpGraph(t testing.TB, batch, hidden int, dt DType) *Graph {
	t.Helper()
	tdt, _ := dt.Tensor()
	zero := tensor.New(tensor.Of(tdt), tensor.WithShape())
	g := New()
	in := func(id int64, name string, role Role, s ...int) Node {
		return Node{ID: id, Role: role, Op: Op{Kind: KindInput}, Shape: s, DType: dt, Name: name}
	}
	op := func(id int64, o Op, s Shape, d DType, inputs ...int64) Node {
		return Node{ID: id, Role: RoleOp, Op: o, Inputs: inputs, Shape: s, DType: d}
	}
	nodes := []Node{
		in(1, "x", RoleInput, batch, 784),
		in(2, "y", RoleInput, batch, 10),
		in(3, "w1", RoleLearnable, 784, hidden),
		in(4, "b1", RoleLearnable, hidden),
		in(5, "w2", RoleLearnable, hidden, 10),
		in(6, "b2", RoleLearnable, 10),
		{ID: 7, Role: RoleConstant, Op: Op{Kind: KindConstant}, DType: dt, Value: zero, Name: "zero"},
		op(8, NewOp(KindMatMul, BoolAttr("trans_a", false), BoolAttr("trans_b", false)), shp(batch, hidden), dt, 1, 3),
		op(9, NewOp(KindBroadcastAdd, AxesAttr("right", 0)), shp(batch, hidden), dt, 8, 4),
		op(10, NewOp(KindGte, BoolAttr("ret_same", true)), shp(batch, hidden), dt, 9, 7),
		op(11, NewOp(KindMul), shp(batch, hidden), dt, 9, 10),
		op(12, NewOp(KindMatMul, BoolAttr("trans_a", false), BoolAttr("trans_b", false)), shp(batch, 10), dt, 11, 5),
		op(13, NewOp(KindBroadcastAdd, AxesAttr("right", 0)), shp(batch, 10), dt, 12, 6),
		op(14, NewOp(KindSoftmax, IntAttr("axis", -1), BoolAttr("log", true)), shp(batch, 10), dt, 13),
		op(15, NewOp(KindMul), shp(batch, 10), dt, 14, 2),
		op(16, NewOp(KindSum, AxesAttr("axes")), nil, dt, 15),
		op(17, NewOp(KindNeg), nil, dt, 16),
	}
	for _, n := range nodes {
		if err := g.Add(n); err != nil {
			t.Fatalf("Add(%d %s): %v", n.ID, n.Op.Kind, err)
		}
	}
	return g
}

func TestAddBuildsAnMLP(t *testing.T) {
	for _, dt := range shapeTestDTypes {
		g := mlpGraph(t, 64, 256, dt)
		if err := g.Validate(); err != nil {
			t.Fatalf("%v: Validate: %v", dt, err)
		}
		if got, want := g.Len(), 17; got != want {
			t.Errorf("%v: got %d nodes, want %d", dt, got, want)
		}
		if got, want := g.Outputs(), []int64{17}; !reflect.DeepEqual(got, want) {
			t.Errorf("%v: got outputs %v, want %v", dt, got, want)
		}
	}
}

// TestAddChecksShapes: a node whose shape or dtype disagrees with its op
// is refused with a ShapeError or NodeError that matches ErrInvalid.
func TestAddChecksShapes(t *testing.T) {
	g := mlpGraph(t, 64, 256, Float64)
	tests := []struct {
		name  string
		n     Node
		shape bool // a *ShapeError, else a *NodeError
	}{
		{"wrong shape", Node{ID: 100, Role: RoleOp, Op: NewOp(KindMatMul), Inputs: []int64{1, 3}, Shape: shp(64, 255), DType: Float64}, true},
		{"inner mismatch", Node{ID: 100, Role: RoleOp, Op: NewOp(KindMatMul), Inputs: []int64{3, 1}, Shape: shp(784, 784), DType: Float64}, true},
		{"scalar said to be a vector", Node{ID: 100, Role: RoleOp, Op: NewOp(KindSum, AxesAttr("axes")), Inputs: []int64{1}, Shape: shp(1), DType: Float64}, true},
		{"wrong dtype", Node{ID: 100, Role: RoleOp, Op: NewOp(KindExp), Inputs: []int64{1}, Shape: shp(64, 784), DType: Float32}, false},
		{"comparison said to keep its dtype", Node{ID: 100, Role: RoleOp, Op: NewOp(KindLt, BoolAttr("ret_same", false)), Inputs: []int64{1, 1}, Shape: shp(64, 784), DType: Float64}, false},
	}
	for _, tt := range tests {
		err := g.Add(tt.n)
		if !errors.Is(err, ErrInvalid) && !errors.As(err, new(*NodeError)) {
			t.Errorf("%s: got %v, want an invalid-node error", tt.name, err)
			continue
		}
		var se *ShapeError
		if got := errors.As(err, &se); got != tt.shape {
			t.Errorf("%s: got %T (%v), want a ShapeError: %v", tt.name, err, err, tt.shape)
		}
	}
	if g.Len() != 17 {
		t.Errorf("got %d nodes after refused adds, want 17", g.Len())
	}
}

// TestAddRepeatBySizeOf: inside a graph, a size_of count needs no value:
// Add reads the size off the node it measures, and refuses a value that
// disagrees with it.
func TestAddRepeatBySizeOf(t *testing.T) {
	build := func(count *tensor.Dense, countAxis, repeatAxis int, want Shape) error {
		g := New()
		for _, n := range []Node{
			{ID: 1, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(1, 4), DType: Float64, Name: "x"},
			{ID: 2, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(3, 4), DType: Float64, Name: "y"},
			{ID: 3, Role: RoleOp, Op: NewOp(KindSizeOf, IntAttr("axis", countAxis)), Inputs: []int64{2}, DType: Float64, Value: count},
		} {
			if err := g.Add(n); err != nil {
				t.Fatalf("Add(%d): %v", n.ID, err)
			}
		}
		return g.Add(Node{ID: 4, Role: RoleOp, Op: NewOp(KindRepeat, IntAttr("axis", repeatAxis)), Inputs: []int64{1, 3}, Shape: want, DType: Float64})
	}
	tests := []struct {
		name       string
		count      *tensor.Dense
		countAxis  int
		repeatAxis int
		want       Shape
		wantErr    string
	}{
		{"no value", nil, 0, 0, shp(3, 4), ""},
		{"matching value", scalarValue(Float64, 3), 0, 0, shp(3, 4), ""},
		{"size along axis 1", nil, 1, 1, shp(1, 16), ""},
		{"disagreeing value", scalarValue(Float64, 5), 0, 0, shp(5, 4), "says 5 but measures 3"},
		{"another axis", nil, 1, 0, shp(4, 4), "repeats along axis 0"},
		{"wrong shape", nil, 0, 0, shp(1, 4), "repeat computes [3 4]"},
	}
	for _, tt := range tests {
		err := build(tt.count, tt.countAxis, tt.repeatAxis, tt.want)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: got %v, want no error", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

// TestInferNeverPanics feeds every kind random shapes and attributes, as a
// graph decoded from the network might carry, and wants an answer or an
// error, never a panic.
func TestInferNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ints := func(n int) []int {
		v := make([]int, n)
		for i := range v {
			v[i] = rng.IntN(9) - 2
		}
		return v
	}
	shape := func() Shape {
		s := make(Shape, rng.IntN(5))
		for i := range s {
			s[i] = 1 + rng.IntN(5)
		}
		return s
	}
	names := []string{"axis", "axes", "start", "end", "step", "all", "shape", "perm", "coords", "left", "right",
		"a_axes", "b_axes", "trans_a", "trans_b", "ret_same", "kernel", "pad", "stride", "dilation", "probability", "log"}
	for _, k := range Kinds() {
		for i := 0; i < 300; i++ {
			var attrs []Attr
			for _, name := range names {
				switch rng.IntN(4) {
				case 0:
					attrs = append(attrs, IntAttr(name, rng.IntN(7)-2))
				case 1:
					attrs = append(attrs, IntsAttr(name, ints(rng.IntN(5))...))
				case 2:
					attrs = append(attrs, BoolAttr(name, rng.IntN(2) == 0))
				}
			}
			if rng.IntN(2) == 0 {
				attrs = append(attrs, FloatAttr("probability", rng.Float64()*3-1))
			}
			if rng.IntN(2) == 0 {
				attrs = append(attrs, TensorAttr("running_mean", tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(1+rng.IntN(4)))))
			}
			in := make([]*Node, rng.IntN(4))
			for j := range in {
				n := &Node{ID: int64(j + 1), Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shape(), DType: DType(1 + rng.IntN(4))}
				if rng.IntN(3) == 0 {
					n.Op = NewOp(KindSizeOf, IntAttr("axis", rng.IntN(3)))
					n.Value = scalarValue(Float64, float64(rng.IntN(4)))
				}
				in[j] = n
			}
			op := NewOp(k, attrs...)
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("infer(%v, %d inputs) panicked: %v", op, len(in), r)
					}
				}()
				if s, _, err := infer(op, in); err == nil {
					for _, d := range s {
						if d <= 0 {
							t.Errorf("infer(%v) got shape %v with a non-positive dimension", op, s)
						}
					}
				}
			}()
		}
	}
}

package graph

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Bit patterns that a lossy codec would change: signalling NaNs with
// payloads, negative zero.
var (
	codecNaN64   = math.Float64frombits(0x7ff0_0000_dead_beef)
	codecNaN32   = math.Float32frombits(0x7f80_0bad)
	codecNegZero = math.Copysign(0, -1)
)

func codecDense(shape []int, backing any) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing))
}

// codecSampleGraph builds a graph with every role, every dtype, tensor
// attributes, NaN payloads, negative and large ids and a non-ASCII name;
// its shapes are what the ops compute.
func codecSampleGraph(t testing.TB) *Graph {
	t.Helper()
	g := New()
	add := func(n Node) {
		t.Helper()
		require.NoError(t, g.Add(n))
	}
	f64 := func(id int64, name string, role Role, shape ...int) Node {
		op := NewOp(KindInput)
		if role == RoleConstant {
			op = NewOp(KindConstant)
		}
		return Node{ID: id, Role: role, Op: op, Shape: shape, DType: Float64, Name: name}
	}
	op := func(id int64, o Op, dt DType, shape Shape, inputs ...int64) Node {
		return Node{ID: id, Role: RoleOp, Op: o, Inputs: inputs, Shape: shape, DType: dt, Name: fmt.Sprintf("%s_%d", o.Kind, id)}
	}

	add(f64(1, "x", RoleInput, 2, 3))
	w := f64(2, "w", RoleLearnable, 3, 4)
	w.Value = codecDense([]int{3, 4}, []float64{1, -2, 3.5, codecNaN64, math.Inf(1), math.Inf(-1), codecNegZero, math.SmallestNonzeroFloat64, math.MaxFloat64, 1e-300, 7, 8})
	add(w)
	half := f64(3, "½", RoleConstant)
	half.Value = codecDense(nil, []float64{0.5})
	add(half)
	add(op(10, NewOp(KindMatMul, BoolAttr("trans_b", false), BoolAttr("trans_a", false)), Float64, Shape{2, 4}, 1, 2))
	add(op(11, NewOp(KindMul), Float64, Shape{2, 4}, 10, 3))
	add(op(12, NewOp(KindReshape, ShapeAttr("shape", 4, 2)), Float64, Shape{4, 2}, 11))
	add(op(13, NewOp(KindSoftmax, IntAttr("axis", 1), BoolAttr("log", true)), Float64, Shape{4, 2}, 12))
	add(op(14, NewOp(KindSum, AxesAttr("axes", 1)), Float64, Shape{4}, 13))
	add(op(15, NewOp(KindGt, BoolAttr("ret_same", false)), Bool, Shape{2, 3}, 1, 1))
	add(op(16, NewOp(KindDropout, FloatAttr("probability", 0.1), BoolAttr("training", true)), Float64, Shape{2, 3}, 1))
	add(op(17, NewOp(KindAt, IntsAttr("coords", 1, 2)), Float64, nil, 1))

	add(f64(-5, "β₁ image", RoleInput, 2, 3, 2, 2))
	add(op(1<<50, NewOp(KindBatchNorm,
		FloatAttr("momentum", 0.9), FloatAttr("epsilon", 1e-5), BoolAttr("training", true),
		TensorAttr("running_mean", codecDense([]int{3}, []float64{0.1, codecNaN64, -0.3})),
		TensorAttr("running_var", codecDense([]int{3}, []float64{1, 2, 3})),
	), Float64, Shape{2, 3, 2, 2}, -5))

	add(Node{ID: 20, Role: RoleLearnable, Op: NewOp(KindInput), Shape: Shape{2, 2}, DType: Float32, Name: "w32",
		Value: codecDense([]int{2, 2}, []float32{codecNaN32, -1.5, float32(codecNegZero), math.MaxFloat32})})
	add(op(21, NewOp(KindTranspose, AxesAttr("perm", 1, 0)), Float32, Shape{2, 2}, 20))
	add(Node{ID: 30, Role: RoleConstant, Op: NewOp(KindConstant), Shape: Shape{3}, DType: Int, Name: "ints",
		Value: codecDense([]int{3}, []int{-1, 1 << 40, math.MinInt})})
	add(Node{ID: 31, Role: RoleConstant, Op: NewOp(KindConstant), Shape: Shape{2}, DType: Bool, Name: "mask",
		Value: codecDense([]int{2}, []bool{true, false})})
	add(Node{ID: 32, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{2, 6}, DType: Float32, Name: ""})
	add(op(33, NewOp(KindTensordot, IntsAttr("a_axes", 1), IntsAttr("b_axes", 0)), Float32, Shape{2, 6}, 21, 32))
	return g
}

// codecChain builds x → tanh → tanh → … of n op nodes.
func codecChain(t testing.TB, n int) *Graph {
	g := New()
	require.NoError(t, g.Add(Node{ID: 0, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{4}, DType: Float64, Name: "x"}))
	for i := 1; i <= n; i++ {
		require.NoError(t, g.Add(Node{ID: int64(i), Role: RoleOp, Op: NewOp(KindTanh), Inputs: []int64{int64(i - 1)}, Shape: Shape{4}, DType: Float64}))
	}
	return g
}

// tensorBits returns a tensor's elements as bit patterns, so that NaNs
// compare equal to themselves.
func tensorBits(t *testing.T, d *tensor.Dense) []uint64 {
	t.Helper()
	var out []uint64
	switch v := d.Data().(type) {
	case []float64:
		for _, x := range v {
			out = append(out, math.Float64bits(x))
		}
	case float64:
		out = append(out, math.Float64bits(v))
	case []float32:
		for _, x := range v {
			out = append(out, uint64(math.Float32bits(x)))
		}
	case float32:
		out = append(out, uint64(math.Float32bits(v)))
	case []int:
		for _, x := range v {
			out = append(out, uint64(x))
		}
	case int:
		out = append(out, uint64(v))
	case []int64:
		for _, x := range v {
			out = append(out, uint64(x))
		}
	case []bool:
		for _, x := range v {
			if x {
				out = append(out, 1)
			} else {
				out = append(out, 0)
			}
		}
	case bool:
		if v {
			out = append(out, 1)
		} else {
			out = append(out, 0)
		}
	default:
		t.Fatalf("tensor data of type %T", v)
	}
	return out
}

func requireSameTensor(t *testing.T, what string, want, got *tensor.Dense) {
	t.Helper()
	if want == nil || got == nil {
		require.Truef(t, want == nil && got == nil, "%s: got %v, want %v", what, got, want)
		return
	}
	wdt, err := DTypeOf(want.Dtype())
	require.NoError(t, err)
	gdt, err := DTypeOf(got.Dtype())
	require.NoError(t, err)
	require.Equalf(t, wdt, gdt, "%s: dtype", what)
	require.Equalf(t, []int(want.Shape()), []int(got.Shape()), "%s: shape", what)
	require.Equalf(t, tensorBits(t, want), tensorBits(t, got), "%s: data bits", what)
}

func requireSameAttr(t *testing.T, what string, want, got Attr) {
	t.Helper()
	require.Equalf(t, want.Name, got.Name, "%s: name", what)
	require.Equalf(t, want.Type, got.Type, "%s: type", what)
	require.Equalf(t, want.Int, got.Int, "%s: int", what)
	require.Equalf(t, math.Float64bits(want.Float), math.Float64bits(got.Float), "%s: float bits", what)
	require.Equalf(t, want.Bool, got.Bool, "%s: bool", what)
	require.Equalf(t, want.String, got.String, "%s: string", what)
	require.Equalf(t, len(want.Ints), len(got.Ints), "%s: ints", what)
	if len(want.Ints) > 0 {
		require.Equalf(t, want.Ints, got.Ints, "%s: ints", what)
	}
	require.Equalf(t, len(want.Floats), len(got.Floats), "%s: floats", what)
	for i := range want.Floats {
		require.Equalf(t, math.Float64bits(want.Floats[i]), math.Float64bits(got.Floats[i]), "%s: floats[%d] bits", what, i)
	}
	requireSameTensor(t, what+": tensor", want.Tensor, got.Tensor)
}

func requireSameNode(t *testing.T, want, got *Node) {
	t.Helper()
	what := fmt.Sprintf("node %d", want.ID)
	require.Equalf(t, want.ID, got.ID, "%s: id", what)
	require.Equalf(t, want.Role, got.Role, "%s: role", what)
	require.Equalf(t, want.Op.Kind, got.Op.Kind, "%s: kind", what)
	require.Equalf(t, len(want.Op.Attrs), len(got.Op.Attrs), "%s: attributes", what)
	for i := range want.Op.Attrs {
		requireSameAttr(t, fmt.Sprintf("%s attribute %q", what, want.Op.Attrs[i].Name), want.Op.Attrs[i], got.Op.Attrs[i])
	}
	require.Truef(t, slices.Equal(want.Inputs, got.Inputs), "%s: got inputs %v, want %v", what, got.Inputs, want.Inputs)
	require.Truef(t, want.Shape.Eq(got.Shape), "%s: got shape %v, want %v", what, got.Shape, want.Shape)
	require.Equalf(t, want.DType, got.DType, "%s: dtype", what)
	require.Equalf(t, want.Name, got.Name, "%s: name", what)
	requireSameTensor(t, what+": value", want.Value, got.Value)
}

// requireSameGraph checks that two graphs hold equal nodes in the same order.
func requireSameGraph(t *testing.T, want, got *Graph) {
	t.Helper()
	require.Equal(t, want.Len(), got.Len(), "nodes")
	for i := range want.Nodes() {
		requireSameNode(t, &want.Nodes()[i], &got.Nodes()[i])
	}
	require.NoError(t, got.Validate())
}

func TestMarshalRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		g    func(t *testing.T) *Graph
	}{
		{"empty", func(*testing.T) *Graph { return New() }},
		{"sample", func(t *testing.T) *Graph { return codecSampleGraph(t) }},
		{"chain", func(t *testing.T) *Graph { return codecChain(t, 100) }},
		{"one scalar input", func(t *testing.T) *Graph {
			g := New()
			require.NoError(t, g.Add(Node{ID: math.MinInt64, Role: RoleInput, Op: NewOp(KindInput), DType: Bool}))
			return g
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.g(t)
			b, err := want.MarshalBinary()
			require.NoError(t, err)

			var got Graph
			require.NoError(t, got.UnmarshalBinary(b))
			requireSameGraph(t, want, &got)

			again, err := got.MarshalBinary()
			require.NoError(t, err)
			require.True(t, bytes.Equal(b, again), "re-encoding the decoded graph changed the bytes")

			b2, err := want.MarshalBinary()
			require.NoError(t, err)
			require.True(t, bytes.Equal(b, b2), "encoding is not deterministic")

			// EncodeGraph and DecodeGraph agree with the byte form.
			pb, err := EncodeGraph(want)
			require.NoError(t, err)
			b3, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
			require.NoError(t, err)
			require.True(t, bytes.Equal(b, b3), "EncodeGraph differs from MarshalBinary")
			viaMsg, err := DecodeGraph(pb, Limits{})
			require.NoError(t, err)
			requireSameGraph(t, want, viaMsg)
		})
	}
}

func TestEncodeGraphSharesNoMemory(t *testing.T) {
	g := codecSampleGraph(t)
	pb, err := EncodeGraph(g)
	require.NoError(t, err)
	w, _ := g.Node(2)
	before := math.Float64bits(w.Value.Data().([]float64)[0])
	for _, n := range pb.Nodes {
		if n.Value != nil {
			clear(n.Value.Data)
		}
		clear(n.Inputs)
	}
	require.Equal(t, before, math.Float64bits(w.Value.Data().([]float64)[0]))
	require.Equal(t, []int64{1, 2}, g.Nodes()[g.Pos(10)].Inputs)
}

func TestDecodeKeepsNothingOfTheMessage(t *testing.T) {
	g := codecSampleGraph(t)
	pb, err := EncodeGraph(g)
	require.NoError(t, err)
	got, err := DecodeGraph(pb, Limits{})
	require.NoError(t, err)
	for _, n := range pb.Nodes {
		if n.Value != nil {
			clear(n.Value.Data)
		}
		clear(n.Inputs)
	}
	requireSameGraph(t, g, got)
}

func TestDecodeAnyNodeOrder(t *testing.T) {
	want := codecSampleGraph(t)
	pb, err := EncodeGraph(want)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	orders := map[string]func([]*rookeryv1.Node){
		"reversed": slices.Reverse[[]*rookeryv1.Node],
		"shuffled": func(s []*rookeryv1.Node) { rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] }) },
	}
	for name, reorder := range orders {
		t.Run(name, func(t *testing.T) {
			msg := proto.Clone(pb).(*rookeryv1.Graph)
			reorder(msg.Nodes)
			b, err := proto.Marshal(msg)
			require.NoError(t, err)
			got, err := Decode(b, Limits{})
			require.NoError(t, err)
			require.NoError(t, got.Validate())
			require.Equal(t, want.Len(), got.Len())
			for _, n := range want.Nodes() {
				gn, ok := got.Node(n.ID)
				require.Truef(t, ok, "node %d is missing", n.ID)
				requireSameNode(t, &n, gn)
			}
			// Decoding is deterministic whatever the order.
			again, err := Decode(b, Limits{})
			require.NoError(t, err)
			requireSameGraph(t, got, again)
		})
	}
}

func TestDecodeSortsAttributes(t *testing.T) {
	msg := wGraph(wInput(1, 2, 3), wInput(2, 4, 3), with(wOp(3, KindMatMul, []int64{2, 4}, 1, 2), func(n *rookeryv1.Node) {
		n.Attrs = []*rookeryv1.Attr{
			{Name: "trans_b", Value: &rookeryv1.Attr_BoolValue{BoolValue: true}},
			{Name: "trans_a", Value: &rookeryv1.Attr_BoolValue{BoolValue: false}},
		}
	}))
	b, err := proto.Marshal(msg)
	require.NoError(t, err)
	g, err := Decode(b, Limits{})
	require.NoError(t, err)
	n, ok := g.Node(3)
	require.True(t, ok)
	var names []string
	for _, a := range n.Op.Attrs {
		names = append(names, a.Name)
	}
	require.Equal(t, []string{"trans_a", "trans_b"}, names)
	require.True(t, n.Op.Bool("trans_b"))
}

func wNode(id int64, kind string, role rookeryv1.Role, shape []int64, inputs ...int64) *rookeryv1.Node {
	return &rookeryv1.Node{Id: id, Kind: kind, Role: role, Dtype: rookeryv1.DType_DTYPE_FLOAT64, Shape: shape, Inputs: inputs}
}

func wInput(id int64, shape ...int64) *rookeryv1.Node {
	return wNode(id, string(KindInput), rookeryv1.Role_ROLE_INPUT, shape)
}

func wOp(id int64, kind OpKind, shape []int64, inputs ...int64) *rookeryv1.Node {
	return wNode(id, string(kind), rookeryv1.Role_ROLE_OP, shape, inputs...)
}

func wGraph(nodes ...*rookeryv1.Node) *rookeryv1.Graph {
	return &rookeryv1.Graph{Version: FormatVersion, Nodes: nodes}
}

func wF64(shape []int64, vals ...float64) *rookeryv1.Tensor {
	return &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT64, Shape: shape, Data: putFloat64s(vals, false, false)}
}

func with(n *rookeryv1.Node, f func(*rookeryv1.Node)) *rookeryv1.Node { f(n); return n }

// errCheck asserts something about an error.
type errCheck func(t *testing.T, err error)

// wantAs asserts that the error chain holds an E, then runs more checks on it.
func wantAs[E error](more ...func(t *testing.T, e E)) errCheck {
	return func(t *testing.T, err error) {
		t.Helper()
		var e E
		require.Truef(t, errors.As(err, &e), "got error %v (%T), want a %T", err, err, e)
		for _, m := range more {
			m(t, e)
		}
	}
}

func wantIs(target error) errCheck {
	return func(t *testing.T, err error) {
		t.Helper()
		require.Truef(t, errors.Is(err, target), "got error %v, want one matching %v", err, target)
	}
}

func wantLimit(what string) errCheck {
	return wantAs(func(t *testing.T, e *LimitError) {
		require.Equal(t, what, e.What)
		require.GreaterOrEqual(t, e.Got, e.Limit) // Got saturates at MaxInt64
		require.ErrorIs(t, e, ErrLimit)
	})
}

func TestDecodeErrors(t *testing.T) {
	valid, err := codecChain(t, 3).MarshalBinary()
	require.NoError(t, err)
	many := make([]*rookeryv1.Node, 5)
	for i := range many {
		many[i] = wInput(int64(i), 2)
	}
	attrs := make([]*rookeryv1.Attr, 5)
	for i := range attrs {
		attrs[i] = &rookeryv1.Attr{Name: fmt.Sprint("a", i), Value: &rookeryv1.Attr_IntValue{}}
	}

	tests := []struct {
		name string
		msg  *rookeryv1.Graph // encoded with proto.Marshal, and given to DecodeGraph
		raw  []byte           // or these bytes, for Decode only
		lim  Limits
		want errCheck
	}{
		{name: "garbage", raw: []byte{0xff, 0xff, 0xff}, want: wantIs(ErrMalformed)},
		{name: "truncated", raw: valid[:len(valid)-3], want: wantIs(ErrMalformed)},
		{name: "bad varint", raw: []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, want: wantIs(ErrMalformed)},
		{name: "name not UTF-8", raw: protowire.AppendBytes(protowire.AppendTag([]byte{0x08, 0x01}, 2, protowire.BytesType),
			protowire.AppendString(protowire.AppendTag(nil, 7, protowire.BytesType), "\xff")), want: wantIs(ErrMalformed)},
		{name: "value twice", raw: func() []byte {
			b, err := proto.Marshal(wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, nil), func(n *rookeryv1.Node) { n.Value = wF64(nil, 1) })))
			require.NoError(t, err)
			// Repeat field 9 (value) inside the node: protobuf would merge it.
			node, _ := protowire.ConsumeBytes(b[3:])
			tensor, _ := proto.Marshal(wF64(nil, 2))
			node = protowire.AppendBytes(protowire.AppendTag(slices.Clone(node), 9, protowire.BytesType), tensor)
			return protowire.AppendBytes(protowire.AppendTag([]byte{0x08, 0x01}, 2, protowire.BytesType), node)
		}(), want: wantIs(ErrMalformed)},
		{name: "no version", msg: &rookeryv1.Graph{}, want: wantIs(ErrVersion)},
		{name: "future version", msg: &rookeryv1.Graph{Version: 2}, want: wantIs(ErrVersion)},
		{name: "too many bytes", raw: valid, lim: Limits{MaxBytes: int64(len(valid) - 1)}, want: wantLimit("bytes")},
		{name: "too many nodes", msg: wGraph(many...), lim: Limits{MaxNodes: 4}, want: wantLimit("nodes")},
		{name: "node rank", msg: wGraph(wInput(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)), want: wantLimit("rank")},
		{name: "tensor rank", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, nil), func(n *rookeryv1.Node) {
			n.Value = wF64([]int64{1, 1, 1, 1, 1, 1, 1, 1, 1}, 1)
		})), want: wantLimit("rank")},
		{name: "dims overflow", msg: wGraph(wInput(1, 1<<40, 1<<40)), want: wantLimit("elements")},
		{name: "dims overflow int64", msg: wGraph(wInput(1, math.MaxInt64, 3)), lim: Limits{MaxElements: math.MaxInt64}, want: wantLimit("elements")},
		{name: "too many elements", msg: wGraph(wInput(1, 4, 4)), lim: Limits{MaxElements: 15}, want: wantLimit("elements")},
		{name: "tensor too many elements", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, nil), func(n *rookeryv1.Node) {
			n.Dtype = rookeryv1.DType_DTYPE_BOOL
			n.Value = &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_BOOL, Shape: []int64{4, 4}, Data: make([]byte, 16)}
		})), lim: Limits{MaxElements: 15}, want: wantLimit("elements")},
		{name: "zero dimension", msg: wGraph(wInput(1, 2, 0)), want: wantAs[*ShapeError]()},
		{name: "negative dimension", msg: wGraph(wInput(1, -2)), want: wantAs[*ShapeError]()},
		{name: "tensor zero dimension", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, []int64{2}), func(n *rookeryv1.Node) {
			n.Value = wF64([]int64{0})
		})), want: wantIs(ErrMalformed)},
		{name: "data too short", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, []int64{2}), func(n *rookeryv1.Node) {
			n.Value = wF64([]int64{2}, 1)
		})), want: wantIs(ErrMalformed)},
		{name: "data too long", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, []int64{2}), func(n *rookeryv1.Node) {
			n.Value = wF64([]int64{2}, 1, 2, 3)
		})), want: wantIs(ErrMalformed)},
		{name: "data one byte short", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, []int64{2}), func(n *rookeryv1.Node) {
			n.Value = wF64([]int64{2}, 1, 2)
			n.Value.Data = n.Value.Data[:15]
		})), want: wantIs(ErrMalformed)},
		{name: "bool byte", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, []int64{2}), func(n *rookeryv1.Node) {
			n.Dtype = rookeryv1.DType_DTYPE_BOOL
			n.Value = &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_BOOL, Shape: []int64{2}, Data: []byte{1, 2}}
		})), want: wantIs(ErrMalformed)},
		{name: "attribute tensor data", msg: wGraph(wInput(1, 2, 3, 2, 2), with(wOp(2, KindBatchNorm, []int64{2, 3, 2, 2}, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{
				{Name: "epsilon", Value: &rookeryv1.Attr_FloatValue{FloatValue: 1e-5}},
				{Name: "momentum", Value: &rookeryv1.Attr_FloatValue{FloatValue: 0.9}},
				{Name: "running_mean", Value: &rookeryv1.Attr_Tensor{Tensor: wF64([]int64{3}, 1, 2)}},
				{Name: "running_var", Value: &rookeryv1.Attr_Tensor{Tensor: wF64([]int64{3}, 1, 2, 3)}},
			}
		})), want: wantIs(ErrMalformed)},
		{name: "dangling input", msg: wGraph(wInput(1, 2), wOp(2, KindAdd, []int64{2}, 1, 7)), want: wantAs(func(t *testing.T, e *DanglingInputError) {
			require.Equal(t, DanglingInputError{Node: 2, Input: 7}, *e)
		})},
		{name: "cycle", msg: wGraph(wInput(1, 2), wOp(2, KindAdd, []int64{2}, 1, 3), wOp(3, KindNeg, []int64{2}, 2)), want: wantAs(func(t *testing.T, e *CycleError) {
			require.ElementsMatch(t, []int64{2, 3}, e.Nodes)
		})},
		{name: "self loop", msg: wGraph(wOp(1, KindNeg, []int64{2}, 1)), want: wantAs(func(t *testing.T, e *CycleError) {
			require.Equal(t, []int64{1}, e.Nodes)
		})},
		{name: "duplicate id", msg: wGraph(wInput(1, 2), wInput(1, 2)), want: func(t *testing.T, err error) {
			wantAs(func(t *testing.T, e *NodeError) { require.Equal(t, int64(1), e.ID) })(t, err)
			wantIs(ErrDuplicateID)(t, err)
		}},
		{name: "unknown kind", msg: wGraph(wInput(1, 2), wOp(2, "frobnicate", []int64{2}, 1)), want: wantAs(func(t *testing.T, e *UnknownKindError) {
			require.Equal(t, OpKind("frobnicate"), e.Kind)
		})},
		{name: "unknown dtype", msg: wGraph(with(wInput(1, 2), func(n *rookeryv1.Node) { n.Dtype = 7 })), want: wantIs(ErrMalformed)},
		{name: "unspecified dtype", msg: wGraph(with(wInput(1, 2), func(n *rookeryv1.Node) { n.Dtype = 0 })), want: wantIs(ErrMalformed)},
		{name: "unknown tensor dtype", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, nil), func(n *rookeryv1.Node) {
			n.Value = &rookeryv1.Tensor{Dtype: 9, Data: make([]byte, 8)}
		})), want: wantIs(ErrMalformed)},
		{name: "unknown role", msg: wGraph(with(wInput(1, 2), func(n *rookeryv1.Node) { n.Role = 12 })), want: wantIs(ErrMalformed)},
		{name: "unspecified role", msg: wGraph(with(wInput(1, 2), func(n *rookeryv1.Node) { n.Role = 0 })), want: wantIs(ErrMalformed)},
		{name: "role does not fit kind", msg: wGraph(with(wInput(1, 2), func(n *rookeryv1.Node) { n.Role = rookeryv1.Role_ROLE_OP })), want: wantIs(ErrInvalid)},
		{name: "attribute type mismatch", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindMatMul, []int64{2, 2}, 1, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "trans_a", Value: &rookeryv1.Attr_IntValue{IntValue: 1}}}
		})), want: func(t *testing.T, err error) {
			wantAs(func(t *testing.T, e *NodeError) { require.Equal(t, int64(2), e.ID) })(t, err)
			wantIs(ErrInvalid)(t, err)
		}},
		{name: "attribute shape for axes", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindSum, []int64{2}, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "axes", Value: &rookeryv1.Attr_Shape{Shape: &rookeryv1.Ints{Values: []int64{1}}}}}
		})), want: wantIs(ErrInvalid)},
		{name: "attribute without value", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindMatMul, []int64{2, 2}, 1, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "trans_a"}}
		})), want: wantIs(ErrMalformed)},
		{name: "missing attribute", msg: wGraph(wInput(1, 2, 2), wOp(2, KindSum, []int64{2}, 1)), want: wantIs(ErrInvalid)},
		{name: "unknown attribute", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindNeg, []int64{2, 2}, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "x", Value: &rookeryv1.Attr_BoolValue{}}}
		})), want: wantIs(ErrInvalid)},
		{name: "duplicate attribute", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindMatMul, []int64{2, 2}, 1, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{
				{Name: "trans_a", Value: &rookeryv1.Attr_BoolValue{}},
				{Name: "trans_a", Value: &rookeryv1.Attr_BoolValue{BoolValue: true}},
			}
		})), want: wantIs(ErrInvalid)},
		{name: "wrong arity", msg: wGraph(wInput(1, 2), wOp(2, KindAdd, []int64{2}, 1)), want: wantAs(func(t *testing.T, e *ArityError) {
			require.Equal(t, ArityError{Node: 2, Kind: KindAdd, Min: 2, Max: 2, Got: 1}, *e)
		})},
		{name: "input with inputs", msg: wGraph(wInput(1, 2), with(wInput(2, 2), func(n *rookeryv1.Node) { n.Inputs = []int64{1} })), want: wantAs[*ArityError]()},
		{name: "constant without value", msg: wGraph(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, nil)), want: wantIs(ErrInvalid)},
		{name: "value shape differs", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, []int64{2}), func(n *rookeryv1.Node) {
			n.Value = wF64([]int64{1, 2}, 1, 2)
		})), want: wantAs[*ShapeError]()},
		{name: "value dtype differs", msg: wGraph(with(wNode(1, "constant", rookeryv1.Role_ROLE_CONSTANT, []int64{2}), func(n *rookeryv1.Node) {
			n.Value = &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT32, Shape: []int64{2}, Data: make([]byte, 8)}
		})), want: wantIs(ErrInvalid)},
		{name: "too many attributes", msg: wGraph(with(wInput(1, 2), func(n *rookeryv1.Node) { n.Attrs = attrs })), lim: Limits{MaxAttrs: 4}, want: wantLimit("attributes")},
		{name: "too many attribute elements", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindSum, []int64{2}, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "axes", Value: &rookeryv1.Attr_Axes{Axes: &rookeryv1.Ints{Values: []int64{0, 1, 0}}}}}
		})), lim: Limits{MaxAttrElements: 2}, want: wantLimit("attribute elements")},
		{name: "too many attribute floats", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindSum, []int64{2}, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "axes", Value: &rookeryv1.Attr_Floats{Floats: &rookeryv1.Floats{Values: []float64{0, 1, 0}}}}}
		})), lim: Limits{MaxAttrElements: 2}, want: wantLimit("attribute elements")},
		{name: "attribute string too long", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindSum, []int64{2}, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "axes", Value: &rookeryv1.Attr_StringValue{StringValue: "abc"}}}
		})), lim: Limits{MaxAttrElements: 2}, want: wantLimit("attribute elements")},
		{name: "too many inputs", msg: wGraph(wInput(1, 2), wOp(2, KindConcat, []int64{8}, 1, 1, 1, 1)), lim: Limits{MaxInputs: 3}, want: wantLimit("inputs")},
		{name: "name too long", msg: wGraph(with(wInput(1, 2), func(n *rookeryv1.Node) { n.Name = "abcdef" })), lim: Limits{MaxNameLen: 5}, want: wantLimit("name bytes")},
		{name: "kind too long", msg: wGraph(wInput(1, 2)), lim: Limits{MaxNameLen: 4}, want: wantLimit("name bytes")},
		{name: "attribute name too long", msg: wGraph(wInput(1, 2, 2), with(wOp(2, KindSum, []int64{2}, 1), func(n *rookeryv1.Node) {
			n.Attrs = []*rookeryv1.Attr{{Name: "axes", Value: &rookeryv1.Attr_Axes{Axes: &rookeryv1.Ints{Values: []int64{1}}}}}
		})), lim: Limits{MaxNameLen: 3}, want: wantLimit("name bytes")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.raw
			if tt.msg != nil {
				var err error
				b, err = proto.Marshal(tt.msg)
				require.NoError(t, err)

				_, err = DecodeGraph(tt.msg, tt.lim)
				require.Error(t, err, "DecodeGraph")
				tt.want(t, err)
			}
			g, err := Decode(b, tt.lim)
			require.Error(t, err, "Decode")
			require.Nil(t, g)
			tt.want(t, err)

			if tt.lim == (Limits{}) {
				var g Graph
				require.Error(t, g.UnmarshalBinary(b), "UnmarshalBinary")
			}
		})
	}
}

func TestEnumsMatchIR(t *testing.T) {
	dtypes := map[DType]rookeryv1.DType{
		Float64: rookeryv1.DType_DTYPE_FLOAT64,
		Float32: rookeryv1.DType_DTYPE_FLOAT32,
		Int:     rookeryv1.DType_DTYPE_INT64,
		Bool:    rookeryv1.DType_DTYPE_BOOL,
	}
	for d, pd := range dtypes {
		require.Equal(t, pd, rookeryv1.DType(d), "encoding %v", d)
		got, err := dtypeFromProto(pd)
		require.NoError(t, err)
		require.Equal(t, d, got, "decoding %v", pd)
	}
	roles := map[Role]rookeryv1.Role{
		RoleInput:     rookeryv1.Role_ROLE_INPUT,
		RoleLearnable: rookeryv1.Role_ROLE_LEARNABLE,
		RoleConstant:  rookeryv1.Role_ROLE_CONSTANT,
		RoleOp:        rookeryv1.Role_ROLE_OP,
	}
	for r, pr := range roles {
		require.Equal(t, pr, rookeryv1.Role(r), "encoding %v", r)
		got, err := roleFromProto(pr)
		require.NoError(t, err)
		require.Equal(t, r, got, "decoding %v", pr)
	}
}

// TestAttrRoundTrip covers every attribute type, including those that no op
// takes yet.
func TestAttrRoundTrip(t *testing.T) {
	tests := []Attr{
		IntAttr("i", -7),
		IntAttr("zero", 0),
		FloatAttr("f", codecNaN64),
		FloatAttr("negzero", codecNegZero),
		BoolAttr("b", true),
		BoolAttr("false", false),
		StringAttr("s", "héllo"),
		StringAttr("empty", ""),
		IntsAttr("ints", 1, -2, math.MaxInt),
		IntsAttr("none"),
		FloatsAttr("floats", 1.5, codecNaN64, math.Inf(-1)),
		FloatsAttr("nofloats"),
		ShapeAttr("shape", 2, 3),
		ShapeAttr("scalar"),
		AxesAttr("axes", 0, 2),
		TensorAttr("t", codecDense([]int{2}, []float32{1, codecNaN32})),
	}
	for _, want := range tests {
		t.Run(want.Name, func(t *testing.T) {
			pa, err := encodeAttr(want, false)
			require.NoError(t, err)
			b, err := proto.Marshal(pa)
			require.NoError(t, err)
			var back rookeryv1.Attr
			require.NoError(t, proto.Unmarshal(b, &back))
			require.NoError(t, checkWireAttr(&back, defaultLimits))
			got, err := decodeAttr(&back, defaultLimits)
			require.NoError(t, err)
			requireSameAttr(t, want.Name, want, got)
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	node := func(f func(n *Node)) *Graph {
		n := Node{ID: 1, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{2}, DType: Float64}
		f(&n)
		return &Graph{nodes: []Node{n}, index: map[int64]int{1: 0}}
	}
	tests := []struct {
		name string
		g    *Graph
	}{
		{"nil graph", nil},
		{"bad dtype", node(func(n *Node) { n.DType = 9 })},
		{"bad role", node(func(n *Node) { n.Role = RoleInvalid })},
		{"name not UTF-8", node(func(n *Node) { n.Name = "\xff" })},
		{"kind not UTF-8", node(func(n *Node) { n.Op.Kind = "\xfe" })},
		{"attribute name not UTF-8", node(func(n *Node) { n.Op.Attrs = []Attr{BoolAttr("\xff", true)} })},
		{"string attribute not UTF-8", node(func(n *Node) { n.Op.Attrs = []Attr{StringAttr("s", "\xff")} })},
		{"attribute without type", node(func(n *Node) { n.Op.Attrs = []Attr{{Name: "a"}} })},
		{"tensor attribute without tensor", node(func(n *Node) { n.Op.Attrs = []Attr{{Name: "a", Type: AttrTensor}} })},
		{"bad tensor attribute", node(func(n *Node) {
			n.Op.Attrs = []Attr{TensorAttr("a", tensor.New(tensor.WithShape(2), tensor.WithBacking([]int32{1, 2})))}
		})},
		{"bad value", node(func(n *Node) { n.Value = tensor.New(tensor.WithShape(2), tensor.WithBacking([]uint8{1, 2})) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.g.MarshalBinary()
			require.ErrorIs(t, err, ErrInvalid)
			_, err = EncodeGraph(tt.g)
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}

func TestUnmarshalBinaryKeepsGraphOnError(t *testing.T) {
	g := codecChain(t, 2)
	require.Error(t, g.UnmarshalBinary([]byte{0xff}))
	require.Equal(t, 3, g.Len())

	var nilGraph *Graph
	require.ErrorIs(t, nilGraph.UnmarshalBinary(nil), ErrInvalid)
}

func ExampleGraph_MarshalBinary() {
	g := New()
	g.MustAdd(Node{ID: 1, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{2, 3}, DType: Float64, Name: "x"})
	g.MustAdd(Node{ID: 2, Role: RoleLearnable, Op: NewOp(KindInput), Shape: Shape{3, 1}, DType: Float64, Name: "w",
		Value: tensor.New(tensor.WithShape(3, 1), tensor.WithBacking([]float64{0.5, -1, 2}))})
	g.MustAdd(Node{ID: 3, Role: RoleOp, Op: NewOp(KindMatMul), Inputs: []int64{1, 2}, Shape: Shape{2, 1}, DType: Float64, Name: "y"})

	b, err := g.MarshalBinary()
	if err != nil {
		fmt.Println(err)
		return
	}
	var back Graph
	if err := back.UnmarshalBinary(b); err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range back.Nodes() {
		fmt.Println(n.ID, n.Role, n.Op.Kind, n.Shape, n.Inputs, n.Name)
	}
	w, _ := back.Node(2)
	fmt.Println("w =", w.Value.Data())

	// Bytes from elsewhere are checked against limits before anything is built.
	_, err = Decode(b, Limits{MaxNodes: 2})
	fmt.Println(err)
	// Output:
	// 1 input input [2 3] [] x
	// 2 learnable input [3 1] [] w
	// 3 op matmul [2 1] [1 2] y
	// w = [0.5 -1 2]
	// graph: nodes: 3 exceeds the limit of 2
}

func BenchmarkMarshalBinary(b *testing.B) {
	g := codecBenchGraph(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data, err := codecBenchGraph(b).MarshalBinary()
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// codecBenchGraph is a chain of 1000 ops with a 1 MiB parameter.
func codecBenchGraph(b *testing.B) *Graph {
	g := codecChain(b, 1000)
	require.NoError(b, g.Add(Node{ID: -1, Role: RoleLearnable, Op: NewOp(KindInput), Shape: Shape{256, 512}, DType: Float64,
		Value: codecDense([]int{256, 512}, make([]float64, 256*512))}))
	return g
}

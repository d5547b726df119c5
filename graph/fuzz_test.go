package graph

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// codecOpSeeds returns small graphs, one per op: inputs of the given
// shapes and one op node whose shape is what the op computes (learnt from
// the ShapeError that Add gives for a wrong guess). Ops that cannot be built
// this way are left out: they are seeds, not tests.
func codecOpSeeds(tb testing.TB) []*Graph {
	type seed struct {
		op     Op
		dt     DType // of the result
		inputs []Shape
	}
	seeds := []seed{
		{NewOp(KindAdd), Float64, []Shape{{2, 3}, {2, 3}}},
		{NewOp(KindPow), Float64, []Shape{{2, 3}, nil}},
		{NewOp(KindLt, BoolAttr("ret_same", true)), Float64, []Shape{{3}, {3}}},
		{NewOp(KindBroadcastAdd, AxesAttr("right", 0)), Float64, []Shape{{2, 3}, {3}}},
		{NewOp(KindBroadcastGte, AxesAttr("left", 1), BoolAttr("ret_same", false)), Bool, []Shape{{2}, {2, 3}}},
		{NewOp(KindAbs), Float64, []Shape{{4}}},
		{NewOp(KindMatVec, BoolAttr("trans_a", true)), Float64, []Shape{{3, 2}, {3}}},
		{NewOp(KindVecDot), Float64, []Shape{{3}, {3}}},
		{NewOp(KindOuter), Float64, []Shape{{2}, {3}}},
		{NewOp(KindBatchedMatMul, BoolAttr("trans_b", true)), Float64, []Shape{{2, 2, 3}, {2, 4, 3}}},
		{NewOp(KindMax, AxesAttr("axes", 0)), Float64, []Shape{{2, 3}}},
		{NewOp(KindSlice, IntAttr("axis", 1), IntAttr("start", 0), IntAttr("end", 2), IntAttr("step", 1)), Float64, []Shape{{2, 3}}},
		{NewOp(KindSlice, IntAttr("axis", 0), BoolAttr("all", true)), Float64, []Shape{{2, 3}}},
		{NewOp(KindConcat, IntAttr("axis", 0)), Float64, []Shape{{2, 3}, {1, 3}}},
		{NewOp(KindSizeOf, IntAttr("axis", 1)), Float64, []Shape{{2, 3}}},
		{NewOp(KindIm2Col, ShapeAttr("kernel", 2, 2), ShapeAttr("pad", 0, 0), ShapeAttr("stride", 1, 1), ShapeAttr("dilation", 1, 1)), Float64, []Shape{{1, 1, 4, 4}}},
		{NewOp(KindMaxPool2D, ShapeAttr("kernel", 2, 2), ShapeAttr("pad", 0, 0, 0, 0), ShapeAttr("stride", 2, 2)), Float64, []Shape{{1, 1, 4, 4}}},
		{NewOp(KindAvgPool2D, ShapeAttr("kernel", 2, 2), ShapeAttr("pad", 1, 1, 1, 1), ShapeAttr("stride", 1, 1)), Float64, []Shape{{1, 2, 3, 3}}},
		{NewOp(KindGlobalAvgPool2D), Float64, []Shape{{1, 2, 3, 3}}},
	}
	var out []*Graph
	for _, s := range seeds {
		g := New()
		var ids []int64
		for i, sh := range s.inputs {
			id := int64(i + 1)
			if err := g.Add(Node{ID: id, Role: RoleInput, Op: NewOp(KindInput), Shape: sh, DType: Float64}); err != nil {
				tb.Fatalf("seed %s: %v", s.op.Kind, err)
			}
			ids = append(ids, id)
		}
		n := Node{ID: 100, Role: RoleOp, Op: s.op, Inputs: ids, DType: s.dt}
		for range 3 {
			err := g.Add(n)
			if err == nil {
				out = append(out, g)
				break
			}
			var se *ShapeError
			if !errors.As(err, &se) || se.Want == nil {
				tb.Logf("seed %s: %v", s.op.Kind, err)
				break
			}
			n.Shape = se.Want
		}
	}
	// Repeat takes its count from a constant.
	g := New()
	g.MustAdd(Node{ID: 1, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{2, 3}, DType: Float64})
	g.MustAdd(Node{ID: 2, Role: RoleConstant, Op: NewOp(KindConstant), DType: Float64, Value: codecDense(nil, []float64{2})})
	if err := g.Add(Node{ID: 3, Role: RoleOp, Op: NewOp(KindRepeat, IntAttr("axis", 0)), Inputs: []int64{1, 2}, Shape: Shape{4, 3}, DType: Float64}); err != nil {
		tb.Logf("seed repeat: %v", err)
	} else {
		out = append(out, g)
	}
	return out
}

// requireTypedDecodeError checks that a decoding error is one that callers
// can branch on.
func requireTypedDecodeError(t *testing.T, err error) {
	t.Helper()
	require.NotErrorIs(t, err, errCheckPanicked, "a check panicked")
	for _, target := range []error{ErrMalformed, ErrInvalid, ErrLimit, ErrVersion, ErrDuplicateID} {
		if errors.Is(err, target) {
			return
		}
	}
	t.Fatalf("decoding error %v (%T) matches none of the package's sentinels", err, err)
}

// FuzzUnmarshalBinary feeds arbitrary bytes to the graph decoder. It must
// never panic (nor recover from a panic in a node's checks); what it accepts must be a valid graph that encodes to bytes
// that decode to the same graph and encode to the same bytes again.
func FuzzUnmarshalBinary(f *testing.F) {
	graphs := append([]*Graph{New(), codecSampleGraph(f), codecChain(f, 5)}, codecOpSeeds(f)...)
	for _, g := range graphs {
		b, err := g.MarshalBinary()
		require.NoError(f, err)
		f.Add(b)

		// The same graph with its nodes in reverse order.
		pb, err := EncodeGraph(g)
		require.NoError(f, err)
		slices.Reverse(pb.Nodes)
		b, err = proto.Marshal(pb)
		require.NoError(f, err)
		f.Add(b)
	}
	for _, garbage := range [][]byte{nil, {0xff}, {0x08, 0x01, 0x12}, {0x08, 0x01, 0x12, 0x02, 0x08, 0x01}, []byte("rookery")} {
		f.Add(garbage)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		var g Graph
		if err := g.UnmarshalBinary(b); err != nil {
			requireTypedDecodeError(t, err)
			return
		}
		require.NoError(t, g.Validate())
		b2, err := g.MarshalBinary()
		require.NoError(t, err, "re-encoding a decoded graph")
		g2, err := Decode(b2, DefaultLimits)
		require.NoError(t, err, "decoding a re-encoded graph")
		requireSameGraph(t, &g, g2)
		b3, err := g2.MarshalBinary()
		require.NoError(t, err)
		require.True(t, bytes.Equal(b2, b3), "encode(decode(encode(g))) differs from encode(g)")
	})
}

// FuzzDecodeTensor feeds arbitrary rookery.v1 Tensor messages to the tensor
// decoder. It must never panic; what it accepts must encode back to the
// very same dtype, shape and bytes.
func TestCodecOpSeeds(t *testing.T) {
	seeds := codecOpSeeds(t)
	t.Logf("%d op seeds", len(seeds))
	require.Len(t, seeds, 20, "every op seed builds")
	for _, g := range seeds {
		b, err := g.MarshalBinary()
		require.NoError(t, err)
		got, err := Decode(b, Limits{})
		require.NoError(t, err)
		requireSameGraph(t, g, got)
	}
}

func TestAddDecodedRecovers(t *testing.T) {
	broken := &Graph{} // no index map: Add panics writing to it
	err := addDecoded(broken, Node{ID: 1, Role: RoleInput, Op: NewOp(KindInput), DType: Float64})
	require.ErrorIs(t, err, errCheckPanicked)
	require.ErrorIs(t, err, ErrInvalid)
}

func FuzzDecodeTensor(f *testing.F) {
	seeds := []*tensor.Dense{
		codecDense([]int{2, 2}, []float64{1, codecNaN64, codecNegZero, 4}),
		codecDense(nil, []float64{3}),
		codecDense([]int{3}, []float32{codecNaN32, 1, 2}),
		codecDense([]int{1, 2}, []int{-1, 1 << 40}),
		codecDense([]int{2}, []bool{true, false}),
	}
	for _, d := range seeds {
		pb, err := EncodeTensor(d)
		require.NoError(f, err)
		b, err := proto.Marshal(pb)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x04, 0x12, 0x01, 0x02, 0x1a, 0x02, 0x01, 0x02})

	lim := Limits{MaxElements: 1 << 16}
	f.Fuzz(func(t *testing.T, b []byte) {
		var pb rookeryv1.Tensor
		if proto.Unmarshal(b, &pb) != nil {
			return
		}
		d, err := DecodeTensor(&pb, lim)
		if err != nil {
			require.Nil(t, d)
			requireTypedDecodeError(t, err)
			return
		}
		back, err := EncodeTensor(d)
		require.NoError(t, err, "re-encoding a decoded tensor")
		require.Equal(t, pb.Dtype, back.Dtype)
		require.Equal(t, len(pb.Shape), len(back.Shape))
		if len(pb.Shape) > 0 {
			require.Equal(t, pb.Shape, back.Shape)
		}
		require.True(t, bytes.Equal(pb.Data, back.Data), "data changed: got %x, want %x", back.Data, pb.Data)
	})
}

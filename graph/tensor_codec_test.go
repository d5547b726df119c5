package graph

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

func TestTensorRoundTrip(t *testing.T) {
	transposed := codecDense([]int{2, 3}, []float64{1, 2, 3, 4, 5, 6})
	require.NoError(t, transposed.T())
	big := codecDense([]int{3, 3}, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9})
	col, err := big.Slice(nil, tensor.S(1))
	require.NoError(t, err)
	row, err := big.Slice(tensor.S(2))
	require.NoError(t, err)
	elem, err := big.Slice(tensor.S(1), tensor.S(2))
	require.NoError(t, err)

	tests := []struct {
		name      string
		in        *tensor.Dense
		wantShape []int
		wantBits  []uint64
		wantData  []byte // wire bytes, when given
	}{
		{name: "float64", in: codecDense([]int{2}, []float64{1, codecNaN64}), wantShape: []int{2},
			wantData: []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0xef, 0xbe, 0xad, 0xde, 0, 0, 0xf0, 0x7f}},
		{name: "float64 scalar", in: tensor.New(tensor.FromScalar(2.5)), wantShape: []int{}, wantBits: []uint64{math.Float64bits(2.5)}},
		{name: "float64 shape 1", in: codecDense([]int{1}, []float64{3}), wantShape: []int{1}},
		{name: "float32", in: codecDense([]int{1, 3}, []float32{codecNaN32, -0.5, 1}), wantShape: []int{1, 3},
			wantData: []byte{0xad, 0x0b, 0x80, 0x7f, 0, 0, 0, 0xbf, 0, 0, 0x80, 0x3f}},
		{name: "float32 scalar", in: tensor.New(tensor.FromScalar(float32(1.25))), wantShape: []int{}},
		{name: "int", in: codecDense([]int{3}, []int{-1, 2, math.MaxInt}), wantShape: []int{3}},
		{name: "int scalar", in: tensor.New(tensor.FromScalar(-9)), wantShape: []int{}},
		{name: "int64 becomes int", in: codecDense([]int{2}, []int64{-2, 1 << 62}), wantShape: []int{2},
			wantData: []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x40}},
		{name: "bool", in: codecDense([]int{3}, []bool{true, false, true}), wantShape: []int{3}, wantData: []byte{1, 0, 1}},
		{name: "bool scalar", in: tensor.New(tensor.FromScalar(true)), wantShape: []int{}, wantData: []byte{1}},
		{name: "transposed view", in: transposed, wantShape: []int{3, 2}, wantBits: bitsOf(1, 4, 2, 5, 3, 6)},
		{name: "column view", in: col.(*tensor.Dense), wantShape: []int{3}, wantBits: bitsOf(2, 5, 8)},
		{name: "row view", in: row.(*tensor.Dense), wantShape: []int{3}, wantBits: bitsOf(7, 8, 9)},
		{name: "element view", in: elem.(*tensor.Dense), wantShape: []int{}, wantBits: bitsOf(6)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pb, err := EncodeTensor(tt.in)
			require.NoError(t, err)
			if tt.wantData != nil {
				require.Equal(t, tt.wantData, pb.Data)
			}
			b, err := proto.Marshal(pb)
			require.NoError(t, err)
			var back rookeryv1.Tensor
			require.NoError(t, proto.Unmarshal(b, &back))
			got, err := DecodeTensor(&back, Limits{})
			require.NoError(t, err)
			require.Equal(t, tt.wantShape, []int(got.Shape()))
			require.True(t, got.IsScalar() == (len(tt.wantShape) == 0))
			want := tt.wantBits
			if want == nil {
				want = tensorBits(t, tt.in)
			}
			require.Equal(t, want, tensorBits(t, got))
			wdt, _ := DTypeOf(tt.in.Dtype())
			gdt, _ := DTypeOf(got.Dtype())
			require.Equal(t, wdt, gdt)
			if wdt == Int {
				require.Equal(t, tensor.Int, got.Dtype())
			}
		})
	}
}

func bitsOf(v ...float64) []uint64 {
	out := make([]uint64, len(v))
	for i, x := range v {
		out[i] = math.Float64bits(x)
	}
	return out
}

func TestEncodeTensorSharesNoMemory(t *testing.T) {
	backing := []float64{1, 2}
	pb, err := EncodeTensor(codecDense([]int{2}, backing))
	require.NoError(t, err)
	clear(pb.Data)
	require.Equal(t, []float64{1, 2}, backing)

	pb = &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT64, Shape: []int64{1}, Data: putFloat64s([]float64{3}, false, false)}
	d, err := DecodeTensor(pb, Limits{})
	require.NoError(t, err)
	clear(pb.Data)
	require.Equal(t, []float64{3}, d.Data())
}

// TestPortableConversions checks that the element-by-element conversions,
// used where memory cannot be copied as a block, agree with the block
// copies.
func TestPortableConversions(t *testing.T) {
	f64 := []float64{1, codecNaN64, codecNegZero, math.Inf(1), -3.25}
	f32 := []float32{1, codecNaN32, float32(codecNegZero), -3.25}
	i64 := []int64{0, -1, math.MinInt64, math.MaxInt64, 1 << 33}
	is := []int{0, -1, math.MinInt, math.MaxInt, 1 << 33}

	slow := putFloat64s(f64, false, false)
	if nativeLittleEndian {
		require.Equal(t, putFloat64s(f64, false, true), slow)
		require.Equal(t, putFloat32s(f32, false, true), putFloat32s(f32, false, false))
		require.Equal(t, putInt64s(i64, false, true), putInt64s(i64, false, false))
		if nativeInt64 {
			require.Equal(t, putInts(is, false, true), putInts(is, false, false))
		}
	}
	require.Equal(t, bitsOf(f64...), bitsOf(getFloat64s(slow, len(f64), false)...))
	require.Equal(t, bitsOf(f64...), bitsOf(getFloat64s(slow, len(f64), nativeLittleEndian)...))

	b32 := putFloat32s(f32, false, false)
	for _, fast := range []bool{false, nativeLittleEndian} {
		got := getFloat32s(b32, len(f32), fast)
		for i := range f32 {
			require.Equal(t, math.Float32bits(f32[i]), math.Float32bits(got[i]), "fast=%v element %d", fast, i)
		}
		gotInts, err := getInts(putInt64s(i64, false, false), len(i64), fast && nativeInt64)
		require.NoError(t, err)
		for i := range i64 {
			require.Equal(t, i64[i], int64(gotInts[i]), "fast=%v element %d", fast, i)
		}
	}
	require.Equal(t, putInt64s(i64, false, false), putInts(is, false, false))
	// Aliasing hands back the slice's own memory.
	alias := putFloat64s(f64, true, nativeLittleEndian)
	if nativeLittleEndian {
		clear(alias[:8])
		require.Equal(t, 0.0, f64[0])
	}
}

func TestEncodeTensorErrors(t *testing.T) {
	masked := codecDense([]int{2}, []float64{1, 2})
	masked.ResetMask(false)
	tests := []struct {
		name string
		in   *tensor.Dense
	}{
		{"nil", nil},
		{"empty", &tensor.Dense{}},
		{"int32", codecDense([]int{2}, []int32{1, 2})},
		{"zero dimension", tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(2, 0))},
		{"column-major", tensor.New(tensor.WithShape(2, 2), tensor.AsFortran([]float64{1, 2, 3, 4}))},
		{"masked", masked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := EncodeTensor(tt.in)
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}

func TestDecodeTensorErrors(t *testing.T) {
	tests := []struct {
		name string
		in   *rookeryv1.Tensor
		lim  Limits
		want errCheck
	}{
		{"nil", nil, Limits{}, wantIs(ErrMalformed)},
		{"unspecified dtype", &rookeryv1.Tensor{Data: make([]byte, 8)}, Limits{}, wantIs(ErrMalformed)},
		{"unknown dtype", &rookeryv1.Tensor{Dtype: 5, Data: make([]byte, 8)}, Limits{}, wantIs(ErrMalformed)},
		{"rank", wF64([]int64{1, 1, 1}, 1), Limits{MaxRank: 2}, wantLimit("rank")},
		{"elements", wF64([]int64{3, 3}, make([]float64, 9)...), Limits{MaxElements: 8}, wantLimit("elements")},
		{"overflow", &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_BOOL, Shape: []int64{1 << 32, 1 << 32, 1 << 32}}, Limits{MaxElements: math.MaxInt64}, wantLimit("elements")},
		{"data bytes overflow", &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT64, Shape: []int64{1 << 62}}, Limits{MaxElements: math.MaxInt64}, wantIs(ErrMalformed)},
		{"zero dimension", wF64([]int64{2, 0}), Limits{}, wantIs(ErrMalformed)},
		{"negative dimension", wF64([]int64{-1}), Limits{}, wantIs(ErrMalformed)},
		{"short data", wF64([]int64{2}, 1), Limits{}, wantIs(ErrMalformed)},
		{"long data", wF64([]int64{}, 1, 2), Limits{}, wantIs(ErrMalformed)},
		{"no data", &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT32}, Limits{}, wantIs(ErrMalformed)},
		{"odd float32 data", &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT32, Shape: []int64{1}, Data: make([]byte, 5)}, Limits{}, wantIs(ErrMalformed)},
		{"bool byte", &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_BOOL, Shape: []int64{3}, Data: []byte{0, 1, 0xff}}, Limits{}, wantIs(ErrMalformed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := DecodeTensor(tt.in, tt.lim)
			require.Error(t, err)
			require.Nil(t, d)
			tt.want(t, err)
		})
	}
}

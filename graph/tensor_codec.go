package graph

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"unsafe"

	"gorgonia.org/tensor"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// nativeLittleEndian reports whether this machine stores numbers little-endian,
// in which case tensor data is copied as whole blocks of memory.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// nativeInt64 reports whether Go's int is 64 bits wide, as int64 on the wire.
const nativeInt64 = math.MaxInt == math.MaxInt64

// EncodeTensor returns the wire form of a dense tensor: dtype, shape and
// the elements in row-major order as raw little-endian bytes. Int and Int64
// tensors both travel as DTYPE_INT64. Views (slices, transposes) are
// materialized first; masked and column-major tensors, and shapes with a
// zero dimension, are rejected with an error matching ErrInvalid. The
// message shares no memory with t.
func EncodeTensor(t *tensor.Dense) (*rookeryv1.Tensor, error) {
	return encodeTensor(t, false)
}

func encodeTensor(t *tensor.Dense, alias bool) (*rookeryv1.Tensor, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: nil tensor", ErrInvalid)
	}
	dt, err := DTypeOf(t.Dtype())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if t.IsMasked() {
		return nil, fmt.Errorf("%w: masked tensors are not supported", ErrInvalid)
	}
	if t.DataOrder().IsColMajor() {
		return nil, fmt.Errorf("%w: column-major tensors are not supported", ErrInvalid)
	}
	if t.IsMaterializable() || t.RequiresIterator() {
		m, ok := t.Materialize().(*tensor.Dense)
		if !ok {
			return nil, fmt.Errorf("%w: tensor view does not materialize to a dense tensor", ErrInvalid)
		}
		t, alias = m, true // m is ours
	}
	shape := t.Shape()
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return nil, fmt.Errorf("%w: tensor shape %v has a dimension that is not positive", ErrInvalid, shape)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt/8 {
			return nil, fmt.Errorf("%w: tensor shape %v is too large", ErrInvalid, shape)
		}
		n = int(lo)
	}
	pb := &rookeryv1.Tensor{Dtype: rookeryv1.DType(dt), Shape: int64sToWire(shape)}
	raw, err := denseData(t)
	if err != nil {
		return nil, err
	}
	short := func(have int) error {
		return fmt.Errorf("%w: tensor of shape %v holds %d elements", ErrInvalid, shape, have)
	}
	switch v := raw.(type) {
	case []float64:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putFloat64s(v[:n], alias, nativeLittleEndian)
	case float64:
		pb.Data = putFloat64s([]float64{v}, true, nativeLittleEndian)
	case []float32:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putFloat32s(v[:n], alias, nativeLittleEndian)
	case float32:
		pb.Data = putFloat32s([]float32{v}, true, nativeLittleEndian)
	case []int:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putInts(v[:n], alias, nativeLittleEndian && nativeInt64)
	case int:
		pb.Data = putInts([]int{v}, true, nativeLittleEndian && nativeInt64)
	case []int64:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putInt64s(v[:n], alias, nativeLittleEndian)
	case int64:
		pb.Data = putInt64s([]int64{v}, true, nativeLittleEndian)
	case []bool:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putBools(v[:n])
	case bool:
		pb.Data = putBools([]bool{v})
	default:
		return nil, fmt.Errorf("%w: tensor data of type %T", ErrInvalid, raw)
	}
	return pb, nil
}

// denseData returns t.Data(), which panics on a tensor without backing
// memory, as an error instead.
func denseData(t *tensor.Dense) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: tensor has no data: %v", ErrInvalid, r)
		}
	}()
	return t.Data(), nil
}

// DecodeTensor rebuilds a dense, row-major tensor from its wire form after
// checking it against lim: a known dtype, rank at most MaxRank, positive
// dimensions whose product is at most MaxElements, data of exactly that
// many elements, and bool bytes that are 0 or 1. DTYPE_INT64 becomes an
// Int (Go int) tensor. Errors are a *LimitError or match ErrMalformed.
func DecodeTensor(pb *rookeryv1.Tensor, lim Limits) (*tensor.Dense, error) {
	lim = lim.orDefault()
	n, err := wireTensorSize(pb, lim)
	if err != nil {
		return nil, err
	}
	shape := make([]int, len(pb.Shape))
	for i, d := range pb.Shape {
		shape[i] = int(d) // checked by wireTensorSize
	}
	var backing any
	switch pb.Dtype {
	case rookeryv1.DType_DTYPE_FLOAT64:
		backing = getFloat64s(pb.Data, n, nativeLittleEndian)
	case rookeryv1.DType_DTYPE_FLOAT32:
		backing = getFloat32s(pb.Data, n, nativeLittleEndian)
	case rookeryv1.DType_DTYPE_INT64:
		v, err := getInts(pb.Data, n, nativeLittleEndian && nativeInt64)
		if err != nil {
			return nil, err
		}
		backing = v
	case rookeryv1.DType_DTYPE_BOOL:
		v, err := getBools(pb.Data, n)
		if err != nil {
			return nil, err
		}
		backing = v
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing)), nil
}

// The put functions return the little-endian bytes of s. With fast (only
// on a little-endian machine, and for ints only where int is 64 bits) they
// copy memory as a block, or with alias return s's own memory; otherwise
// they convert element by element.

func putFloat64s(s []float64, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*8), alias)
	}
	b := make([]byte, len(s)*8)
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[i*8:], math.Float64bits(v))
	}
	return b
}

func putFloat32s(s []float32, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*4), alias)
	}
	b := make([]byte, len(s)*4)
	for i, v := range s {
		binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(v))
	}
	return b
}

func putInt64s(s []int64, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*8), alias)
	}
	b := make([]byte, len(s)*8)
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[i*8:], uint64(v))
	}
	return b
}

// putInts: fast requires a 64-bit int.
func putInts(s []int, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*8), alias)
	}
	b := make([]byte, len(s)*8)
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[i*8:], uint64(int64(v)))
	}
	return b
}

func putBools(s []bool) []byte {
	b := make([]byte, len(s))
	for i, v := range s {
		if v {
			b[i] = 1
		}
	}
	return b
}

func memBytes(m []byte, alias bool) []byte {
	if alias {
		return m
	}
	return slices.Clone(m)
}

// The get functions convert exactly n elements' worth of little-endian
// bytes (checked by the caller) into a new slice.

func getFloat64s(b []byte, n int, fast bool) []float64 {
	s := make([]float64, n)
	if fast {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n*8), b)
		return s
	}
	for i := range s {
		s[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[i*8:]))
	}
	return s
}

func getFloat32s(b []byte, n int, fast bool) []float32 {
	s := make([]float32, n)
	if fast {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n*4), b)
		return s
	}
	for i := range s {
		s[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[i*4:]))
	}
	return s
}

// getInts: fast requires a 64-bit int. Without it, each value must fit in
// an int.
func getInts(b []byte, n int, fast bool) ([]int, error) {
	s := make([]int, n)
	if fast {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n*8), b)
		return s, nil
	}
	for i := range s {
		v := int64(binary.LittleEndian.Uint64(b[i*8:]))
		if v < math.MinInt || v > math.MaxInt {
			return nil, fmt.Errorf("%w: tensor element %d: %d does not fit in an int", ErrMalformed, i, v)
		}
		s[i] = int(v)
	}
	return s, nil
}

func getBools(b []byte, n int) ([]bool, error) {
	s := make([]bool, n)
	for i, c := range b[:n] {
		switch c {
		case 0:
		case 1:
			s[i] = true
		default:
			return nil, fmt.Errorf("%w: bool tensor element %d is byte %d, want 0 or 1", ErrMalformed, i, c)
		}
	}
	return s, nil
}

// checkWireTensor checks a tensor message's dtype, shape and data length.
func checkWireTensor(t *rookeryv1.Tensor, lim Limits) error {
	_, err := wireTensorSize(t, lim)
	return err
}

// wireTensorSize checks t and returns its element count.
func wireTensorSize(t *rookeryv1.Tensor, lim Limits) (int, error) {
	dt, n, err := TensorSize(t, lim)
	if err != nil {
		return 0, err
	}
	size := int64(dt.Size())
	if hi, lo := bits.Mul64(uint64(n), uint64(size)); hi != 0 || lo != uint64(len(t.Data)) {
		return 0, fmt.Errorf("%w: tensor %v %v holds %d bytes of data, want %d elements of %d bytes", ErrMalformed, dt, t.Shape, len(t.Data), n, size)
	}
	return int(n), nil
}

// wireDimError says that a dimension is not positive.
type wireDimError struct {
	Axis int
	Dim  int64
}

func (e *wireDimError) Error() string {
	return fmt.Sprintf("dimension %d is %d, must be positive", e.Axis, e.Dim)
}

// checkWireDims checks a shape from the wire: rank, positive dimensions, and the
// product of the dimensions, which it returns, against MaxElements (with
// checked multiplication).
func checkWireDims(dims []int64, lim Limits) (int64, error) {
	if len(dims) > lim.MaxRank {
		return 0, &LimitError{What: "rank", Limit: int64(lim.MaxRank), Got: int64(len(dims))}
	}
	n := int64(1)
	for i, d := range dims {
		if d <= 0 {
			return 0, &wireDimError{Axis: i, Dim: d}
		}
		if d > math.MaxInt {
			return 0, &LimitError{What: "dimension", Limit: math.MaxInt, Got: d}
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, &LimitError{What: "elements", Limit: lim.MaxElements, Got: math.MaxInt64}
		}
		n = int64(lo)
		if n > lim.MaxElements {
			return 0, &LimitError{What: "elements", Limit: lim.MaxElements, Got: n}
		}
	}
	return n, nil
}

// shapeFromWire converts a shape from the wire for an error message.
func shapeFromWire(dims []int64) Shape {
	s := make(Shape, len(dims))
	for i, d := range dims {
		s[i] = int(max(min(d, math.MaxInt), math.MinInt))
	}
	return s
}

func dtypeFromProto(d rookeryv1.DType) (DType, error) {
	switch d {
	case rookeryv1.DType_DTYPE_FLOAT64:
		return Float64, nil
	case rookeryv1.DType_DTYPE_FLOAT32:
		return Float32, nil
	case rookeryv1.DType_DTYPE_INT64:
		return Int, nil
	case rookeryv1.DType_DTYPE_BOOL:
		return Bool, nil
	case rookeryv1.DType_DTYPE_UNSPECIFIED:
		return DTypeInvalid, fmt.Errorf("%w: dtype unspecified", ErrMalformed)
	}
	return DTypeInvalid, fmt.Errorf("%w: unknown dtype enum value %d", ErrMalformed, int32(d))
}

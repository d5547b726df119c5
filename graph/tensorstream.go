package graph

import (
	"errors"
	"fmt"

	"gorgonia.org/tensor"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Tensors that travel in pieces: a reader checks the dtype and shape
// before any data has arrived, and both ends move the data straight from
// and into a tensor's own memory where it has the wire layout.

// TensorSize checks the dtype and shape of a tensor's wire form against
// lim as DecodeTensor does, but not its data, and returns the dtype and
// the number of elements. A reader that receives the data in pieces calls
// it before allocating anything. Errors are a *LimitError or match
// ErrMalformed.
func TensorSize(pb *rookeryv1.Tensor, lim Limits) (DType, int64, error) {
	lim = lim.orDefault()
	if pb == nil {
		return DTypeInvalid, 0, fmt.Errorf("%w: tensor missing", ErrMalformed)
	}
	dt, err := dtypeFromProto(pb.Dtype)
	if err != nil {
		return DTypeInvalid, 0, fmt.Errorf("tensor: %w", err)
	}
	n, err := checkWireDims(pb.Shape, lim)
	if err != nil {
		var nonPos *wireDimError
		if errors.As(err, &nonPos) {
			return DTypeInvalid, 0, fmt.Errorf("%w: tensor shape %v: %w", ErrMalformed, pb.Shape, err)
		}
		return DTypeInvalid, 0, fmt.Errorf("tensor: %w", err)
	}
	return dt, n, nil
}

// TensorMemory returns the backing memory of t as the bytes of its wire
// form (EncodeTensor's data), without copying, where the two are the
// same: a row-major, contiguous, unmasked tensor with at least one
// dimension, of float64, float32, int64 or (where Go's int has 64 bits)
// int elements, on a little-endian machine. Writing into b writes into t.
// ok is false for every other tensor; EncodeTensor and DecodeTensor
// convert those.
func TensorMemory(t *tensor.Dense) (b []byte, ok bool) {
	if t == nil || !nativeLittleEndian || t.Dims() == 0 || t.IsMaterializable() || t.RequiresIterator() || t.IsMasked() || t.DataOrder().IsColMajor() {
		return nil, false
	}
	n := t.Shape().TotalSize()
	raw, err := denseData(t)
	if err != nil || n <= 0 {
		return nil, false
	}
	switch v := raw.(type) {
	case []float64:
		if len(v) >= n {
			return putFloat64s(v[:n], true, true), true
		}
	case []float32:
		if len(v) >= n {
			return putFloat32s(v[:n], true, true), true
		}
	case []int64:
		if len(v) >= n {
			return putInt64s(v[:n], true, true), true
		}
	case []int:
		if nativeInt64 && len(v) >= n {
			return putInts(v[:n], true, true), true
		}
	}
	return nil, false
}

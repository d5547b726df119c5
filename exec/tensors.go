package exec

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// copyDense copies src into dst; both have the same float dtype and size.
func copyDense(dst, src *tensor.Dense) {
	switch dst.Dtype() {
	case tensor.Float64:
		copy(dst.Float64s(), src.Float64s())
	case tensor.Float32:
		copy(dst.Float32s(), src.Float32s())
	default:
		tensor.Copy(dst, src)
	}
}

// addDense adds src into dst; both have the same float dtype and size.
func addDense(dst, src *tensor.Dense) {
	switch dst.Dtype() {
	case tensor.Float64:
		addInto(dst.Float64s(), src.Float64s())
	case tensor.Float32:
		addInto(dst.Float32s(), src.Float32s())
	}
}

func addInto[T float32 | float64](dst, src []T) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// cloneDense returns a contiguous copy of t.
func cloneDense(t *tensor.Dense) *tensor.Dense {
	c := tensor.New(tensor.Of(t.Dtype()), tensor.WithShape(t.Shape().Clone()...))
	if t.IsMaterializable() {
		m := t.Materialize().(*tensor.Dense)
		copyDense(c, m)
		return c
	}
	copyDense(c, t)
	return c
}

// zerosLike returns a new zero tensor with t's dtype and shape.
func zerosLike(dt tensor.Dtype, shape graph.Shape) *tensor.Dense {
	if len(shape) == 0 {
		if dt == tensor.Float32 {
			return tensor.New(tensor.FromScalar(float32(0)))
		}
		if dt == tensor.Float64 {
			return tensor.New(tensor.FromScalar(float64(0)))
		}
		return tensor.New(tensor.Of(dt), tensor.WithShape())
	}
	return tensor.New(tensor.Of(dt), tensor.WithShape(shape...))
}

// checkTensor compares t against node n; it returns a FeedError or nil.
func checkTensor(part, mb int, n *graph.Node, t *tensor.Dense) error {
	if t == nil {
		return &FeedError{Part: part, Node: n.ID, MicroBatch: mb, Reason: "nil tensor"}
	}
	want, err := n.DType.Tensor()
	if err != nil {
		return &FeedError{Part: part, Node: n.ID, MicroBatch: mb, Reason: err.Error()}
	}
	if t.Dtype() != want {
		return &FeedError{Part: part, Node: n.ID, MicroBatch: mb, WantDType: want.String(), GotDType: t.Dtype().String()}
	}
	if !shapeEq(t.Shape(), n.Shape) {
		return &FeedError{Part: part, Node: n.ID, MicroBatch: mb, Want: n.Shape.Clone(), Got: graph.Shape(t.Shape().Clone())}
	}
	return nil
}

// shapeEq compares a tensor shape with an IR shape; scalars match () and (1).
func shapeEq(s tensor.Shape, g graph.Shape) bool {
	if len(g) == 0 {
		return s.IsScalar() || (len(s) == 1 && s[0] == 1)
	}
	if len(s) != len(g) {
		return false
	}
	for i := range s {
		if s[i] != g[i] {
			return false
		}
	}
	return true
}

// scalarValue returns a Gorgonia scalar holding the value of a 0-d tensor.
func scalarValue(t *tensor.Dense) gorgonia.Value {
	if t.Dtype() == tensor.Float32 {
		return gorgonia.NewF32(t.Float32s()[0])
	}
	return gorgonia.NewF64(t.Float64s()[0])
}

// setScalar stores the value of a 0-d tensor in a Gorgonia scalar.
func setScalar(v gorgonia.Value, t *tensor.Dense) {
	switch v := v.(type) {
	case *gorgonia.F32:
		*v = gorgonia.F32(t.Float32s()[0])
	case *gorgonia.F64:
		*v = gorgonia.F64(t.Float64s()[0])
	}
}

// stackRows returns the matrices ts, all with the same columns, one under
// the other (ts[0] itself when there is one).
func stackRows(ts []*tensor.Dense) *tensor.Dense {
	if len(ts) == 1 {
		return ts[0]
	}
	rows, cols := 0, ts[0].Shape()[1]
	for _, t := range ts {
		rows += t.Shape()[0]
	}
	out := tensor.New(tensor.Of(ts[0].Dtype()), tensor.WithShape(rows, cols))
	off := 0
	for _, t := range ts {
		n := t.Shape().TotalSize()
		switch out.Dtype() {
		case tensor.Float64:
			copy(out.Float64s()[off:off+n], t.Float64s())
		case tensor.Float32:
			copy(out.Float32s()[off:off+n], t.Float32s())
		}
		off += n
	}
	return out
}

// gemmTN sets c = alpha·aᵀ·b + beta·c for row-major a (r×k), b (r×n), c
// (k×n).
func gemmTN(c, a, b *tensor.Dense, alpha, beta float64) error {
	r, k, n := a.Shape()[0], a.Shape()[1], b.Shape()[1]
	if b.Shape()[0] != r || c.Shape().TotalSize() != k*n || a.Dtype() != c.Dtype() || b.Dtype() != c.Dtype() {
		return fmt.Errorf("exec: gradient product of %v and %v into %v", a.Shape(), b.Shape(), c.Shape())
	}
	impl := gorgonia.WhichBLAS() // the BLAS Gorgonia's own products use (see blas_openblas.go)
	switch c.Dtype() {
	case tensor.Float64:
		impl.Dgemm(blas.Trans, blas.NoTrans, k, n, r, alpha, a.Float64s(), k, b.Float64s(), n, beta, c.Float64s(), n)
	case tensor.Float32:
		impl.Sgemm(blas.Trans, blas.NoTrans, k, n, r, float32(alpha), a.Float32s(), k, b.Float32s(), n, float32(beta), c.Float32s(), n)
	default:
		return fmt.Errorf("exec: gradient product in %v", c.Dtype())
	}
	return nil
}

package guard

import (
	"fmt"
	"math"
	"sort"

	"gorgonia.org/tensor"
)

// Tolerance is how far two results may differ and still agree: elements a
// and b agree when |a−b| ≤ Abs + Rel·max(|a|, |b|). NaN agrees only with
// NaN; non-float tensors must be equal.
type Tolerance struct {
	Rel, Abs float64
}

// Default tolerances. Replicas running the same executor kind give
// bit-identical results; these leave room for another BLAS or a GPU
// summing in another order, and are still far below what a lie that
// changes the model (noise, a flipped sign, a stale value) moves.
var (
	DefaultFloat64 = Tolerance{Rel: 1e-9, Abs: 1e-12}
	DefaultFloat32 = Tolerance{Rel: 1e-4, Abs: 1e-6}
)

// diff describes where two results part.
type diff struct {
	key       string
	index     int
	got, want float64
	reason    string
}

// compareMaps compares got with want, keys in sorted order, and returns
// the first difference, or nil when they agree.
func compareMaps(got, want map[string]*tensor.Dense, t64, t32 Tolerance) *diff {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(got) != len(want) {
		for k := range got {
			if _, ok := want[k]; !ok {
				return &diff{key: k, reason: "unexpected result"}
			}
		}
	}
	for _, k := range keys {
		g, ok := got[k]
		if !ok {
			return &diff{key: k, reason: "missing result"}
		}
		if d := compareDense(g, want[k], t64, t32); d != nil {
			d.key = k
			return d
		}
	}
	return nil
}

func compareDense(got, want *tensor.Dense, t64, t32 Tolerance) *diff {
	if got == nil || want == nil {
		if got == want {
			return nil
		}
		return &diff{reason: "nil tensor"}
	}
	if got.Dtype() != want.Dtype() {
		return &diff{reason: fmt.Sprintf("dtype %v, want %v", got.Dtype(), want.Dtype())}
	}
	if !got.Shape().Eq(want.Shape()) {
		return &diff{reason: fmt.Sprintf("shape %v, want %v", got.Shape(), want.Shape())}
	}
	got, want = materialize(got), materialize(want)
	switch got.Dtype() {
	case tensor.Float64:
		return compareFloats(got.Float64s(), want.Float64s(), t64)
	case tensor.Float32:
		return compareFloats(got.Float32s(), want.Float32s(), t32)
	}
	gd, wd := got.Data(), want.Data()
	if fmt.Sprint(gd) != fmt.Sprint(wd) {
		return &diff{reason: fmt.Sprintf("%v, want %v", gd, wd)}
	}
	return nil
}

func materialize(t *tensor.Dense) *tensor.Dense {
	if !t.IsNativelyAccessible() || t.RequiresIterator() {
		return t.Materialize().(*tensor.Dense)
	}
	return t
}

func compareFloats[T float32 | float64](got, want []T, tol Tolerance) *diff {
	for i := range want {
		a, b := float64(got[i]), float64(want[i])
		if agree(a, b, tol) {
			continue
		}
		return &diff{index: i, got: a, want: b}
	}
	return nil
}

func agree(a, b float64, tol Tolerance) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if a == b { // also equal infinities
		return true
	}
	return math.Abs(a-b) <= tol.Abs+tol.Rel*math.Max(math.Abs(a), math.Abs(b))
}

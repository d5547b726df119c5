package exec

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"
)

// seqSum is weightedSum as one loop: every element summed in float64 in
// replica order, then rounded to the gradients' dtype.
func seqSum(gs []*tensor.Dense, w []float64) []float64 {
	acc := make([]float64, gs[0].Shape().TotalSize())
	for i, g := range gs {
		switch d := g.Data().(type) {
		case []float64:
			for j, v := range d {
				acc[j] += float64(w[i] * v)
			}
		case []float32:
			for j, v := range d {
				acc[j] += float64(w[i] * float64(v))
			}
		}
	}
	return acc
}

// TestWeightedSumBitIdentical checks that the parallel sum over element
// ranges gives exactly the sequential sum, on sizes that are not
// multiples of the ranges.
func TestWeightedSumBitIdentical(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, n := range []int{1, 3, sumBlock - 1, sumBlock + 1, 3*sumBlock + 17, 100003} {
		for _, r := range []int{1, 2, 3, 5} {
			for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
				t.Run(fmt.Sprintf("n=%d/r=%d/%v", n, r, dt), func(t *testing.T) {
					gs := make([]*tensor.Dense, r)
					w := make([]float64, r)
					for i := range gs {
						w[i] = rng.Float64()
						if dt == tensor.Float32 {
							d := make([]float32, n)
							for j := range d {
								d[j] = float32(rng.NormFloat64() * math.Exp(rng.Float64()*20-10))
							}
							gs[i] = tensor.New(tensor.WithShape(n), tensor.WithBacking(d))
						} else {
							d := make([]float64, n)
							for j := range d {
								d[j] = rng.NormFloat64() * math.Exp(rng.Float64()*20-10)
							}
							gs[i] = tensor.New(tensor.WithShape(n), tensor.WithBacking(d))
						}
					}
					want := seqSum(gs, w)
					got, err := weightedSum(gs, w)
					if err != nil {
						t.Fatal(err)
					}
					check(t, got, want)
					// Added as the replicas arrive: one, then one
					// more, then the rest; into reused sums too.
					for _, scratch := range [][]float64{nil, make([]float64, n+5)} {
						p := partialSum{scratch: scratch}
						for lo := 0; lo < r; {
							hi := min(lo+max(lo, 1), r)
							if err := p.add(gs[lo:hi], w[lo:hi], hi == r); err != nil {
								t.Fatal(err)
							}
							lo = hi
						}
						check(t, p.result(), want)
					}
				})
			}
		}
	}
}

func check(t *testing.T, got *tensor.Dense, want []float64) {
	t.Helper()
	for j, v := range want {
		var g float64
		switch d := got.Data().(type) {
		case []float32:
			g, v = float64(d[j]), float64(float32(v))
		case []float64:
			g = d[j]
		}
		if math.Float64bits(g) != math.Float64bits(v) {
			t.Fatalf("element %d: got %v, want %v", j, g, v)
		}
	}
}

// TestWeightedSumNegativeZero: a sum of negative zeros starts from +0,
// as the sequential sum does, so it is +0.
func TestWeightedSumNegativeZero(t *testing.T) {
	nz := math.Copysign(0, -1)
	g := tensor.New(tensor.WithShape(1), tensor.WithBacking([]float64{nz}))
	got, err := weightedSum([]*tensor.Dense{g, g}, []float64{1, 1})
	if err != nil || math.Signbit(got.Data().([]float64)[0]) {
		t.Errorf("-0 + -0 = %v, %v; want +0", got, err)
	}
}

func TestWeightedSumScalarsAndErrors(t *testing.T) {
	got, err := weightedSum([]*tensor.Dense{tensor.New(tensor.FromScalar(float32(2))), tensor.New(tensor.FromScalar(float32(4)))}, []float64{0.25, 0.75})
	if err != nil || !got.Shape().IsScalar() || got.Data().(float32) != 3.5 {
		t.Errorf("scalar sum = %v, %v; want the scalar 3.5", got, err)
	}
	a := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{1, 2}))
	b := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{1, 2}))
	if _, err := weightedSum([]*tensor.Dense{a, b}, []float64{1, 1}); err == nil {
		t.Error("sum of float32 and float64 gradients: no error")
	}
	c := tensor.New(tensor.WithShape(3), tensor.WithBacking([]float32{1, 2, 3}))
	if _, err := weightedSum([]*tensor.Dense{a, c}, []float64{1, 1}); err == nil {
		t.Error("sum of gradients of different sizes: no error")
	}
}

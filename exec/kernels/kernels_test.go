package kernels

import (
	"math"
	"math/rand"
	"testing"

	"github.com/rookery-ml/rookery/internal/gemm"
)

func TestTreeRouteCycle(t *testing.T) {
	tree := []float64{0, 0.5, 1, 0, 0.5, 0, -1, 0, 0}
	var out [1]float64
	if err := TreeRoute([]float64{0}, 1, tree, out[:]); err == nil {
		t.Fatal("got no error for a tree with a cycle")
	}
}

// TestMatMulTopK compares MatMulTopK with TopK of the product, values and
// columns, in both dtypes, on products wider than one block (so that the
// search carries over blocks) and with ties, NaN and k = n.
func TestMatMulTopK(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, tc := range []struct{ m, d, n, k int }{{1, 1, 1, 1}, {3, 4, 7, 7}, {5, 3, 40, 4}, {7, 5, 300, 9}, {300, 6, 3000, 21}} {
		a := make([]float64, tc.m*tc.d)
		b := make([]float64, tc.d*tc.n)
		for i := range a {
			a[i] = float64(rng.Intn(5) - 2) // small integers: many equal products
		}
		for i := range b {
			b[i] = float64(rng.Intn(5) - 2)
		}
		prod := make([]float64, tc.m*tc.n)
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				for l := 0; l < tc.d; l++ {
					prod[i*tc.n+j] += a[i*tc.d+l] * b[l*tc.n+j]
				}
			}
		}
		wantV := make([]float64, tc.m*tc.k)
		wantI := make([]float64, tc.m*tc.k)
		TopK(prod, tc.m, tc.n, tc.k, false, wantV)
		TopK(prod, tc.m, tc.n, tc.k, true, wantI)
		for _, f32 := range []bool{false, true} {
			for _, block := range []int{matMulTopKBlock, 4 << 10} { // 4 KiB: blocks of 8 or 16 rows by 64 columns
				defer func(v int) { matMulTopKBlock = v }(matMulTopKBlock)
				matMulTopKBlock = block
				var got []float64
				if f32 {
					a32, b32 := make([]float32, len(a)), make([]float32, len(b))
					for i, v := range a {
						a32[i] = float32(v)
					}
					for i, v := range b {
						b32[i] = float32(v)
					}
					o := make([]float32, tc.m*2*tc.k)
					MatMulTopK(gemm.Implementation{}, a32, b32, tc.m, tc.d, tc.n, tc.k, o)
					for _, v := range o {
						got = append(got, float64(v))
					}
				} else {
					got = make([]float64, tc.m*2*tc.k)
					MatMulTopK(gemm.Implementation{}, a, b, tc.m, tc.d, tc.n, tc.k, got)
				}
				for i := 0; i < tc.m; i++ {
					for j := 0; j < tc.k; j++ {
						gv, gi := got[i*2*tc.k+j], got[i*2*tc.k+tc.k+j]
						wv, wi := wantV[i*tc.k+j], wantI[i*tc.k+j]
						if gi != wi || gv != wv && !(math.IsInf(gv, 1) && math.IsInf(wv, 1)) {
							t.Fatalf("%v f32=%v block %d: row %d rank %d: got (%v, col %v), want (%v, col %v)", tc, f32, block, i, j, gv, gi, wv, wi)
						}
					}
				}
			}
		}
	}
}

// BenchmarkMatMulTopK searches the 10 nearest of 1,000 float32 queries
// among 20,000 points of 64 features.
func BenchmarkMatMulTopK(b *testing.B) {
	const m, d, n, k = 1000, 64, 20000, 10
	rng := rand.New(rand.NewSource(1))
	x, y := make([]float32, m*d), make([]float32, d*n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i := range y {
		y[i] = float32(rng.NormFloat64())
	}
	out := make([]float32, m*2*k)
	for b.Loop() {
		MatMulTopK(gemm.Implementation{}, x, y, m, d, n, k, out)
	}
}

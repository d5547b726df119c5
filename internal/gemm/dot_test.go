package gemm

import (
	"math"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// TestSgemmNT checks SgemmNT against gonum's Sgemm on shapes that fill
// its 4×4 blocks and shapes that do not, with k a multiple of 16 and not,
// beta 0 and not, and leading dimensions wider than the matrices.
func TestSgemmNT(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, s := range []struct{ m, n, k int }{
		{4, 4, 16}, {8, 25, 2304}, {16, 200, 320}, {5, 7, 33}, {4, 9, 100}, {13, 4, 17}, {3, 8, 64}, {8, 3, 64}, {6, 6, 15},
	} {
		for _, beta := range []float32{0, 1, 0.5} {
			lda, ldb, ldc := s.k+3, s.k+5, s.n+2
			a, b := make([]float32, s.m*lda), make([]float32, s.n*ldb)
			for i := range a {
				a[i] = float32(rng.NormFloat64())
			}
			for i := range b {
				b[i] = float32(rng.NormFloat64())
			}
			c := make([]float32, s.m*ldc)
			for i := range c {
				c[i] = float32(rng.NormFloat64())
			}
			want := append([]float32{}, c...)
			gonum.Implementation{}.Sgemm(blas.NoTrans, blas.Trans, s.m, s.n, s.k, 1, a, lda, b, ldb, beta, want, ldc)
			SgemmNT(s.m, s.n, s.k, a, lda, b, ldb, beta, c, ldc)
			for i := range c {
				if d := math.Abs(float64(c[i] - want[i])); d > 1e-3*math.Max(1, math.Abs(float64(want[i]))) {
					t.Fatalf("%dx%dx%d beta %v: c[%d] = %v, want %v", s.m, s.n, s.k, beta, i, c[i], want[i])
				}
			}
		}
	}
}

// BenchmarkSgemmNT compares SgemmNT with the blocked product on the
// filter gradients of the CNN of examples/cnn (a chunk of 4 and of 5
// images).
func BenchmarkSgemmNT(b *testing.B) {
	for _, s := range []struct {
		name    string
		m, n, k int
	}{{"conv1-8x25x2304", 8, 25, 2304}, {"conv2-16x200x320", 16, 200, 320}} {
		a, bb, c := make([]float32, s.m*s.k), make([]float32, s.n*s.k), make([]float32, s.m*s.n)
		b.Run(s.name+"/dot", func(b *testing.B) {
			for range b.N {
				SgemmNT(s.m, s.n, s.k, a, s.k, bb, s.k, 0, c, s.n)
			}
			b.ReportMetric(float64(2*s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
		b.Run(s.name+"/blocked", func(b *testing.B) {
			for range b.N {
				Implementation{}.Sgemm(blas.NoTrans, blas.Trans, s.m, s.n, s.k, 1, a, s.k, bb, s.k, 0, c, s.n)
			}
			b.ReportMetric(float64(2*s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

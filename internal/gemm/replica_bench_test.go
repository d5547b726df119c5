package gemm

import (
	"fmt"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// BenchmarkRowsPerReplica reports GFLOPS of the large float32 products of
// a training step of the 784-1024-1024-10 MLP on a replica's share of a
// mini-batch of 256 rows (32 to 256 rows): the two forward products, the
// hidden layer's gradient dY·Wᵀ and the two weight gradients, as the
// native executor issues them with row-major operands. Run it with
// GOMAXPROCS=1 for one provider's core.
func BenchmarkRowsPerReplica(b *testing.B) {
	type prod struct {
		tA, tB  blas.Transpose
		m, n, k int
	}
	a := make([]float32, 1024*1024)
	bb := make([]float32, 1024*1024)
	c := make([]float32, 1024*1024)
	for i := range a {
		a[i] = float32(i%7) - 3
		bb[i] = float32(i%5) - 2
	}
	ld := func(t blas.Transpose, r, c int) int {
		if t == blas.NoTrans {
			return c
		}
		return r
	}
	for _, rows := range []int{32, 64, 128, 256} {
		for _, s := range []prod{
			{blas.NoTrans, blas.NoTrans, rows, 1024, 784},  // X·W1
			{blas.NoTrans, blas.NoTrans, rows, 1024, 1024}, // H1·W2
			{blas.NoTrans, blas.Trans, rows, 1024, 1024},   // dH2·W2ᵀ
			{blas.Trans, blas.NoTrans, 1024, 1024, rows},   // H1ᵀ·dH2
			{blas.Trans, blas.NoTrans, 784, 1024, rows},    // Xᵀ·dH1
		} {
			b.Run(fmt.Sprintf("rows=%d/%c%c-%dx%dx%d", rows, s.tA, s.tB, s.m, s.k, s.n), func(b *testing.B) {
				for b.Loop() {
					Implementation{}.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, ld(s.tA, s.m, s.k), bb, ld(s.tB, s.k, s.n), 1, c, s.n)
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

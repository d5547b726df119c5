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

// BenchmarkRowsPerReplicaCold runs the same five products as a replica's
// step does: each on its own operands (the two weight matrices, their
// gradients and a replica's activations, as in the native executor), and,
// with the timer stopped, streams a ring member's exchange through memory
// between steps (exchange=11MB: what a member of a 4-replica ring sends
// and receives of the MLP's 7.5 MB of gradients). So the weights come
// from memory rather than from the caches of a repeated product, as they
// do in training. It reports the products' GFLOPS and their time per row
// of the replica's share. Run it with GOMAXPROCS=1.
func BenchmarkRowsPerReplicaCold(b *testing.B) {
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(i%7) - 3
		}
		return s
	}
	w1, w2, g1, g2 := fill(784*1024), fill(1024*1024), fill(784*1024), fill(1024*1024)
	for _, mb := range []int{0, 11} {
		src, dst := make([]byte, mb<<20), make([]byte, mb<<20)
		for _, rows := range []int{32, 64, 128, 256} {
			x, h1, h2, dh2, dh1 := fill(rows*784), fill(rows*1024), fill(rows*1024), fill(rows*1024), fill(rows*1024)
			b.Run(fmt.Sprintf("exchange=%dMB/rows=%d", mb, rows), func(b *testing.B) {
				im := Implementation{}
				for b.Loop() {
					im.Sgemm(blas.NoTrans, blas.NoTrans, rows, 1024, 784, 1, x, 784, w1, 1024, 0, h1, 1024)
					im.Sgemm(blas.NoTrans, blas.NoTrans, rows, 1024, 1024, 1, h1, 1024, w2, 1024, 0, h2, 1024)
					im.Sgemm(blas.NoTrans, blas.Trans, rows, 1024, 1024, 1, dh2, 1024, w2, 1024, 0, dh1, 1024)
					im.Sgemm(blas.Trans, blas.NoTrans, 1024, 1024, rows, 1, h1, 1024, dh2, 1024, 0, g2, 1024)
					im.Sgemm(blas.Trans, blas.NoTrans, 784, 1024, rows, 1, x, 784, dh1, 1024, 0, g1, 1024)
					if mb > 0 {
						b.StopTimer()
						copy(dst, src)
						copy(src, dst)
						b.StartTimer()
					}
				}
				flops := 2 * float64(rows) * (2*784*1024 + 3*1024*1024)
				s := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(flops/s/1e9, "GFLOPS")
				b.ReportMetric(s*1e9/float64(rows), "ns/row")
			})
		}
	}
}

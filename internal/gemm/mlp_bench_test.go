package gemm

import (
	"fmt"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// BenchmarkMLPStep runs the float32 products of one training step of a
// 784-256-10 MLP at batch 64, as Gorgonia issues them: the two forward
// products, and the backward ones for the weight gradients and the
// hidden layer's gradient.
func BenchmarkMLPStep(b *testing.B) {
	type prod struct {
		tA, tB  blas.Transpose
		m, n, k int
	}
	steps := []prod{
		{blas.NoTrans, blas.NoTrans, 64, 256, 784}, // X·W1
		{blas.NoTrans, blas.NoTrans, 64, 10, 256},  // H·W2
		{blas.Trans, blas.NoTrans, 256, 10, 64},    // Hᵀ·dY
		{blas.NoTrans, blas.Trans, 64, 256, 10},    // dY·W2ᵀ
		{blas.Trans, blas.NoTrans, 784, 256, 64},   // Xᵀ·dH
	}
	buf := make([]float32, 784*256)
	for i := range buf {
		buf[i] = float32(i%9) - 4
	}
	ld := func(t blas.Transpose, r, c int) int {
		if t == blas.NoTrans {
			return c
		}
		return r
	}
	for _, impl := range []struct {
		name string
		f    func(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	}{{"gonum", gonum.Implementation{}.Sgemm}, {"rookery", Implementation{}.Sgemm}} {
		for _, s := range append([]prod{{}}, steps...) {
			name := impl.name + "/step"
			if s.m != 0 {
				name = fmt.Sprintf("%s/%c%c-%dx%dx%d", impl.name, s.tA, s.tB, s.m, s.k, s.n)
			}
			run := steps
			if s.m != 0 {
				run = []prod{s}
			}
			b.Run(name, func(b *testing.B) {
				c := make([]float32, 784*256)
				flops := 0
				for _, p := range run {
					flops += 2 * p.m * p.n * p.k
				}
				for b.Loop() {
					for _, p := range run {
						impl.f(p.tA, p.tB, p.m, p.n, p.k, 1, buf, ld(p.tA, p.m, p.k), buf, ld(p.tB, p.k, p.n), 0, c, p.n)
					}
				}
				b.ReportMetric(float64(flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

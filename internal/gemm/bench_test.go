package gemm

import (
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// benchShapes are m×k×n: the MLP's first layer at batch 64, a wider layer
// at batch 256, and a square product.
var benchShapes = []shape{{m: 64, k: 784, n: 256}, {m: 256, k: 784, n: 1024}, {m: 1024, k: 1024, n: 1024}}

// BenchmarkSgemm and BenchmarkDgemm report GFLOPS of C = A·B for
// Implementation (with each kernel this CPU runs) and for gonum's BLAS, in
// the same run, so that their ratio is measured under the same load.
func BenchmarkSgemm(b *testing.B) {
	for _, s := range benchShapes {
		a, bb, c := make([]float32, s.m*s.k), make([]float32, s.k*s.n), make([]float32, s.m*s.n)
		for i := range a {
			a[i] = float32(i%7) - 3
		}
		for i := range bb {
			bb[i] = float32(i%5) - 2
		}
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", s.m, s.k, s.n, name), func(b *testing.B) {
				for b.Loop() {
					f()
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
		run("gonum", func() {
			gonum.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, s.m, s.n, s.k, 1, a, s.k, bb, s.n, 0, c, s.n)
		})
		for _, kn := range kernels32 {
			if !kn.ok {
				continue
			}
			kn = kn.block(4)
			run("rookery-"+kn.name, func() {
				p := args[float32]{m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: s.k, b: bb, ldb: s.n, c: c, ldc: s.n}
				gemm(&kn, pools32, &p)
			})
		}
	}
}

func BenchmarkDgemm(b *testing.B) {
	for _, s := range benchShapes {
		a, bb, c := make([]float64, s.m*s.k), make([]float64, s.k*s.n), make([]float64, s.m*s.n)
		for i := range a {
			a[i] = float64(i%7) - 3
		}
		for i := range bb {
			bb[i] = float64(i%5) - 2
		}
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", s.m, s.k, s.n, name), func(b *testing.B) {
				for b.Loop() {
					f()
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
		run("gonum", func() {
			gonum.Implementation{}.Dgemm(blas.NoTrans, blas.NoTrans, s.m, s.n, s.k, 1, a, s.k, bb, s.n, 0, c, s.n)
		})
		for _, kn := range kernels64 {
			if !kn.ok {
				continue
			}
			kn = kn.block(8)
			run("rookery-"+kn.name, func() {
				p := args[float64]{m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: s.k, b: bb, ldb: s.n, c: c, ldc: s.n}
				gemm(&kn, pools64, &p)
			})
		}
	}
}

// BenchmarkSplit times products around parallelMin on one goroutine
// and split across GOMAXPROCS, to show where splitting pays (run it with
// GOMAXPROCS of 2 or more).
func BenchmarkSplit(b *testing.B) {
	old := parallelMin
	defer func() { parallelMin = old }()
	for _, s := range [][3]int{{64, 784, 256}, {256, 256, 256}, {320, 320, 320}, {256, 784, 256}} {
		m, k, n := s[0], s[1], s[2]
		a, bb, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
		for _, mode := range []struct {
			name string
			min  int
		}{{"one", math.MaxInt}, {"split", 1}} {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", m, k, n, mode.name), func(b *testing.B) {
				parallelMin = mode.min
				for b.Loop() {
					Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, bb, n, 0, c, n)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

package gemm

import (
	"fmt"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// BenchmarkNarrow measures float64 products with a narrow result, those of
// a 10-class linear model on 30,000 rows of 784 features: the scores X·W
// and the gradient Xᵀ·R. "packed" packs A as for any other product.
func BenchmarkNarrow(b *testing.B) {
	const rows, feat, classes = 30000, 784, 10
	x := make([]float64, rows*feat)
	for i := range x {
		x[i] = float64(i%11) - 5
	}
	w := make([]float64, feat*classes)
	r := make([]float64, rows*classes)
	out := make([]float64, rows*classes)
	prods := []struct {
		name    string
		tA      blas.Transpose
		m, n, k int
		a, b    []float64
		lda     int
	}{
		{"XW", blas.NoTrans, rows, classes, feat, x, w, feat},
		{"XtR", blas.Trans, feat, classes, rows, x, r, feat},
	}
	for _, p := range prods {
		flops := 2 * float64(p.m*p.n*p.k)
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("%s/%s", p.name, name), func(b *testing.B) {
				for b.Loop() {
					f()
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
		run("gonum", func() {
			gonum.Implementation{}.Dgemm(p.tA, blas.NoTrans, p.m, p.n, p.k, 1, p.a, p.lda, p.b, p.n, 0, out, p.n)
		})
		run("rookery", func() {
			Implementation{}.Dgemm(p.tA, blas.NoTrans, p.m, p.n, p.k, 1, p.a, p.lda, p.b, p.n, 0, out, p.n)
		})
		run("rookery-packed", func() {
			defer func(v int) { directAPanels = v }(directAPanels)
			directAPanels = 0
			Implementation{}.Dgemm(p.tA, blas.NoTrans, p.m, p.n, p.k, 1, p.a, p.lda, p.b, p.n, 0, out, p.n)
		})
	}
}

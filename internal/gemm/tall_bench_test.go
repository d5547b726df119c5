package gemm

import (
	"fmt"
	"testing"
)

// BenchmarkTall reports GFLOPS of X·Cᵀ for a tall X (a k-means shard:
// 30,000 rows of 785) and a few rows of C (the centres of 4 restarts of
// 10), with A read in place for up to 2 and up to 3 panels of B.
func BenchmarkTall(b *testing.B) {
	const m, k = 30000, 785
	for _, n := range []int{30, 40} {
		for _, panels := range []int{2, 3} {
			b.Run(fmt.Sprintf("n=%d/directAPanels=%d", n, panels), func(b *testing.B) {
				x, c, out := make([]float64, m*k), make([]float64, n*k), make([]float64, m*n)
				for i := range x {
					x[i] = float64(i%7) - 3
				}
				for i := range c {
					c[i] = float64(i%5) - 2
				}
				defer func(v int) { directAPanels = v }(directAPanels)
				directAPanels = panels
				kn := kern64
				for b.Loop() {
					p := args[float64]{m: m, n: n, k: k, alpha: 1, a: x, lda: k, b: c, ldb: k, bTrans: true, c: out, ldc: n}
					gemm(&kn, pools64, &p)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

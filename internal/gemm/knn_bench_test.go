package gemm

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkDistance reports GFLOPS of the nearest-neighbour distance
// product C = Q·Xᵀ (Q: m queries × k features, X: n rows × k), in both
// precisions, on all cores and on one.
func BenchmarkDistance(b *testing.B) {
	const m, k, n = 256, 785, 30000
	for _, procs := range []int{runtime.GOMAXPROCS(0), 1} {
		b.Run(fmt.Sprintf("f64/procs=%d", procs), func(b *testing.B) {
			q, x, c := make([]float64, m*k), make([]float64, n*k), make([]float64, m*n)
			for i := range q {
				q[i] = float64(i%7) - 3
			}
			for i := range x {
				x[i] = float64(i%5) - 2
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			kn := kern64
			for b.Loop() {
				p := args[float64]{m: m, n: n, k: k, alpha: 1, a: q, lda: k, b: x, ldb: k, bTrans: true, c: c, ldc: n}
				gemm(&kn, pools64, &p)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
		b.Run(fmt.Sprintf("f32-kxn/procs=%d", procs), func(b *testing.B) {
			q, x, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
			for i := range q {
				q[i] = float32(i%7) - 3
			}
			for i := range x {
				x[i] = float32(i%5) - 2
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			kn := kern32
			for b.Loop() {
				p := args[float32]{m: m, n: n, k: k, alpha: 1, a: q, lda: k, b: x, ldb: n, c: c, ldc: n}
				gemm(&kn, pools32, &p)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
		b.Run(fmt.Sprintf("f32/procs=%d", procs), func(b *testing.B) {
			q, x, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
			for i := range q {
				q[i] = float32(i%7) - 3
			}
			for i := range x {
				x[i] = float32(i%5) - 2
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			kn := kern32
			for b.Loop() {
				p := args[float32]{m: m, n: n, k: k, alpha: 1, a: q, lda: k, b: x, ldb: k, bTrans: true, c: c, ldc: n}
				gemm(&kn, pools32, &p)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

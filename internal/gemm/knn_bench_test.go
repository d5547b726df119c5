package gemm

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkDistance reports GFLOPS of the nearest-neighbour product of m
// queries (rows of k) with a shard of n rows, on all cores and on one:
// with the shard's rows as the rows of B read transposed (Q·Xᵀ), and as
// its columns (Q·X, X stored k×n), which a product with few rows of A
// reads in place instead of packing.
func BenchmarkDistance(b *testing.B) {
	for _, procs := range []int{runtime.GOMAXPROCS(0), 1} {
		distance(b, "f64", kern64, pools64, procs)
		distance(b, "f32", kern32, pools32, procs)
	}
}

func distance[T float](b *testing.B, name string, kn kernel[T], pl *pools[T], procs int) {
	const m, k, n = 256, 785, 30000
	for _, cols := range []bool{false, true} {
		layout := "rows"
		if cols {
			layout = "columns"
		}
		b.Run(fmt.Sprintf("%s/%s/procs=%d", name, layout, procs), func(b *testing.B) {
			q, x, c := make([]T, m*k), make([]T, n*k), make([]T, m*n)
			for i := range q {
				q[i] = T(i%7) - 3
			}
			for i := range x {
				x[i] = T(i%5) - 2
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			for b.Loop() {
				p := args[T]{m: m, n: n, k: k, alpha: 1, a: q, lda: k, b: x, ldb: k, bTrans: true, c: c, ldc: n}
				if cols {
					p.ldb, p.bTrans = n, false
				}
				gemm(&kn, pl, &p)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

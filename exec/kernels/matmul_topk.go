package kernels

import (
	"math"
	"runtime"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
)

// matMulTopKBlock is the most bytes of the product that MatMulTopK holds
// at once: a block small enough to stay in the shared cache between its
// product and its search, and large enough for the product to run near
// the BLAS's full speed (with 2 MiB, ravml's KNN predicts MNIST in 4.8 s
// against 10 s for the whole product then top_k; not tuned further). It
// also bounds the op's scratch memory, whatever the shapes a graph names.
var matMulTopKBlock = 2 << 20

// BLAS is the matrix product that MatMulTopK computes with: the Sgemm and
// Dgemm of a gonum BLAS (blas.Float32 and blas.Float64), such as Rookery's
// internal gemm or gonum's pure-Go implementation.
type BLAS interface {
	Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
}

// MatMulTopK writes into out (m×2k), for each row of a·b (a: m×d, b:
// d×n, both row-major), its k smallest values in ascending order and then
// their columns, ties broken by the lower column. A NaN counts as +Inf
// (and ties with +Inf by column). The product is computed a block at a
// time by impl, and each block is searched while it is in cache.
func MatMulTopK[T float32 | float64](impl BLAS, a, b []T, m, d, n, k int, out []T) {
	var z T
	es := int(unsafe.Sizeof(z))
	mb := min(m, max(1, matMulTopKBlock/(es*64)))        // rows per block
	nb := max(64, min(n, matMulTopKBlock/(es*mb))/64*64) // columns per block
	c := make([]T, mb*nb)
	vals := make([]T, m*k)
	idx := make([]int, m*k)
	cnt := make([]int, m)
	procs := runtime.GOMAXPROCS(0)
	for r0 := 0; r0 < m; r0 += mb {
		h := min(mb, m-r0)
		for j0 := 0; j0 < n; j0 += nb {
			w := min(nb, n-j0)
			matMulBlock(impl, a[r0*d:], b, h, d, n, j0, w, c)
			search := func(lo, hi int) {
				for r := lo; r < hi; r++ {
					g := r0 + r
					cnt[g] = topKMerge(c[r*w:(r+1)*w], j0, k, vals[g*k:(g+1)*k], idx[g*k:(g+1)*k], cnt[g])
				}
			}
			p := min(procs, h)
			if p < 2 || h*w < 1<<16 {
				search(0, h)
				continue
			}
			var wg sync.WaitGroup
			for i := 1; i < p; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					search(h*i/p, h*(i+1)/p)
				}(i)
			}
			search(0, h/p)
			wg.Wait()
		}
	}
	for r := 0; r < m; r++ {
		o := out[r*2*k : (r+1)*2*k]
		for j := 0; j < k; j++ {
			o[j], o[k+j] = vals[r*k+j], T(idx[r*k+j])
		}
	}
}

// matMulBlock computes columns j0..j0+w of the first m rows of a·b into
// c (m×w).
func matMulBlock[T float32 | float64](impl BLAS, a, b []T, m, d, n, j0, w int, c []T) {
	switch a := any(a).(type) {
	case []float32:
		impl.Sgemm(blas.NoTrans, blas.NoTrans, m, w, d, 1, a, d, any(b).([]float32)[j0:], n, 0, any(c).([]float32), w)
	case []float64:
		impl.Dgemm(blas.NoTrans, blas.NoTrans, m, w, d, 1, a, d, any(b).([]float64)[j0:], n, 0, any(c).([]float64), w)
	}
}

// topKMerge adds the values of row, whose first column is j0, to the c
// smallest so far kept in vals and idx (ascending, ties by column), and
// returns how many are kept. Columns arrive in increasing order, so an
// equal value never displaces a kept one. A NaN is kept as +Inf.
func topKMerge[T float32 | float64](row []T, j0, k int, vals []T, idx []int, c int) int {
	inf := T(math.Inf(1))
	for j, v := range row {
		if c == k && !(v < vals[k-1]) {
			continue
		}
		if v != v {
			v = inf
		}
		p := c
		if c < k {
			c++
		} else {
			p = k - 1
		}
		for p > 0 && v < vals[p-1] {
			vals[p], idx[p] = vals[p-1], idx[p-1]
			p--
		}
		vals[p], idx[p] = v, j0+j
	}
	return c
}

package gemm

import "gonum.org/v1/gonum/blas"

// SgemmNT computes C = A·Bᵀ + beta·C for row-major float32 matrices, A
// m×k and B n×k, both read along k where they lie. Where C is small and k
// long (the filter gradient of a convolution: a few filters by a patch,
// summed over every position in a batch) the blocked product pads its
// tiles and packs both operands for little work; this computes C in 4×4
// blocks of dot products instead, 16 at a time in AVX-512 registers, with
// no packing. Without AVX-512, or for m or n under 4, it runs the blocked
// product. It panics on invalid arguments as Sgemm does.
func SgemmNT(m, n, k int, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !dotOK || m < 4 || n < 4 || k < 16 {
		var impl Implementation
		impl.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
		return
	}
	check(blas.NoTrans, blas.Trans, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	k16 := k &^ 15
	var out [16]float32
	for i0 := 0; i0 < m; i0 += 4 {
		bi := min(i0, m-4) // the last block overlaps the one before
		for j0 := 0; j0 < n; j0 += 4 {
			bj := min(j0, n-4)
			sdot4x4AVX512(k16/16, &a[bi*lda], lda, &b[bj*ldb], ldb, &out[0])
			for i := i0; i < min(i0+4, m); i++ {
				ar := a[i*lda+k16 : i*lda+k]
				for j := j0; j < min(j0+4, n); j++ {
					s := out[(i-bi)*4+j-bj]
					br := b[j*ldb+k16 : j*ldb+k]
					for t, v := range ar {
						s += v * br[t]
					}
					if beta == 0 {
						c[i*ldc+j] = s
					} else {
						c[i*ldc+j] = beta*c[i*ldc+j] + s
					}
				}
			}
		}
	}
}

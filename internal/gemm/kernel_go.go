package gemm

import "unsafe"

// goMR and goNR are the tile of the pure-Go kernel: 16 accumulators, which
// the compiler keeps in registers on amd64 and arm64.
const (
	goMR = 4
	goNR = 4
)

// kernelGo is the portable micro-kernel: alpha·A·B + beta·C on a 4×4 tile
// of C, A 4 values per step of k, lda apart, and B 4 values per step, ldb
// apart.
func kernelGo[T float](k int, ap *T, lda int, bp *T, ldb int, cp *T, ldc int, alpha, beta T) {
	a := unsafe.Slice(ap, (k-1)*lda+goMR)
	b := unsafe.Slice(bp, (k-1)*ldb+goNR)
	var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 T
	for p := 0; p < k; p++ {
		a0, a1, a2, a3 := a[0], a[1], a[2], a[3]
		b0, b1, b2, b3 := b[0], b[1], b[2], b[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
		if p < k-1 {
			a = a[lda:]
			b = b[ldb:]
		}
	}
	c := unsafe.Slice(cp, 3*ldc+goNR)
	row := func(i int, v0, v1, v2, v3 T) {
		r := c[i*ldc : i*ldc+goNR]
		if beta == 0 {
			r[0], r[1], r[2], r[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
			return
		}
		r[0] = alpha*v0 + beta*r[0]
		r[1] = alpha*v1 + beta*r[1]
		r[2] = alpha*v2 + beta*r[2]
		r[3] = alpha*v3 + beta*r[3]
	}
	row(0, c00, c01, c02, c03)
	row(1, c10, c11, c12, c13)
	row(2, c20, c21, c22, c23)
	row(3, c30, c31, c32, c33)
}

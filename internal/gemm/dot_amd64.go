//go:build !purego

package gemm

// sdot4x4AVX512 computes the 16 dot products of 4 rows of a and 4 rows of
// b over 16·n16 values (dot_amd64.s); n16 >= 1.
//
//go:noescape
func sdot4x4AVX512(n16 int, a *float32, lda int, b *float32, ldb int, out *float32)

// dotOK reports whether this CPU runs sdot4x4AVX512.
var dotOK = avx512

//go:build !amd64 || purego

package gemm

// dotOK reports whether sdot4x4AVX512 runs: never here.
var dotOK = false

func sdot4x4AVX512(n16 int, a *float32, lda int, b *float32, ldb int, out *float32) {
	panic("gemm: no AVX-512 dot kernel on this architecture")
}

//go:build !purego

package gemm

import "golang.org/x/sys/cpu"

//go:generate go run gen_kernels.go

// The micro-kernels in kernels_amd64.s (see kernelFunc); k >= 1.

//go:noescape
func sgemmAVX2(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmAVX2Rows(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func dgemmAVX2(k int, a *float64, lda int, b *float64, ldb int, c *float64, ldc int, alpha, beta float64)

//go:noescape
func dgemmAVX2Rows(k int, a *float64, lda int, b *float64, ldb int, c *float64, ldc int, alpha, beta float64)

//go:noescape
func sgemmAVX512(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmAVX512Rows(k int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func dgemmAVX512(k int, a *float64, lda int, b *float64, ldb int, c *float64, ldc int, alpha, beta float64)

//go:noescape
func dgemmAVX512Rows(k int, a *float64, lda int, b *float64, ldb int, c *float64, ldc int, alpha, beta float64)

// avx2 and avx512 report whether this CPU (and OS) runs the kernels.
var (
	avx2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	avx512 = avx2 && cpu.X86.HasAVX512F
)

// archKernels32 and archKernels64 list the assembly kernels, in rising
// order of preference.
var (
	archKernels32 = []kernel[float32]{
		{name: "AVX2+FMA", mr: 6, nr: 16, fn: sgemmAVX2, fnRows: sgemmAVX2Rows, ok: avx2},
		{name: "AVX-512", mr: 12, nr: 32, fn: sgemmAVX512, fnRows: sgemmAVX512Rows, ok: avx512},
	}
	archKernels64 = []kernel[float64]{
		{name: "AVX2+FMA", mr: 6, nr: 8, fn: dgemmAVX2, fnRows: dgemmAVX2Rows, ok: avx2},
		{name: "AVX-512", mr: 12, nr: 16, fn: dgemmAVX512, fnRows: dgemmAVX512Rows, ok: avx512},
	}
)

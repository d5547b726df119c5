//go:build !amd64 || purego

package gemm

// Only the pure-Go kernel exists on this architecture or with the purego
// build tag.

var (
	archKernels32 []kernel[float32]
	archKernels64 []kernel[float64]
)

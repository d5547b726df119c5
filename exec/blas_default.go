//go:build !openblas

package exec

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gorgonia.org/gorgonia"

	"github.com/rookery-ml/rookery/internal/gemm"
)

// In the default build, the package's init hands Gorgonia (and through it
// gorgonia.org/tensor) and gonum's blas32 and blas64 (and through them
// gonum/mat) Rookery's gemm: gonum's pure-Go BLAS with the matrix product
// replaced by a cache-blocked one with assembly micro-kernels (AVX-512 or
// AVX2 with FMA; gonum's own where the CPU has neither). It needs no cgo.
// Like the openblas build's switch, these are process-wide settings: every
// tape machine and gonum/mat product in the binary, whether or not it
// belongs to Rookery, runs on it. That is deliberate: which BLAS runs is
// chosen when the binary is built, not per executor.
func init() {
	gorgonia.Use(cpuBLAS)
	blas32.Use(cpuBLAS)
	blas64.Use(cpuBLAS)
}

// cpuBLAS is the BLAS of this build: init installs it, and the kernel
// ops pass it to kernels.MatMulTopK.
var cpuBLAS = gemm.Implementation{}

// BLASName names the BLAS that Gorgonia's matrix products run on in this
// binary: "rookery gemm (AVX-512)", "rookery gemm (AVX2+FMA)" or
// "rookery gemm (pure Go)" by default, after the kernel this CPU runs;
// "OpenBLAS" when built with the openblas tag.
func BLASName() string { return gemm.Implementation{}.Name() }

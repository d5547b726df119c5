//go:build openblas

package exec

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/netlib/blas/netlib"
	"gorgonia.org/gorgonia"
)

// With the openblas build tag, the package's init hands Gorgonia (and
// through it gorgonia.org/tensor) and gonum's blas32 and blas64 (and
// through them gonum/mat) OpenBLAS, by cgo through gonum's netlib binding,
// in place of Rookery's gemm (internal/gemm) that the default build uses.
// These are process-wide settings: every tape machine and gonum/mat product
// in the binary, whether or not it belongs to Rookery, runs on OpenBLAS.
// That is deliberate: which BLAS runs is chosen when the binary is built,
// not per executor.
//
// Building with the tag needs cgo and the OpenBLAS library and headers
// (libopenblas-dev on Debian and Ubuntu). OpenBLAS runs its own thread
// pool beside Go's scheduler; OPENBLAS_NUM_THREADS limits it.
func init() {
	gorgonia.Use(cpuBLAS)
	blas32.Use(cpuBLAS)
	blas64.Use(cpuBLAS)
}

// cpuBLAS is the BLAS of this build: init installs it, and the kernel
// ops pass it to kernels.MatMulTopK.
var cpuBLAS = netlib.Implementation{}

// BLASName names the BLAS that Gorgonia's matrix products run on in this
// binary: "OpenBLAS" when built with the openblas tag, Rookery's gemm
// otherwise.
func BLASName() string { return "OpenBLAS" }

//go:build openblas

package exec

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/netlib/blas/netlib"
	"gorgonia.org/gorgonia"
)

// With the openblas build tag, the package's init hands Gorgonia (and
// through it gorgonia.org/tensor) OpenBLAS, by cgo through gonum's netlib
// binding, in place of Rookery's gemm (internal/gemm) that the default build uses. gorgonia.Use is a
// process-wide setting: every tape machine in the binary, whether or not
// it belongs to Rookery, does its matrix products in OpenBLAS. That is
// deliberate: which BLAS runs is chosen when the binary is built, not per
// executor.
//
// Building with the tag needs cgo and the OpenBLAS library and headers
// (libopenblas-dev on Debian and Ubuntu). OpenBLAS runs its own thread
// pool beside Go's scheduler; OPENBLAS_NUM_THREADS limits it.
func init() {
	gorgonia.Use(netlib.Implementation{})
}

// BLASName names the BLAS that Gorgonia's matrix products run on in this
// binary: "OpenBLAS" when built with the openblas tag, Rookery's gemm
// otherwise.
func BLASName() string { return "OpenBLAS" }

//go:build !openblas

package exec

// BLASName names the BLAS that Gorgonia's matrix products run on in this
// binary: "gonum (pure Go)" by default, "OpenBLAS" when built with the
// openblas tag (which needs cgo and libopenblas). The default build leaves
// Gorgonia's BLAS as it is.
func BLASName() string { return "gonum (pure Go)" }

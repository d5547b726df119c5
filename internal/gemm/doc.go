// Package gemm is Rookery's general matrix product, C = alpha·op(A)·op(B) +
// beta·C on row-major float32 and float64 matrices, fast enough that the
// default, cgo-free build needs no C BLAS.
//
// A product runs Goto's algorithm (as BLIS lays it out): op(B) is copied
// in kc×nc blocks, and op(A) in mc×kc blocks, into panels that a
// micro-kernel in assembly reads in order, the tile of C it computes held
// in vector registers (AVX-512, or AVX2 with FMA, chosen at start-up with
// golang.org/x/sys/cpu). Products of more than about 2²⁰ multiply-adds are
// split along the longer of m and n across GOMAXPROCS goroutines. Packing
// buffers come from pools, so a product allocates nothing once they are
// warm. On CPUs without those instructions, on other architectures and
// with the purego build tag, gonum's gemm runs instead.
//
// Implementation embeds gonum's pure-Go BLAS and replaces its Sgemm and
// Dgemm, so it can be installed for Gorgonia (gorgonia.Use) and gonum/mat
// (blas32.Use, blas64.Use) alike. Like gonum's, it panics on invalid
// arguments, with the same messages.
package gemm

// Package gemm is Rookery's general matrix product, C = alpha·op(A)·op(B) +
// beta·C on row-major float32 and float64 matrices, fast enough that the
// default, cgo-free build needs no C BLAS.
//
// A product runs Goto's algorithm (as BLIS lays it out): op(B) is copied
// in kc×nc blocks, and op(A) in mc×kc blocks, into panels that a
// micro-kernel in assembly reads in order, the tile of C it computes held
// in vector registers (AVX-512, or AVX2 with FMA, chosen at start-up with
// golang.org/x/sys/cpu). Where copying would cost as much as the product,
// the kernels read an operand where it lies: B when A has few rows (a
// mini-batch times a weight matrix), A when C has few columns (a data set
// times a few weight vectors). Products of more than about 24M
// multiply-adds are split along m or n across GOMAXPROCS goroutines that
// end with the call (smaller ones run faster on one: BenchmarkSplit).
// Packing buffers come from pools, so a product allocates nothing once
// they are warm but the goroutines it starts. On
// CPUs without those instructions, on other architectures and with the
// purego build tag, gonum's gemm runs instead.
//
// SgemmNT is A·Bᵀ for a small result and a long k (a convolution's
// filter gradient), as 4×4 blocks of dot products in AVX-512 registers
// without packing (dot_amd64.s), where the blocked product would pad its
// tiles and pack both operands for little work.
//
// AddScaled (a·x + w·y), Momentum32, MomentumWD32, Nesterov32 and Adam32
// are the passes a training step makes over every parameter besides the
// products: a ring's sums and the solvers' updates. They run on AVX2
// where the CPU has it and in Go otherwise, and round every operation as
// the Go expression does, with no fused multiply-add, so both give the
// same bits and replicas on different machines stay identical.
//
// The kernels of the blocked product are generated: go generate
// ./internal/gemm rewrites kernels_amd64.s from gen_kernels.go.
//
// Implementation embeds gonum's pure-Go BLAS and replaces its Sgemm and
// Dgemm, so it can be installed for Gorgonia (gorgonia.Use) and gonum/mat
// (blas32.Use, blas64.Use) alike. Like gonum's, it panics on invalid
// arguments, with the same messages.
package gemm

// Package native is the CPU executor on Rookery's own kernels: it runs a
// part of a partitioned model in this process from its lowered plan
// (package exec/plan, the plan the CUDA executor runs too), without
// Gorgonia's tape machine.
//
// # How a part runs
//
// Open lowers the part once, with plan.WithHostKernels: every buffer
// (parameters, accumulators, solver state, each micro-batch's inputs and
// activations, the backward pass's gradients, pooled and reused) is
// allocated then and reused for every step. A step allocates only the
// tensors it hands back and the goroutines of its threads
// (BenchmarkCNNSession reports 11 allocations per step), and its scratch
// buffers again after a garbage collection empties their pool. Forward,
// Backward and Step run the plan's launches on kernels written for the
// CPU:
//   - matrix products on internal/gemm's packed AVX-512 or AVX2 kernels; a
//     small product with a long k (a weight gradient) is split along k
//     across threads, and a convolution's filter gradient runs on
//     gemm.SgemmNT's dot products;
//   - a Gorgonia Conv2d (im2col, reshapes, product, transpose) as one
//     convolution that works a few images at a time: each chunk's patches
//     are made in a cache-sized scratch buffer as rows of contiguous runs,
//     multiplied there, and made again for the backward pass rather than
//     kept; a per-filter bias, a ReLU and a 2×2 max pool after it run in
//     the same pass, keeping per window only where its gradient goes;
//   - elementwise launches collapsed to long contiguous loops wherever
//     their strides allow, comparisons and maxima without jumps on the
//     data, and the solver's update in one pass per parameter.
//
// A launch large enough to pay for it is split across WithThreads
// goroutines (default GOMAXPROCS), which live for one Forward, Backward or
// Step call. Sums split across threads (a product split along k, a
// filter gradient) are added in a fixed order, so results are the same
// from run to run on the same number of threads, and may differ in the
// last bits between thread counts.
//
// # Parts it cannot lower
//
// Gorgonia stays the front end: graph.FromGorgonia reads the caller's
// graph, and the tape-machine executor (exec.NewCPU) stays the reference
// and runs the parts that plan.Lower cannot lower (batch norm, dropout in
// training mode, the ravml kinds, ...). Such a part is opened there and
// logged with its reason (WithLogger), never silently; WithReport hears
// where every part runs, and WithoutFallback refuses such parts instead.
//
// # What it is checked against
//
// The conformance suite (exectest.Run), every lowered op kind against the
// tape machine (exectest.OpsMatchCPU), and training in k ≤ 4 parts with
// M ≤ 4 micro-batches against one-process Gorgonia training, within 1e-9
// in float64 and 1e-4 in float32, for the MLP, a CNN and a residual DAG
// with every solver (exectest.EqualsOneProcess).
package native

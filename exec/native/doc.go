// Package native is the CPU executor on Rookery's own kernels: it runs a
// part of a partitioned model in this process from its lowered plan
// (package exec/plan, the plan the CUDA executor runs too), without
// Gorgonia's tape machine.
//
// Open lowers the part once: every buffer (parameters, accumulators,
// solver state, each micro-batch's inputs and activations, the backward
// pass's gradients, pooled and reused) is allocated then and reused for
// every step, so a step allocates only the tensors it hands back. Forward,
// Backward and Step run the plan's launches on kernels written for the
// CPU: matrix products on internal/gemm's packed AVX-512 or AVX2 kernels,
// im2col and col2im by rows and planes, 2×2 max pooling on its own path,
// elementwise launches collapsed to long contiguous loops wherever their
// strides allow, and the solver's update in one pass per parameter. A
// launch large enough to pay for it is split across WithThreads
// goroutines (default GOMAXPROCS), which live for one Forward, Backward or
// Step call.
//
// Gorgonia stays the front end: graph.FromGorgonia reads the caller's
// graph, and the tape-machine executor (exec.NewCPU) stays the reference
// and runs the parts that plan.Lower cannot lower (batch norm, dropout in
// training mode, the ravml kinds, ...). Such a part is opened there, and
// logged with its reason (WithLogger), never silently; WithReport hears
// where every part runs, and WithoutFallback refuses such parts instead.
package native

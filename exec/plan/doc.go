// Package plan lowers a part's IR into a plan that a device runs without
// Gorgonia: one plan, several devices. The CPU executor on Rookery's own
// kernels (exec/native) and the CUDA executor (exec/cuda) both run the
// plans that Lower makes, and share the session logic (Executor) that
// drives them.
//
// # A plan
//
// Lower turns a part (an exec.SessionSpec) into buffers and launches:
// one buffer per parameter, accumulator, solver state and constant; per
// micro-batch index, one per input and activation; a forward list of
// launches (elementwise, reduction, softmax, im2col, pooling kernels and
// gemms for the matrix products); and a backward list that the lowering
// derives op by op, in reverse graph order, adding each op's contribution
// to the gradients of its inputs (gradient buffers come from a pool and
// are reused once a node's gradient has been passed on). A kernel is
// named by its base name and dtype suffix (KernelBase, KernelNames,
// KernelSig give its argument list), and its arguments are buffers with
// element offsets, ints and scalars of the plan's dtype, as CUDA C
// kernels take them; a gemm is described in cuBLAS's column-major terms.
// Plan prints, so a plan can be read and tested on any machine.
//
// # Sessions
//
// Executor opens sessions on a Device: Forward uploads the feeds and runs
// the forward list; Backward uploads the output gradients and runs the
// backward list, which adds the parameters' gradients to their
// accumulators; Step runs the solver's update kernel on every parameter
// with the mean of what was accumulated (exec.Solver's arithmetic,
// schedules, clipping and weight decay) and clears them. A HostDevice,
// whose buffers are Go slices, is read and written without byte copies.
//
// # What is lowered
//
// The elementwise unary kinds (the gradients of log2 and inverse_sqrt
// excepted: Gorgonia differentiates them with rules that are not their
// derivatives, and lowered parts must agree with tape-machine parts), add,
// sub, mul, div, pow and the comparisons with ret_same, their broadcasting
// forms, matmul (with transposes), matvec, vecdot, outer, sum, max,
// transpose, reshape, slice, concat, softmax and log-softmax along the
// last axis, im2col, maxpool2d, size_of, and dropout in evaluation mode
// where no gradient passes through it (Gorgonia's gradient of dropout is
// dy/p where the output is not 0, in evaluation mode too), on float32 or
// float64 tensors of rank at most 4, one dtype per part. That covers the
// MLP, convolutional and residual networks. Not lowered (yet): batchnorm
// (Gorgonia's gradient in evaluation mode reads the statistics of the
// last training batch), dropout in training mode, avgpool2d (Gorgonia
// divides its window sums by the input's width), global_avgpool2d,
// batched_matmul, tensordot, at, repeat, softmax along another axis, and
// the ravml kinds. A part holding one of them fails Lower with an
// *UnsupportedOpError (ErrUnsupported) naming the node and its kind;
// Fallback opens such parts on another executor and says so.
package plan

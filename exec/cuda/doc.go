// Package cuda is the CUDA executor: it runs a part of a partitioned model
// on an NVIDIA GPU with the results of the CPU executor, for providers
// whose hosts have one.
//
// # How a part runs
//
// Open lowers the part's IR (a graph.Graph) into a plan (package
// exec/plan, which the native CPU executor shares) without touching a GPU: one device buffer per parameter, accumulator, solver state and
// constant; per micro-batch index, one per input and activation; a forward
// list of launches (kernels from kernels/*.cu, and cuBLAS gemms for the
// matrix products); and a backward list that the lowering derives op by
// op, in reverse graph order, adding each op's contribution to the
// gradients of its inputs (gradient buffers come from a pool and are
// reused once a node's gradient has been passed on). Forward uploads the
// feeds and runs the forward list; Backward uploads the output gradients
// and runs the backward list, which adds the parameters' gradients to
// their accumulators; Step runs the solver's update kernel on every
// parameter with the mean of what was accumulated (exec.Solver's
// arithmetic, schedules, clipping and weight decay) and clears them.
// plan.Lower is exported, and a plan prints, so it can be read and tested
// on any machine.
//
// The plan runs on a device. The GPU device drives the CUDA driver API
// and cuBLAS; a reference device, used by the tests, interprets every
// kernel in Go index for index as the CUDA C source computes it, and the
// gemms with gonum. The tests run the exec/exectest conformance suite,
// the 784-1024-1024-10 MLP, convolutional nets, every solver and every
// lowered op kind on the reference device against the CPU executor, and
// check the committed PTX against the argument lists the lowering passes:
// on a machine without a GPU only the CUDA C and the driver calls are left
// unexercised.
//
// # Libraries loaded at run time
//
// The driver (libcuda.so.1) and cuBLAS (libcublas.so.13, .12 or .11, from
// the loader's path, LD_LIBRARY_PATH, or the nvidia/cublas/lib directory
// of NVIDIA's Python wheels) are opened with github.com/ebitengine/purego
// when Probe or New is first called. There is no cgo and no build tag:
// one provider binary builds and tests everywhere and uses a GPU where it
// finds one. gorgonia.org/cu was the alternative; it needs cgo and the
// CUDA headers (on Debian only in the non-free nvidia-cuda-dev), and
// Gorgonia's own CUDA build also needs cudnn.h, which no package here
// provides.
//
// # Kernels
//
// kernels/*.cu are compiled to PTX for the virtual architecture
// compute_52 by one command, `go generate ./exec/cuda` (nvcc 11.8 from
// Debian's non-free nvidia-cuda-toolkit is enough; no GPU is needed). The
// PTX is committed and embedded; the driver JIT-compiles it for the GPU
// it runs on (a driver for CUDA 11.8 or later).
//
// Supported op kinds are those plan.Lower lowers without host kernels
// (see exec/plan's package documentation): the elementwise, broadcasting,
// product, reduction, shape, softmax, im2col and max-pool kinds on
// float32 or float64 tensors of rank at most 4, one dtype per part. That
// covers the MLP and the convolutional examples.
//
// # Errors
//
// Probe and New say why no GPU can be used with a *ProbeError matching
// ErrNoDriver, ErrNoDevice, ErrDriverTooOld or ErrNoCUBLAS; New never
// falls back to the CPU by itself. A part with an op kind, mode or dtype
// the executor does not lower fails at Open with an *UnsupportedOpError
// (ErrUnsupported) naming the node and its kind, so that a provider can
// run that part on the CPU executor instead (Fallback does that, part by
// part, and says so). BatchNorm is not lowered: Gorgonia's gradient in
// evaluation mode reads the statistics of the last training batch; nor is
// avgpool2d, whose window sums Gorgonia divides by the input's width.
// Gorgonia differentiates log2 and inverse_sqrt with rules that are not
// their derivatives; a part that needs those gradients is refused the
// same way, so that GPU and CPU parts agree. Failed driver or cuBLAS
// calls are *CallError (ErrCUDA), wrapped in the exec package's
// *exec.RunError; everything else follows the exec.Session contract and
// its typed errors.
//
// # Running the GPU tests on a machine without Go
//
// Build the test binary here, without cgo so that it depends on no C
// library version, and carry it over:
//
//	CGO_ENABLED=0 go test -c -o cuda.test ./exec/cuda
//	./cuda.test -test.v -test.bench .
//
// If cuBLAS is not on the loader's path, point LD_LIBRARY_PATH at its
// directory first, for instance
//
//	export LD_LIBRARY_PATH=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))')/lib
//
// The GPU tests (TestConformanceGPU, TestOpsMatchCPUOnGPU,
// TestMLPMatchesCPUOnGPU, TestCNNMatchesCPUOnGPU) and benchmarks
// (BenchmarkMLPStep/gpu, BenchmarkSgemm) skip, saying why, where Probe
// finds no GPU.
package cuda

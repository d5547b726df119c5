package cuda

import (
	"context"
	"math/rand"
	"strconv"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// The tests and benchmarks in this file need a GPU. Without one they
// skip, saying why (the only reason any test here skips).

// gpuExecutor returns the CUDA executor on GPU 0, closed when tb ends.
func gpuExecutor(tb testing.TB) *Executor {
	tb.Helper()
	info, err := Probe()
	if err != nil {
		tb.Skipf("no GPU to run on: %v", err)
	}
	e, err := New()
	if err != nil {
		tb.Fatalf("Probe found %v but New failed: %v", info, err)
	}
	tb.Cleanup(func() {
		if err := e.(*Executor).Close(); err != nil {
			tb.Error(err)
		}
	})
	tb.Logf("GPU: %v", info)
	return e.(*Executor)
}

// TestConformanceGPU runs the executor conformance suite on the GPU.
func TestConformanceGPU(t *testing.T) {
	e := gpuExecutor(t)
	exectest.Run(t, func(t *testing.T) exec.Executor { return e })
}

// TestOpsMatchCPUOnGPU runs every lowered op kind (float64) on the GPU
// against the CPU executor. The GPU's math library may differ from Go's
// in the last bits, hence 1e-10 rather than the reference device's 1e-12.
func TestOpsMatchCPUOnGPU(t *testing.T) { opsMatchCPU(t, gpuExecutor(t), 1e-10) }

// TestMLPMatchesCPUOnGPU is the check: the 784-1024-1024-10 MLP
// in float32, batch 256, forward, backward and steps within 1e-5 of the
// CPU executor.
func TestMLPMatchesCPUOnGPU(t *testing.T) {
	e := gpuExecutor(t)
	compareWithCPU(t, e, mlp(t, tensor.Float32, 256, 784, 1024, 1024, 10), exec.SGD(0.05, 0.9), 3, 2)
	compareWithCPU(t, e, mlp(t, tensor.Float32, 64, 784, 1024, 1024, 10), exec.Adam(0.001), 2, 2)
}

// TestCNNMatchesCPUOnGPU does the same for the convolutional nets.
func TestCNNMatchesCPUOnGPU(t *testing.T) {
	e := gpuExecutor(t)
	for _, m := range []model{
		cnn(t, tensor.Float32, 4, 8, 4, 3, 1, 1, 2, 2),
		cnn(t, tensor.Float32, 3, 9, 3, 3, 0, 2, 2, 1),
		cnn(t, tensor.Float32, 2, 11, 5, 5, 2, 1, 3, 2),
		cnn(t, tensor.Float32, 32, 28, 16, 3, 1, 1, 2, 2),
	} {
		t.Run(m.name, func(t *testing.T) { compareWithCPU(t, e, m, exec.SGD(0.05, 0.9), 2, 2) })
	}
}

// benchStep trains m on e, one Forward, Backward and Step per iteration,
// and reports the time of a step.
func benchStep(b *testing.B, e exec.Executor, m model) {
	ctx := context.Background()
	spec := m.spec
	spec.Solver = exec.SGD(0.01, 0.9)
	s, err := e.Open(ctx, spec)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	x, y := m.batch(rand.New(rand.NewSource(5)))
	feeds := map[int64]*tensor.Dense{m.x: x, m.y: y}
	step := func() {
		if _, err := s.Forward(ctx, 0, feeds); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Backward(ctx, 0, map[int64]*tensor.Dense{}); err != nil {
			b.Fatal(err)
		}
		if err := s.Step(ctx); err != nil {
			b.Fatal(err)
		}
	}
	step() // warm-up: JIT, cuBLAS heuristics, allocations
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		step()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1e3/float64(b.N), "ms/step")
}

// BenchmarkMLPStep times a training step of the 784-1024-1024-10 MLP,
// batch 256, float32, on the CPU executor and on the GPU.
func BenchmarkMLPStep(b *testing.B) {
	m := mlp(b, tensor.Float32, 256, 784, 1024, 1024, 10)
	b.Run("cpu", func(b *testing.B) { benchStep(b, exec.NewCPU(), m) })
	b.Run("gpu", func(b *testing.B) { benchStep(b, gpuExecutor(b), m) })
}

// BenchmarkSgemm measures cuBLAS sgemm on n×n matrices and reports it as
// GFLOP/s and as a fraction of the card's float32 peak.
func BenchmarkSgemm(b *testing.B) {
	for _, n := range []int{1024, 4096, 8192} {
		b.Run(fmtInt(n), func(b *testing.B) {
			e := gpuExecutor(b)
			g := e.gpu
			bytes := int64(n) * int64(n) * 4
			var bufs []uint64
			for i := 0; i < 3; i++ {
				p, err := g.Alloc(bytes)
				if err != nil {
					b.Fatal(err)
				}
				defer g.Free(p)
				bufs = append(bufs, p)
			}
			// C = A·B on n×n matrices, in cuBLAS's column-major terms.
			gm := Launch{Node: -1, Kernel: "sgemm", Gemm: &plan.Gemm{M: n, N: n, K: n, Alpha: 1, A: 1, Lda: n, B: 0, Ldb: n, C: 2, Ldc: n}}
			const reps = 10
			ls := make([]Launch, reps)
			for i := range ls {
				ls[i] = gm
			}
			if err := g.Run(float32DT, ls[:1], bufs); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := g.Run(float32DT, ls, bufs); err != nil {
					b.Fatal(err)
				}
			}
			sec := time.Since(start).Seconds()
			flops := 2 * float64(n) * float64(n) * float64(n) * reps * float64(b.N) / sec
			b.ReportMetric(flops/1e9, "GFLOP/s")
			if peak := g.info.PeakFP32(); peak > 0 {
				b.ReportMetric(flops/peak, "of-peak")
			} else {
				b.Logf("the driver does not report the clock rate: no peak to compare with")
			}
		})
	}
}

const float32DT = graph.Float32

func fmtInt(n int) string { return "n=" + strconv.Itoa(n) }

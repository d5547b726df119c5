package exec_test

import (
	"context"
	"math/rand"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// The benchmarks train a 784-1024-1024-10 float32 MLP on batches of 256,
// one step per iteration: (a) plain Gorgonia in one process, (b) the
// pipeline with one part, (c) two parts and four micro-batches.

const benchBatch = 256

func benchModel() model { return mlpModel(tensor.Float32, benchBatch, 784, 1024, 1024, 10) }

// BenchmarkStepGorgonia is one step of plain Gorgonia: tape machine with
// gradients bound as dual values and Gorgonia's momentum solver.
func BenchmarkStepGorgonia(b *testing.B) {
	m := benchModel()
	if _, err := gorgonia.Grad(m.loss, m.learn...); err != nil {
		b.Fatal(err)
	}
	vm := gorgonia.NewTapeMachine(m.g, gorgonia.BindDualValues(m.learn...))
	defer vm.Close()
	solver := gorgonia.NewMomentum(gorgonia.WithLearnRate(0.01), gorgonia.WithMomentum(0.9))
	for n, v := range m.batch(rand.New(rand.NewSource(1))) {
		if err := gorgonia.Let(n, v); err != nil {
			b.Fatal(err)
		}
	}
	grads := gorgonia.NodesToValueGrads(m.learn)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
		if err := solver.Step(grads); err != nil {
			b.Fatal(err)
		}
		vm.Reset()
	}
}

func benchPipeline(b *testing.B, k, micro int) {
	ctx := context.Background()
	m := benchModel()
	ir, err := graph.FromGorgonia(m.g, graph.Learnables(m.learn...), graph.WithValues())
	if err != nil {
		b.Fatal(err)
	}
	execs := make([]exec.Executor, k)
	for i := range execs {
		execs[i] = exec.NewCPU()
	}
	data := []int64{int64(m.data[0].ID()), int64(m.data[1].ID())}
	p, err := exec.NewPipeline(ctx, ir, int64(m.loss.ID()), data, chunks(ir, k), execs,
		exec.WithMicroBatches(micro), exec.WithSolver(exec.SGD(0.01, 0.9)))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	feeds := map[int64]*tensor.Dense{}
	for n, v := range m.batch(rand.New(rand.NewSource(1))) {
		feeds[int64(n.ID())] = v
	}
	if _, err := p.Step(ctx, feeds); err != nil { // builds the remaining micro-batch programs
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Step(ctx, feeds); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStepPipelineK1 is one step of the pipeline with one part.
func BenchmarkStepPipelineK1(b *testing.B) { benchPipeline(b, 1, 1) }

// BenchmarkStepPipelineK2M4 is one step with two parts, four micro-batches.
func BenchmarkStepPipelineK2M4(b *testing.B) { benchPipeline(b, 2, 4) }

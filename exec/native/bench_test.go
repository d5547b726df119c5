package native_test

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// mnistCNN is the network of examples/cnn on random 28×28 images:
// Conv2D(8, 5×5)-ReLU-MaxPool(2)-Conv2D(16, 5×5)-ReLU-MaxPool(2)-Dense(10),
// built as ravdl builds it (a bias by BroadcastAdd, Gorgonia's Rectify).
func mnistCNN(batch int) exectest.Model {
	rng := rand.New(rand.NewSource(1))
	dt := tensor.Float32
	g := gorgonia.NewGraph()
	x := gorgonia.NewTensor(g, dt, 4, gorgonia.WithShape(batch, 1, 28, 28), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 10), gorgonia.WithName("y"))
	param := func(name string, scale float64, shape ...int) *gorgonia.Node {
		return gorgonia.NewTensor(g, dt, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name),
			gorgonia.WithValue(exectest.Normal(rng, dt, scale, shape...)))
	}
	var learn gorgonia.Nodes
	h := x
	for i, c := range [][2]int{{1, 8}, {8, 16}} {
		f := param("f"+string(rune('1'+i)), math.Sqrt(2/float64(c[0]*25)), c[1], c[0], 5, 5)
		b := param("b"+string(rune('1'+i)), 0.01, c[1])
		learn = append(learn, f, b)
		h = gorgonia.Must(gorgonia.Conv2d(h, f, tensor.Shape{5, 5}, []int{0, 0}, []int{1, 1}, []int{1, 1}))
		h = gorgonia.Must(gorgonia.BroadcastAdd(h, b, nil, []byte{0, 2, 3}))
		h = gorgonia.Must(gorgonia.Rectify(h))
		h = gorgonia.Must(gorgonia.MaxPool2D(h, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2}))
	}
	h = gorgonia.Must(gorgonia.Reshape(h, tensor.Shape{batch, 256}))
	w := param("w", 0.1, 256, 10)
	b := param("b", 0.01, 10)
	learn = append(learn, w, b)
	logits := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
	lsm := gorgonia.Must(gorgonia.LogSoftMax(logits))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.Sum(gorgonia.Must(gorgonia.HadamardProd(lsm, y)), 1))))))
	return exectest.Model{G: g, Loss: loss, Learn: learn, Data: gorgonia.Nodes{x, y}, DType: dt,
		Batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: exectest.Normal(rng, dt, 1, batch, 1, 28, 28), y: exectest.OneHot(rng, dt, batch, 10)}
		}}
}

// onePart returns the spec of training model m in one part with solver
// cfg on micro micro-batches, and the feeds of a mini-batch drawn with
// seed.
func onePart(tb testing.TB, m exectest.Model, cfg exec.SolverConfig, micro int, seed int64) (exec.SessionSpec, map[int64]*tensor.Dense) {
	tb.Helper()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		tb.Fatal(err)
	}
	feeds := make(map[int64]*tensor.Dense)
	for n, v := range m.Batch(rand.New(rand.NewSource(seed))) {
		feeds[int64(n.ID())] = v
	}
	spec := exec.SessionSpec{Graph: ir, DataInputs: exec.NodeIDs(m.Data), Loss: int64(m.Loss.ID()), HasLoss: true,
		Solver: cfg, MicroBatches: micro}
	return spec, feeds
}

// benchSteps times training steps (forward, backward and SGD with
// momentum, one part, one micro-batch) of model m on executor e, and
// reports the heap allocations of a step in steady state.
func benchSteps(b *testing.B, m exectest.Model, e exec.Executor) {
	ctx := context.Background()
	spec, feeds := onePart(b, m, exec.SGD(0.05, 0.9), 1, 2)
	p, err := exec.NewPipeline(ctx, spec.Graph, spec.Loss, spec.DataInputs, exectest.Chunks(spec.Graph, 1), []exec.Executor{e},
		exec.WithMicroBatches(1), exec.WithSolver(spec.Solver))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for range 3 { // warm up: buffers, pools
		if _, err := p.Step(ctx, feeds); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := p.Step(ctx, feeds); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCNNStep is a training step of the CNN of examples/cnn, batch
// 64, float32, on the native executor and on the tape machine.
func BenchmarkCNNStep(b *testing.B) {
	b.Run("native", func(b *testing.B) { benchSteps(b, mnistCNN(64), native.New()) })
	b.Run("tape", func(b *testing.B) { benchSteps(b, mnistCNN(64), exec.NewCPU()) })
}

// BenchmarkMLPStep is a training step of the 784-256-10 MLP, batch 64,
// float32.
func BenchmarkMLPStep(b *testing.B) {
	b.Run("native", func(b *testing.B) { benchSteps(b, exectest.MLP(tensor.Float32, 64, 784, 256, 10), native.New()) })
	b.Run("tape", func(b *testing.B) { benchSteps(b, exectest.MLP(tensor.Float32, 64, 784, 256, 10), exec.NewCPU()) })
}

// TestCNNLowersWhole checks that the CNN of examples/cnn is lowered with
// its convolutions, biases, ReLUs and pools whole, as the native
// executor's speed depends on: no im2col, transposed copy, comparison
// or max pool launch is left in the plan.
func TestCNNLowersWhole(t *testing.T) {
	spec, _ := onePart(t, mnistCNN(4), exec.SGD(0.1, 0.9), 0, 1)
	p, err := plan.Lower(&spec, plan.WithHostKernels())
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, l := range append(append([]plan.Launch{}, p.Forward...), p.Backward...) {
		count[plan.KernelBase(l.Kernel)]++
	}
	for k, want := range map[string]int{"conv_bias_relu_pool": 2, "conv": 0, "conv_filter_grad": 2, "conv_input_grad": 1, "bias_relu_pool_grad": 2,
		"im2col": 0, "col2im": 0, "maxpool": 0, "maxpool_grad": 0} {
		if count[k] != want {
			t.Errorf("%d %s launches, want %d (all: %v)", count[k], k, want, count)
		}
	}
}

// BenchmarkCNNSession is the CNN's training step on a native session
// alone (Forward, Backward, Step; no pipeline driving it), with the heap
// allocations the executor makes per step.
func BenchmarkCNNSession(b *testing.B) {
	ctx := context.Background()
	spec, feeds := onePart(b, mnistCNN(64), exec.SGD(0.05, 0.9), 1, 2)
	s, err := native.New(native.WithoutFallback()).Open(ctx, spec)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	step := func() {
		if _, err := s.Forward(ctx, 0, feeds); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Backward(ctx, 0, nil); err != nil {
			b.Fatal(err)
		}
		if err := s.Step(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for range 3 {
		step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		step()
	}
}

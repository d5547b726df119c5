package bench

import (
	"context"
	"math"
	"math/rand"
	"syscall"
	"testing"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
)

const batch = 256

type mlp struct {
	g     *gorgonia.ExprGraph
	x, y  *gorgonia.Node
	loss  *gorgonia.Node
	learn gorgonia.Nodes
	feeds map[*gorgonia.Node]*tensor.Dense
}

// newMLP builds the 784-1024-1024-10 ReLU MLP with a mean softmax
// cross-entropy loss, and one random mini-batch.
func newMLP() *mlp {
	rng := rand.New(rand.NewSource(1))
	dt := tensor.Float32
	g := gorgonia.NewGraph()
	m := &mlp{g: g}
	m.x = gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 784), gorgonia.WithName("x"))
	m.y = gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 10), gorgonia.WithName("y"))
	sizes := []int{784, 1024, 1024, 10}
	h := m.x
	for i := 0; i+1 < len(sizes); i++ {
		w := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(sizes[i], sizes[i+1]), gorgonia.WithName("w"+string(rune('1'+i))),
			gorgonia.WithValue(randDense(rng, math.Sqrt(2/float64(sizes[i])), sizes[i], sizes[i+1])))
		b := gorgonia.NewVector(g, dt, gorgonia.WithShape(sizes[i+1]), gorgonia.WithName("b"+string(rune('1'+i))),
			gorgonia.WithValue(randDense(rng, 0.01, sizes[i+1])))
		m.learn = append(m.learn, w, b)
		h = gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		if i+2 < len(sizes) {
			h = gorgonia.Must(gorgonia.Rectify(h))
		}
	}
	lsm := gorgonia.Must(gorgonia.LogSoftMax(h))
	m.loss = gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(lsm, m.y))))))
	ys := tensor.New(tensor.Of(dt), tensor.WithShape(batch, 10))
	for i := 0; i < batch; i++ {
		ys.Float32s()[i*10+rng.Intn(10)] = 1
	}
	m.feeds = map[*gorgonia.Node]*tensor.Dense{m.x: randDense(rng, 1, batch, 784), m.y: ys}
	return m
}

func randDense(rng *rand.Rand, scale float64, shape ...int) *tensor.Dense {
	t := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(shape...))
	for i := range t.Float32s() {
		t.Float32s()[i] = float32(rng.NormFloat64() * scale)
	}
	return t
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs step b.N times and reports, besides wall time, the CPU
// time per step (cpu-ms/op), which varies less on a shared machine.
func measure(b *testing.B, step func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		if err := step(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkStepGorgonia (a) is one step of plain Gorgonia in one process:
// a tape machine over the graph and its gradients (bound as dual values)
// and Gorgonia's momentum solver.
func BenchmarkStepGorgonia(b *testing.B) {
	m := newMLP()
	if _, err := gorgonia.Grad(m.loss, m.learn...); err != nil {
		b.Fatal(err)
	}
	vm := gorgonia.NewTapeMachine(m.g, gorgonia.BindDualValues(m.learn...))
	defer vm.Close()
	solver := gorgonia.NewMomentum(gorgonia.WithLearnRate(0.01), gorgonia.WithMomentum(0.9))
	for n, v := range m.feeds {
		if err := gorgonia.Let(n, v); err != nil {
			b.Fatal(err)
		}
	}
	grads := gorgonia.NodesToValueGrads(m.learn)
	measure(b, func() error {
		if err := vm.RunAll(); err != nil {
			return err
		}
		if err := solver.Step(grads); err != nil {
			return err
		}
		vm.Reset()
		return nil
	})
}

func benchTrainer(b *testing.B, opts ...rookery.Option) {
	m := newMLP()
	opts = append(opts, rookery.WithSolver(exec.SGD(0.01, 0.9)))
	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, gorgonia.Nodes{m.x, m.y}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Step(ctx, m.feeds); err != nil { // builds every micro-batch's program
		b.Fatal(err)
	}
	measure(b, func() error {
		_, err := tr.Step(ctx, m.feeds)
		return err
	})
}

// BenchmarkStepTrainerK1 (b) is one step of a Trainer with one part.
func BenchmarkStepTrainerK1(b *testing.B) { benchTrainer(b, rookery.WithParts(1)) }

// BenchmarkStepTrainerK2M4 (c) is one step of a Trainer with two parts and
// four micro-batches.
func BenchmarkStepTrainerK2M4(b *testing.B) {
	benchTrainer(b, rookery.WithParts(2), rookery.WithMicroBatches(4),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(0.25)))
}

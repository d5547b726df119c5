package cuda

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
)

// tol is the agreement the issue asks of the CUDA executor with the CPU
// executor in float32: max |a−b| / max |b| over a tensor.
const tol = 1e-5

// model is a Gorgonia graph with a softmax cross-entropy loss, imported
// into the IR as one part.
type model struct {
	name  string
	spec  exec.SessionSpec
	x, y  int64
	learn []int64
	batch func(rng *rand.Rand) (x, y *tensor.Dense)
}

// The tensors of the tests come from exectest's helpers.
var (
	randDense  = exectest.Normal
	oneHot     = exectest.OneHot
	maxRelDiff = exectest.MaxRelDiff
)

func crossEntropy(logits, onehot *gorgonia.Node) *gorgonia.Node {
	lsm := gorgonia.Must(gorgonia.LogSoftMax(logits))
	prod := gorgonia.Must(gorgonia.HadamardProd(lsm, onehot))
	return gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(prod))))
}

func param(rng *rand.Rand, g *gorgonia.ExprGraph, dt tensor.Dtype, name string, scale float64, shape ...int) *gorgonia.Node {
	return gorgonia.NewTensor(g, dt, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name),
		gorgonia.WithValue(randDense(rng, dt, scale, shape...)))
}

// onePart imports g and makes the whole graph one part with x and y fed
// as data.
func onePart(tb testing.TB, name string, g *gorgonia.ExprGraph, loss, x, y *gorgonia.Node, learn gorgonia.Nodes, batch func(*rand.Rand) (x, y *tensor.Dense)) model {
	tb.Helper()
	ir, err := graph.FromGorgonia(g, graph.Learnables(learn...), graph.WithValues())
	if err != nil {
		tb.Fatal(err)
	}
	var ids []int64
	for _, n := range ir.Nodes() {
		if n.Role == graph.RoleOp || n.Role == graph.RoleLearnable {
			ids = append(ids, n.ID)
		}
	}
	lay, err := exec.NewLayout(ir, [][]int64{ids}, int64(loss.ID()), []int64{int64(x.ID()), int64(y.ID())})
	if err != nil {
		tb.Fatal(err)
	}
	m := model{name: name, spec: lay.Specs[0], x: int64(x.ID()), y: int64(y.ID()), batch: batch}
	for _, l := range learn {
		m.learn = append(m.learn, int64(l.ID()))
	}
	return m
}

// mlp is a ReLU MLP sizes[0] → … → sizes[last] with softmax cross-entropy.
func mlp(tb testing.TB, dt tensor.Dtype, batch int, sizes ...int) model {
	rng := rand.New(rand.NewSource(1))
	g := gorgonia.NewGraph()
	in, out := sizes[0], sizes[len(sizes)-1]
	x := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, out), gorgonia.WithName("y"))
	var learn gorgonia.Nodes
	h := x
	for i := 0; i+1 < len(sizes); i++ {
		w := param(rng, g, dt, fmt.Sprint("w", i), math.Sqrt(2/float64(sizes[i])), sizes[i], sizes[i+1])
		b := param(rng, g, dt, fmt.Sprint("b", i), 0.01, sizes[i+1])
		learn = append(learn, w, b)
		h = gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		if i+2 < len(sizes) {
			h = gorgonia.Must(gorgonia.Rectify(h))
		}
	}
	return onePart(tb, fmt.Sprint("mlp", sizes), g, crossEntropy(h, y), x, y, learn, func(rng *rand.Rand) (*tensor.Dense, *tensor.Dense) {
		return randDense(rng, dt, 1, batch, in), oneHot(rng, dt, batch, out)
	})
}

// cnn is Conv2d → MaxPool2D → ReLU → dense with softmax cross-entropy.
func cnn(tb testing.TB, dt tensor.Dtype, batch, size, filters int, kernel, pad, stride, pool, poolStride int) model {
	rng := rand.New(rand.NewSource(2))
	g := gorgonia.NewGraph()
	x := gorgonia.NewTensor(g, dt, 4, gorgonia.WithShape(batch, 2, size, size), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 10), gorgonia.WithName("y"))
	f := param(rng, g, dt, "filter", 0.3, filters, 2, kernel, kernel)
	c := gorgonia.Must(gorgonia.Conv2d(x, f, tensor.Shape{kernel, kernel}, []int{pad, pad}, []int{stride, stride}, []int{1, 1}))
	p := gorgonia.Must(gorgonia.MaxPool2D(c, tensor.Shape{pool, pool}, []int{0, 0}, []int{poolStride, poolStride}))
	a := gorgonia.Must(gorgonia.Rectify(p))
	s := a.Shape()
	flat := gorgonia.Must(gorgonia.Reshape(a, tensor.Shape{batch, s[1] * s[2] * s[3]}))
	w := param(rng, g, dt, "w", 0.1, s[1]*s[2]*s[3], 10)
	logits := gorgonia.Must(gorgonia.Mul(flat, w))
	name := fmt.Sprintf("cnn k%d p%d s%d pool%d/%d", kernel, pad, stride, pool, poolStride)
	return onePart(tb, name, g, crossEntropy(logits, y), x, y, gorgonia.Nodes{f, w}, func(rng *rand.Rand) (*tensor.Dense, *tensor.Dense) {
		return randDense(rng, dt, 1, batch, 2, size, size), oneHot(rng, dt, batch, 10)
	})
}

// compareWithCPU trains m for steps steps of micro micro-batches on e and
// on the CPU executor side by side and requires, within tol, the same
// losses, the same mean gradients (the solver's first state slot, which
// holds them after the first step of SGD with momentum or Adam's m/(1−β1))
// and the same parameters after every step.
func compareWithCPU(t *testing.T, e exec.Executor, m model, cfg exec.SolverConfig, steps, micro int) {
	t.Helper()
	ctx := context.Background()
	open := func(e exec.Executor) exec.Session {
		spec := m.spec
		spec.Solver = cfg
		s, err := e.Open(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	cpu, dev := open(exec.NewCPU()), open(e)
	rng := rand.New(rand.NewSource(3))
	var worst float64
	check := func(what string, got, want *tensor.Dense) {
		t.Helper()
		d := maxRelDiff(got, want)
		worst = math.Max(worst, d)
		if d > tol || math.IsNaN(d) {
			t.Fatalf("%s: %s differs from the CPU by %.3g (relative), tolerance %g", m.name, what, d, tol)
		}
	}
	for step := 0; step < steps; step++ {
		for mb := 0; mb < micro; mb++ {
			x, y := m.batch(rng)
			feeds := map[int64]*tensor.Dense{m.x: x, m.y: y}
			want, err := cpu.Forward(ctx, mb, feeds)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dev.Forward(ctx, mb, feeds)
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("step %d micro-batch %d loss", step, mb), got[m.spec.Loss], want[m.spec.Loss])
		}
		for mb := 0; mb < micro; mb++ {
			if _, err := cpu.Backward(ctx, mb, map[int64]*tensor.Dense{}); err != nil {
				t.Fatal(err)
			}
			if _, err := dev.Backward(ctx, mb, map[int64]*tensor.Dense{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := cpu.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if err := dev.Step(ctx); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, id := range m.learn {
			names = append(names, exec.ParamName(id))
			if slots := solverSlots(cfg); len(slots) > 0 {
				names = append(names, exec.StateName(id, slots[0]))
			}
		}
		want, err := cpu.Get(ctx, names...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dev.Get(ctx, names...)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			check(fmt.Sprintf("step %d %s", step, n), got[n], want[n])
		}
	}
	t.Logf("%s, %v: worst relative difference from the CPU %.2g", m.name, cfg.Kind, worst)
}

// TestMLPMatchesCPU runs the 784-1024-1024-10 MLP in float32 on
// the reference device: losses, gradients and parameters after three
// steps of two micro-batches each agree with the CPU executor within 1e-5.
func TestMLPMatchesCPU(t *testing.T) {
	m := mlp(t, tensor.Float32, 32, 784, 1024, 1024, 10)
	compareWithCPU(t, newReference(), m, exec.SGD(0.05, 0.9), 3, 2)
}

// TestSolversMatchCPU covers every solver kind and option on a small MLP.
func TestSolversMatchCPU(t *testing.T) {
	m := mlp(t, tensor.Float32, 8, 12, 16, 5)
	adamw := exec.AdamW(0.01, 0.1)
	clipped := exec.SGD(0.1, 0)
	clipped.ClipNorm, clipped.ClipValue = 0.5, 0.05
	sched := exec.Nesterov(0.1, 0.8)
	sched.Schedule, sched.CosineSteps, sched.MinLearnRate = exec.ScheduleCosine, 3, 0.01
	decay := exec.RMSProp(0.01)
	decay.WeightDecay = 0.01
	for _, tc := range []struct {
		name string
		cfg  exec.SolverConfig
	}{
		{"sgd", exec.SGD(0.1, 0)}, {"momentum", exec.SGD(0.1, 0.9)}, {"adam", exec.Adam(0.01)}, {"adamw", adamw},
		{"rmsprop+decay", decay}, {"sgd+clip", clipped}, {"nesterov+cosine", sched},
	} {
		t.Run(tc.name, func(t *testing.T) { compareWithCPU(t, newReference(), m, tc.cfg, 3, 2) })
	}
}

// TestCNNMatchesCPU runs convolutional nets (im2col, matmul, transpose,
// max pooling with and without overlapping windows) in float32.
func TestCNNMatchesCPU(t *testing.T) {
	for _, m := range []model{
		cnn(t, tensor.Float32, 4, 8, 4, 3, 1, 1, 2, 2),
		cnn(t, tensor.Float32, 3, 9, 3, 3, 0, 2, 2, 1),
		cnn(t, tensor.Float32, 2, 11, 5, 5, 2, 1, 3, 2),
	} {
		t.Run(m.name, func(t *testing.T) { compareWithCPU(t, newReference(), m, exec.SGD(0.05, 0.9), 2, 2) })
	}
}

// residual is two residual tanh blocks with skip connections, a concat of
// the trunk and both branches, and a dense head.
func residual(tb testing.TB, dt tensor.Dtype, batch int) model {
	rng := rand.New(rand.NewSource(3))
	g := gorgonia.NewGraph()
	const width = 16
	x := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, width), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 3), gorgonia.WithName("y"))
	var learn gorgonia.Nodes
	h := x
	var branches gorgonia.Nodes
	for blk := 0; blk < 2; blk++ {
		w := param(rng, g, dt, fmt.Sprint("w", blk), 0.2, width, width)
		b := param(rng, g, dt, fmt.Sprint("b", blk), 0.1, width)
		learn = append(learn, w, b)
		z := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		z = gorgonia.Must(gorgonia.Tanh(z))
		h = gorgonia.Must(gorgonia.Add(h, z))
		branches = append(branches, z)
	}
	cat := gorgonia.Must(gorgonia.Concat(1, h, branches[0], branches[1]))
	wo := param(rng, g, dt, "wo", 0.2, 3*width, 3)
	learn = append(learn, wo)
	logits := gorgonia.Must(gorgonia.Mul(cat, wo))
	return onePart(tb, "residual", g, crossEntropy(logits, y), x, y, learn, func(rng *rand.Rand) (*tensor.Dense, *tensor.Dense) {
		return randDense(rng, dt, 1, batch, width), oneHot(rng, dt, batch, 3)
	})
}

// TestResidualMatchesCPU covers skip connections (a gradient summed from
// two consumers) and concat.
func TestResidualMatchesCPU(t *testing.T) {
	compareWithCPU(t, newReference(), residual(t, tensor.Float32, 8), exec.Adam(0.01), 3, 2)
}

package exec_test

import (
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// model is a Gorgonia graph with a loss, its learnables, its data inputs
// and a source of mini-batches.
type model struct {
	g     *gorgonia.ExprGraph
	loss  *gorgonia.Node
	learn gorgonia.Nodes
	data  gorgonia.Nodes
	dtype tensor.Dtype
	eval  bool
	batch func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense
}

func randDense(rng *rand.Rand, dt tensor.Dtype, scale float64, shape ...int) *tensor.Dense {
	t := tensor.New(tensor.Of(dt), tensor.WithShape(shape...))
	switch d := t.Data().(type) {
	case []float64:
		for i := range d {
			d[i] = rng.NormFloat64() * scale
		}
	case []float32:
		for i := range d {
			d[i] = float32(rng.NormFloat64() * scale)
		}
	}
	return t
}

func oneHot(rng *rand.Rand, dt tensor.Dtype, batch, classes int) *tensor.Dense {
	t := tensor.New(tensor.Of(dt), tensor.WithShape(batch, classes))
	for i := 0; i < batch; i++ {
		c := rng.Intn(classes)
		switch d := t.Data().(type) {
		case []float32:
			d[i*classes+c] = 1
		case []float64:
			d[i*classes+c] = 1
		}
	}
	return t
}

func crossEntropy(logits, onehot *gorgonia.Node) *gorgonia.Node {
	lsm := gorgonia.Must(gorgonia.LogSoftMax(logits))
	prod := gorgonia.Must(gorgonia.HadamardProd(lsm, onehot))
	return gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(prod))))
}

func param(rng *rand.Rand, g *gorgonia.ExprGraph, dt tensor.Dtype, name string, scale float64, shape ...int) *gorgonia.Node {
	return gorgonia.NewTensor(g, dt, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name),
		gorgonia.WithValue(randDense(rng, dt, scale, shape...)))
}

// mlpModel is a ReLU MLP in → hidden... → out with a softmax
// cross-entropy loss.
func mlpModel(dt tensor.Dtype, batch int, sizes ...int) model {
	rng := rand.New(rand.NewSource(1))
	g := gorgonia.NewGraph()
	in, out := sizes[0], sizes[len(sizes)-1]
	x := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, out), gorgonia.WithName("y"))
	var learn gorgonia.Nodes
	h := x
	for i := 0; i+1 < len(sizes); i++ {
		w := param(rng, g, dt, "w"+string(rune('1'+i)), math.Sqrt(2/float64(sizes[i])), sizes[i], sizes[i+1])
		b := param(rng, g, dt, "b"+string(rune('1'+i)), 0.01, sizes[i+1])
		learn = append(learn, w, b)
		h = gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		if i+2 < len(sizes) {
			h = gorgonia.Must(gorgonia.Rectify(h))
		}
	}
	loss := crossEntropy(h, y)
	return model{g: g, loss: loss, learn: learn, data: gorgonia.Nodes{x, y}, dtype: dt,
		batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: randDense(rng, dt, 1, batch, in), y: oneHot(rng, dt, batch, out)}
		}}
}

// cnnModel is Conv2d → MaxPool2D → BatchNorm → ReLU → Dropout → dense
// head, run in evaluation mode (BatchNorm on running statistics, Dropout
// off) so that micro-batches do not change the numbers.
func cnnModel(dt tensor.Dtype, batch int) model {
	rng := rand.New(rand.NewSource(2))
	g := gorgonia.NewGraph()
	x := gorgonia.NewTensor(g, dt, 4, gorgonia.WithShape(batch, 1, 8, 8), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 10), gorgonia.WithName("y"))
	f := param(rng, g, dt, "filter", 0.3, 4, 1, 3, 3)
	scale := param(rng, g, dt, "bn_scale", 0.3, 1, 4, 1, 1)
	bias := param(rng, g, dt, "bn_bias", 0.3, 1, 4, 1, 1)
	w := param(rng, g, dt, "w", 0.1, 64, 10)
	c := gorgonia.Must(gorgonia.Conv2d(x, f, tensor.Shape{3, 3}, []int{1, 1}, []int{1, 1}, []int{1, 1}))
	p := gorgonia.Must(gorgonia.MaxPool2D(c, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2}))
	bn, _, _, bnOp, err := gorgonia.BatchNorm(p, scale, bias, 0.9, 1e-5)
	if err != nil {
		panic(err)
	}
	a := gorgonia.Must(gorgonia.Rectify(bn))
	d := gorgonia.Must(gorgonia.Dropout(a, 0.25))
	flat := gorgonia.Must(gorgonia.Reshape(d, tensor.Shape{batch, 64}))
	logits := gorgonia.Must(gorgonia.Mul(flat, w))
	loss := crossEntropy(logits, y)
	mean, variance := randDense(rng, dt, 0.2, 4), randDense(rng, dt, 0.2, 4)
	switch v := variance.Data().(type) {
	case []float64:
		for i := range v {
			v[i] = v[i]*v[i] + 0.5
		}
	case []float32:
		for i := range v {
			v[i] = v[i]*v[i] + 0.5
		}
	}
	if err := bnOp.SetStats(mean, variance); err != nil {
		panic(err)
	}
	return model{g: g, loss: loss, learn: gorgonia.Nodes{f, scale, bias, w}, data: gorgonia.Nodes{x, y}, dtype: dt, eval: true,
		batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: randDense(rng, dt, 1, batch, 1, 8, 8), y: oneHot(rng, dt, batch, 10)}
		}}
}

// residualModel is two residual blocks with skip connections, a Concat of
// the trunk and both branches, and a head.
func residualModel(dt tensor.Dtype, batch int) model {
	rng := rand.New(rand.NewSource(3))
	g := gorgonia.NewGraph()
	const width = 16
	x := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, width), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 3), gorgonia.WithName("y"))
	var learn gorgonia.Nodes
	h := x
	var branches gorgonia.Nodes
	for blk := 0; blk < 2; blk++ {
		w := param(rng, g, dt, "w"+string(rune('a'+blk)), 0.2, width, width)
		b := param(rng, g, dt, "b"+string(rune('a'+blk)), 0.1, width)
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
	loss := crossEntropy(logits, y)
	return model{g: g, loss: loss, learn: learn, data: gorgonia.Nodes{x, y}, dtype: dt,
		batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: randDense(rng, dt, 1, batch, width), y: oneHot(rng, dt, batch, 3)}
		}}
}

// reference trains m in one process: Gorgonia's tape machine computes the
// gradients, exec.Solver applies them. It returns the loss of every step
// and the final parameters.
func reference(t testing.TB, m model, cfg exec.SolverConfig, steps int, seed int64) ([]float64, []*tensor.Dense) {
	t.Helper()
	grads, err := gorgonia.Grad(m.loss, m.learn...)
	if err != nil {
		t.Fatal(err)
	}
	var lossVal gorgonia.Value
	gorgonia.Read(m.loss, &lossVal)
	var opts []gorgonia.VMOpt
	if m.eval {
		opts = append(opts, gorgonia.EvalMode())
	}
	vm := gorgonia.NewTapeMachine(m.g, opts...)
	defer vm.Close()
	solver, err := exec.NewSolver(cfg, len(m.learn))
	if err != nil {
		t.Fatal(err)
	}
	params := make([]*tensor.Dense, len(m.learn))
	for i, n := range m.learn {
		params[i] = n.Value().(*tensor.Dense)
	}
	batch := m.batch(rand.New(rand.NewSource(seed)))
	var losses []float64
	for s := 0; s < steps; s++ {
		for n, v := range batch {
			if err := gorgonia.Let(n, v); err != nil {
				t.Fatal(err)
			}
		}
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, scalar(lossVal))
		gs := make([]*tensor.Dense, len(grads))
		for i, gn := range grads {
			gs[i] = gn.Value().(*tensor.Dense).Clone().(*tensor.Dense)
		}
		if err := solver.Update(params, gs, 1); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]*tensor.Dense, len(params))
	for i, p := range params {
		out[i] = p.Clone().(*tensor.Dense)
	}
	return losses, out
}

func scalar(v gorgonia.Value) float64 {
	switch d := v.Data().(type) {
	case float64:
		return d
	case float32:
		return float64(d)
	case []float64:
		return d[0]
	case []float32:
		return float64(d[0])
	}
	panic("not a scalar")
}

// chunks assigns the op nodes of g to k parts in contiguous runs of its
// topological order, balanced by count, and each learnable to the part of
// its first consumer.
func chunks(g *graph.Graph, k int) [][]int64 {
	var ops []int64
	for _, n := range g.Nodes() {
		if n.Role == graph.RoleOp {
			ops = append(ops, n.ID)
		}
	}
	part := make(map[int64]int)
	parts := make([][]int64, k)
	for i, id := range ops {
		p := i * k / len(ops)
		part[id] = p
		parts[p] = append(parts[p], id)
	}
	for _, id := range g.Learnables() {
		p := part[g.Consumers(id)[0]]
		parts[p] = append(parts[p], id)
	}
	return parts
}

// maxRelDiff is max|a−b| / max(max|b|, 1e-30) over the elements.
func maxRelDiff(a, b *tensor.Dense) float64 {
	av, bv := floats(a), floats(b)
	var diff, mag float64
	for i := range av {
		diff = math.Max(diff, math.Abs(av[i]-bv[i]))
		mag = math.Max(mag, math.Abs(bv[i]))
	}
	return diff / math.Max(mag, 1e-30)
}

func floats(t *tensor.Dense) []float64 {
	switch d := t.Data().(type) {
	case []float64:
		return d
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case float64:
		return []float64{d}
	case float32:
		return []float64{float64(d)}
	}
	panic("not float")
}

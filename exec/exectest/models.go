package exectest

import (
	"context"
	"math"
	"math/rand"
	"slices"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// Model is a Gorgonia graph with a loss, its learnables, its data inputs
// and a source of mini-batches: what EqualsOneProcess trains, and what
// the tests of package exec train across parts.
type Model struct {
	G     *gorgonia.ExprGraph
	Loss  *gorgonia.Node
	Learn gorgonia.Nodes
	Data  gorgonia.Nodes // the inputs fed on every step: samples, then targets
	DType tensor.Dtype
	Eval  bool // trained in evaluation mode (exec.WithEvalMode)
	Batch func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense
}

// Normal is a tensor of shape with independent N(0, scale²) elements.
func Normal(rng *rand.Rand, dt tensor.Dtype, scale float64, shape ...int) *tensor.Dense {
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

// OneHot is a batch × classes matrix with one 1 per row, in a random
// column.
func OneHot(rng *rand.Rand, dt tensor.Dtype, batch, classes int) *tensor.Dense {
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
		gorgonia.WithValue(Normal(rng, dt, scale, shape...)))
}

// MLP is a ReLU MLP sizes[0] → … → sizes[last] with a bias per layer and
// a softmax cross-entropy loss.
func MLP(dt tensor.Dtype, batch int, sizes ...int) Model {
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
	return Model{G: g, Loss: loss, Learn: learn, Data: gorgonia.Nodes{x, y}, DType: dt,
		Batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: Normal(rng, dt, 1, batch, in), y: OneHot(rng, dt, batch, out)}
		}}
}

// CNN is the network of ravdl's examples/cnn on small shapes: input
// (batch, 1, 12, 12) → Conv2d(4 filters, 3×3, same padding) with a bias
// per filter (BroadcastAdd over axes 0, 2, 3) → ReLU → MaxPool2D(2) →
// Conv2d(8, 3×3, same) + bias → ReLU → MaxPool2D(2) → Reshape to
// (batch, 72) → dense layer with a bias → LogSoftMax cross-entropy
// (summed over the classes, averaged over the batch, as ravdl's loss).
// Every op in it is one that exec/plan lowers.
func CNN(dt tensor.Dtype, batch int) Model {
	rng := rand.New(rand.NewSource(4))
	g := gorgonia.NewGraph()
	const size, classes = 12, 10
	x := gorgonia.NewTensor(g, dt, 4, gorgonia.WithShape(batch, 1, size, size), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, classes), gorgonia.WithName("y"))
	var learn gorgonia.Nodes
	h := x
	for i, c := range []struct{ in, out int }{{1, 4}, {4, 8}} {
		f := param(rng, g, dt, "filter"+string(rune('1'+i)), math.Sqrt(2/float64(9*c.in)), c.out, c.in, 3, 3)
		b := param(rng, g, dt, "bias"+string(rune('1'+i)), 0.01, c.out)
		learn = append(learn, f, b)
		h = gorgonia.Must(gorgonia.Conv2d(h, f, tensor.Shape{3, 3}, []int{1, 1}, []int{1, 1}, []int{1, 1}))
		h = gorgonia.Must(gorgonia.BroadcastAdd(h, b, nil, []byte{0, 2, 3}))
		h = gorgonia.Must(gorgonia.Rectify(h))
		h = gorgonia.Must(gorgonia.MaxPool2D(h, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2}))
	}
	s := h.Shape()
	flat := gorgonia.Must(gorgonia.Reshape(h, tensor.Shape{batch, s[1] * s[2] * s[3]}))
	w := param(rng, g, dt, "w", math.Sqrt(2/float64(s[1]*s[2]*s[3])), s[1]*s[2]*s[3], classes)
	b := param(rng, g, dt, "b", 0.01, classes)
	learn = append(learn, w, b)
	logits := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(flat, w)), b, nil, []byte{0}))
	lsm := gorgonia.Must(gorgonia.LogSoftMax(logits, 1))
	prod := gorgonia.Must(gorgonia.HadamardProd(lsm, y))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.Sum(prod, 1))))))
	return Model{G: g, Loss: loss, Learn: learn, Data: gorgonia.Nodes{x, y}, DType: dt,
		Batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: Normal(rng, dt, 1, batch, 1, size, size), y: OneHot(rng, dt, batch, classes)}
		}}
}

// BatchNormCNN is Conv2d → MaxPool2D → BatchNorm → ReLU → Dropout →
// dense head, run in evaluation mode (BatchNorm on running statistics,
// Dropout off) so that micro-batches do not change the numbers. exec/plan
// does not lower BatchNorm.
func BatchNormCNN(dt tensor.Dtype, batch int) Model {
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
	mean, variance := Normal(rng, dt, 0.2, 4), Normal(rng, dt, 0.2, 4)
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
	return Model{G: g, Loss: loss, Learn: gorgonia.Nodes{f, scale, bias, w}, Data: gorgonia.Nodes{x, y}, DType: dt, Eval: true,
		Batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: Normal(rng, dt, 1, batch, 1, 8, 8), y: OneHot(rng, dt, batch, 10)}
		}}
}

// Residual is two residual tanh blocks with skip connections, a Concat of
// the trunk and both branches, and a dense head: a DAG whose cuts send a
// value to several parts.
func Residual(dt tensor.Dtype, batch int) Model {
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
	return Model{G: g, Loss: loss, Learn: learn, Data: gorgonia.Nodes{x, y}, DType: dt,
		Batch: func(rng *rand.Rand) map[*gorgonia.Node]*tensor.Dense {
			return map[*gorgonia.Node]*tensor.Dense{x: Normal(rng, dt, 1, batch, width), y: OneHot(rng, dt, batch, 3)}
		}}
}

// Reference trains m in one process: Gorgonia's tape machine computes the
// gradients of the whole mini-batch (m.Batch of a source seeded with
// seed, the same batch on every step), exec.Solver applies them. It
// returns the loss of every step and the final parameters (in m.Learn
// order). It updates m's learnables in place: build a fresh Model for
// each run.
func Reference(t testing.TB, m Model, cfg exec.SolverConfig, steps int, seed int64) ([]float64, []*tensor.Dense) {
	t.Helper()
	grads, err := gorgonia.Grad(m.Loss, m.Learn...)
	if err != nil {
		t.Fatal(err)
	}
	var lossVal gorgonia.Value
	gorgonia.Read(m.Loss, &lossVal)
	var opts []gorgonia.VMOpt
	if m.Eval {
		opts = append(opts, gorgonia.EvalMode())
	}
	vm := gorgonia.NewTapeMachine(m.G, opts...)
	defer vm.Close()
	solver, err := exec.NewSolver(cfg, len(m.Learn))
	if err != nil {
		t.Fatal(err)
	}
	params := make([]*tensor.Dense, len(m.Learn))
	for i, n := range m.Learn {
		params[i] = n.Value().(*tensor.Dense)
	}
	batch := m.Batch(rand.New(rand.NewSource(seed)))
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
	panic("exectest: not a scalar")
}

// Chunks assigns the op nodes of g to k parts in contiguous runs of its
// topological order, balanced by count, and each learnable to the part of
// its first consumer.
func Chunks(g *graph.Graph, k int) [][]int64 {
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

// SameBits reports whether a and b hold the same float32 or float64
// values to the bit.
func SameBits(a, b *tensor.Dense) bool {
	switch x := a.Data().(type) {
	case []float64:
		y, ok := b.Data().([]float64)
		return ok && slices.EqualFunc(x, y, func(p, q float64) bool { return math.Float64bits(p) == math.Float64bits(q) })
	case []float32:
		y, ok := b.Data().([]float32)
		return ok && slices.EqualFunc(x, y, func(p, q float32) bool { return math.Float32bits(p) == math.Float32bits(q) })
	}
	return false
}

// MaxRelDiff is max|a−b| / max(max|b|, 1e-30) over the elements of two
// float tensors of the same size: NaN when a holds one.
func MaxRelDiff(a, b *tensor.Dense) float64 {
	av, bv := floats(a), floats(b)
	var diff, mag float64
	for i := range av {
		d := math.Abs(av[i] - bv[i])
		if math.IsNaN(d) {
			return math.NaN()
		}
		diff = math.Max(diff, d)
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
	panic("exectest: not a float tensor")
}

// TrainReplicas takes steps of rs on m's mini-batch of seed, checks after
// every step that the replicas' parameters agree to the bit, and returns
// the losses and replica 0's final parameters in m.Learn order.
func TrainReplicas(t testing.TB, m Model, rs *exec.Replicas, steps int, seed int64) ([]float64, []*tensor.Dense) {
	t.Helper()
	ctx := context.Background()
	feeds := make(map[int64]*tensor.Dense)
	for n, v := range m.Batch(rand.New(rand.NewSource(seed))) {
		feeds[int64(n.ID())] = v
	}
	var losses []float64
	var params map[int64]*tensor.Dense
	for s := range steps {
		l, err := rs.Step(ctx, feeds)
		if err != nil {
			t.Fatalf("step %d: %v", s, err)
		}
		losses = append(losses, l)
		for i, p := range rs.Pipelines() {
			got, err := p.Params(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				params = got
				continue
			}
			for id, v := range got {
				if !SameBits(v, params[id]) {
					t.Fatalf("step %d: replica %d's parameter %d differs from replica 0's", s, i, id)
				}
			}
		}
	}
	out := make([]*tensor.Dense, len(m.Learn))
	for i, n := range m.Learn {
		out[i] = params[int64(n.ID())]
	}
	return losses, out
}

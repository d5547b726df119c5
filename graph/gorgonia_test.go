package graph

import (
	"errors"
	"math"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// randDense returns a seeded random tensor of the given dtype and shape.
func randDense(rng *rand.Rand, dt tensor.Dtype, scale float64, shape ...int) *tensor.Dense {
	n := 1
	for _, d := range shape {
		n *= d
	}
	switch dt {
	case tensor.Float32:
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * scale)
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	default:
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64() * scale
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	}
}

// evalResult is what one forward+backward run of a model computes.
type evalResult struct {
	loss  float64
	grads []*tensor.Dense
}

// evaluate runs loss and d loss / d learnables on a tape machine. feeds
// binds input values; learnables must already have values. Grad adds
// nodes to g, so call it only after the graph was read.
func evaluate(t *testing.T, g *gorgonia.ExprGraph, loss *gorgonia.Node, learn gorgonia.Nodes, feeds map[*gorgonia.Node]*tensor.Dense, eval bool) evalResult {
	t.Helper()
	grads, err := gorgonia.Grad(loss, learn...)
	require.NoError(t, err)
	var lossV gorgonia.Value
	gorgonia.Read(loss, &lossV)
	gv := make([]gorgonia.Value, len(grads))
	for i, gr := range grads {
		gorgonia.Read(gr, &gv[i])
	}
	var opts []gorgonia.VMOpt
	if eval {
		opts = append(opts, gorgonia.EvalMode())
	}
	vm := gorgonia.NewTapeMachine(g, opts...)
	defer vm.Close()
	for n, v := range feeds {
		require.NoError(t, gorgonia.Let(n, v.Clone()))
	}
	require.NoError(t, vm.RunAll())
	res := evalResult{}
	switch d := lossV.Data().(type) {
	case float64:
		res.loss = d
	case float32:
		res.loss = float64(d)
	default:
		t.Fatalf("loss of type %T", d)
	}
	for _, v := range gv {
		res.grads = append(res.grads, v.(*tensor.Dense).Clone().(*tensor.Dense))
	}
	return res
}

// model is a forward graph with its loss, learnables and fed inputs.
type model struct {
	g      *gorgonia.ExprGraph
	loss   *gorgonia.Node
	learn  gorgonia.Nodes
	feeds  map[*gorgonia.Node]*tensor.Dense
	eval   bool                        // run in eval mode (batch norm uses running statistics, dropout is the identity)
	setup  func(g *gorgonia.ExprGraph) // called before running, for instance to set batch-norm statistics
	exact  bool                        // the rebuilt graph runs the identical op sequence
	dtype  tensor.Dtype
	reread func(ir *Graph)
}

// checkRoundTrip reads m, ships it as bytes, rebuilds it, and compares the
// loss and every learnable's gradient with the original's.
func checkRoundTrip(t *testing.T, m model) {
	t.Helper()
	ir, err := FromGorgonia(m.g, Learnables(m.learn...), WithValues())
	require.NoError(t, err)
	require.NoError(t, ir.Validate())
	ir = shipped(t, ir)

	dst := gorgonia.NewGraph()
	lowered, err := ir.Lower(dst)
	require.NoError(t, err)
	feeds2 := map[*gorgonia.Node]*tensor.Dense{}
	for n, v := range m.feeds {
		feeds2[lowered[n.ID()]] = v
	}
	learn2 := make(gorgonia.Nodes, len(m.learn))
	for i, l := range m.learn {
		learn2[i] = lowered[l.ID()]
		require.NotNil(t, learn2[i].Value(), "learnable %s has no value after lowering", l.Name())
	}
	if m.setup != nil {
		m.setup(m.g)
		m.setup(dst)
	}
	want := evaluate(t, m.g, m.loss, m.learn, m.feeds, m.eval)
	got := evaluate(t, dst, lowered[m.loss.ID()], learn2, feeds2, m.eval)

	tol := 1e-12
	if m.dtype == tensor.Float32 {
		tol = 1e-6
	}
	if m.exact {
		tol = 0
	}
	if !close(got.loss, want.loss, tol) {
		t.Errorf("loss: got %.17g, want %.17g", got.loss, want.loss)
	}
	require.Len(t, got.grads, len(want.grads))
	for i := range want.grads {
		requireClose(t, m.learn[i].Name(), got.grads[i], want.grads[i], tol)
	}
	if math.IsNaN(want.loss) || want.loss == 0 {
		t.Errorf("degenerate loss %v: the test would not see a difference", want.loss)
	}
}

// shipped sends ir through bytes, as a requester does to a provider.
func shipped(t *testing.T, ir *Graph) *Graph {
	t.Helper()
	b, err := ir.MarshalBinary()
	require.NoError(t, err)
	var out Graph
	require.NoError(t, out.UnmarshalBinary(b))
	return &out
}

func close(a, b, tol float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= tol*math.Max(math.Abs(a), math.Abs(b))
}

func requireClose(t *testing.T, what string, got, want *tensor.Dense, tol float64) {
	t.Helper()
	require.True(t, got.Shape().Eq(want.Shape()), "%s: shape got %v want %v", what, got.Shape(), want.Shape())
	g, w := floats(got), floats(want)
	worst := 0.0
	for i := range w {
		d := math.Abs(g[i] - w[i])
		scale := math.Max(math.Abs(w[i]), 1e-300)
		if g[i] != w[i] && d/scale > worst {
			worst = d / scale
		}
		if !close(g[i], w[i], tol) && d > tol*1e-3 {
			t.Fatalf("%s[%d]: got %.17g, want %.17g (relative error %.3g > %.3g)", what, i, g[i], w[i], d/scale, tol)
		}
	}
}

func floats(d *tensor.Dense) []float64 {
	switch v := d.Data().(type) {
	case []float64:
		return v
	case []float32:
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	case float64:
		return []float64{v}
	case float32:
		return []float64{float64(v)}
	}
	panic("unexpected data")
}

// crossEntropy is the mean softmax cross-entropy of logits against one-hot
// targets, built the numerically stable way (log-softmax).
func crossEntropy(logits, onehot *gorgonia.Node) *gorgonia.Node {
	lsm := gorgonia.Must(gorgonia.LogSoftMax(logits))
	prod := gorgonia.Must(gorgonia.HadamardProd(lsm, onehot))
	return gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(prod))))
}

func oneHot(rng *rand.Rand, dt tensor.Dtype, batch, classes int) *tensor.Dense {
	t := tensor.New(tensor.Of(dt), tensor.WithShape(batch, classes))
	for i := 0; i < batch; i++ {
		c := rng.Intn(classes)
		switch dt {
		case tensor.Float32:
			t.Data().([]float32)[i*classes+c] = 1
		default:
			t.Data().([]float64)[i*classes+c] = 1
		}
	}
	return t
}

func dense(rng *rand.Rand, g *gorgonia.ExprGraph, dt tensor.Dtype, name string, scale float64, shape ...int) *gorgonia.Node {
	return gorgonia.NewTensor(g, dt, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name),
		gorgonia.WithValue(randDense(rng, dt, scale, shape...)))
}

// mlp builds a 784-256-10 ReLU MLP with a softmax cross-entropy loss.
func mlp(dt tensor.Dtype, batch int) model {
	rng := rand.New(rand.NewSource(1))
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 784), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 10), gorgonia.WithName("y"))
	w1 := dense(rng, g, dt, "w1", 0.05, 784, 256)
	b1 := dense(rng, g, dt, "b1", 0.05, 256)
	w2 := dense(rng, g, dt, "w2", 0.05, 256, 10)
	b2 := dense(rng, g, dt, "b2", 0.05, 10)
	h := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(x, w1)), b1, nil, []byte{0}))
	h = gorgonia.Must(gorgonia.Rectify(h))
	logits := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w2)), b2, nil, []byte{0}))
	loss := crossEntropy(logits, y)
	return model{g: g, loss: loss, learn: gorgonia.Nodes{w1, b1, w2, b2}, dtype: dt, exact: true,
		feeds: map[*gorgonia.Node]*tensor.Dense{x: randDense(rng, dt, 1, batch, 784), y: oneHot(rng, dt, batch, 10)}}
}

// cnn builds Conv2d → MaxPool2D → BatchNorm → ReLU → Dropout → dense head.
func cnn(dt tensor.Dtype) model {
	rng := rand.New(rand.NewSource(2))
	g := gorgonia.NewGraph()
	const batch = 4
	x := gorgonia.NewTensor(g, dt, 4, gorgonia.WithShape(batch, 1, 8, 8), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 10), gorgonia.WithName("y"))
	f := dense(rng, g, dt, "filter", 0.3, 4, 1, 3, 3)
	scale := dense(rng, g, dt, "bn_scale", 0.3, 1, 4, 1, 1)
	bias := dense(rng, g, dt, "bn_bias", 0.3, 1, 4, 1, 1)
	w := dense(rng, g, dt, "w", 0.1, 64, 10)
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
	switch v := variance.Data().(type) { // variances must be positive
	case []float64:
		for i := range v {
			v[i] = v[i]*v[i] + 0.5
		}
	case []float32:
		for i := range v {
			v[i] = v[i]*v[i] + 0.5
		}
	}
	_ = bnOp
	setStats := func(g *gorgonia.ExprGraph) {
		for _, n := range g.AllNodes() {
			if op, ok := n.Op().(*gorgonia.BatchNormOp); ok {
				if err := op.SetStats(mean, variance); err != nil {
					panic(err)
				}
			}
		}
	}
	setStats(g) // the statistics travel with the graph
	return model{g: g, loss: loss, learn: gorgonia.Nodes{f, scale, bias, w}, dtype: dt, eval: true, exact: true,
		feeds: map[*gorgonia.Node]*tensor.Dense{x: randDense(rng, dt, 1, batch, 1, 8, 8), y: oneHot(rng, dt, batch, 10)}}
}

// residual builds two residual blocks, a Concat of both branches and a head.
func residual(dt tensor.Dtype) model {
	rng := rand.New(rand.NewSource(3))
	g := gorgonia.NewGraph()
	const batch, width = 6, 16
	x := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, width), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, 3), gorgonia.WithName("y"))
	var learn gorgonia.Nodes
	h := x
	var branches gorgonia.Nodes
	for blk := 0; blk < 2; blk++ {
		w := dense(rng, g, dt, "w"+string(rune('a'+blk)), 0.2, width, width)
		b := dense(rng, g, dt, "b"+string(rune('a'+blk)), 0.1, width)
		learn = append(learn, w, b)
		z := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		z = gorgonia.Must(gorgonia.Tanh(z))
		h = gorgonia.Must(gorgonia.Add(h, z)) // skip connection
		branches = append(branches, z)
	}
	cat := gorgonia.Must(gorgonia.Concat(1, h, branches[0], branches[1]))
	wo := dense(rng, g, dt, "wo", 0.2, 3*width, 3)
	learn = append(learn, wo)
	logits := gorgonia.Must(gorgonia.Mul(cat, wo))
	loss := crossEntropy(logits, y)
	return model{g: g, loss: loss, learn: learn, dtype: dt, exact: true,
		feeds: map[*gorgonia.Node]*tensor.Dense{x: randDense(rng, dt, 1, batch, width), y: oneHot(rng, dt, batch, 3)}}
}

func TestRoundTripModels(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		for name, build := range map[string]func(tensor.Dtype) model{
			"mlp":      func(dt tensor.Dtype) model { return mlp(dt, 16) },
			"cnn":      cnn,
			"residual": residual,
		} {
			t.Run(name+"/"+dt.String(), func(t *testing.T) { checkRoundTrip(t, build(dt)) })
		}
	}
}

func TestMLPStructure(t *testing.T) {
	m := mlp(tensor.Float64, 4)
	ir, err := FromGorgonia(m.g, Learnables(m.learn...))
	require.NoError(t, err)
	kinds := map[OpKind]int{}
	for _, n := range ir.Nodes() {
		kinds[n.Op.Kind]++
		if n.IsLearnable() && n.Value != nil {
			t.Errorf("learnable %s carries a value without WithValues", n.Name)
		}
	}
	want := map[OpKind]int{KindMatMul: 2, KindBroadcastAdd: 2, KindSizeOf: 2, KindRepeat: 0, KindReshape: 0, KindSoftmax: 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%s nodes: got %d, want %d", k, kinds[k], n)
		}
	}
	require.Len(t, ir.Learnables(), 4)
	for _, l := range m.learn {
		n, ok := ir.Node(l.ID())
		require.True(t, ok, "learnable %s missing", l.Name())
		require.True(t, n.IsLearnable())
	}
}

func TestFromGorgoniaErrors(t *testing.T) {
	t.Run("unsupported op", func(t *testing.T) {
		g := gorgonia.NewGraph()
		x := gorgonia.NewTensor(g, tensor.Float64, 4, gorgonia.WithShape(1, 1, 2, 2), gorgonia.WithName("x"))
		up := gorgonia.Must(gorgonia.Upsample2D(x, 1))
		_, err := FromGorgonia(g)
		var ue *UnsupportedOpError
		require.True(t, errors.As(err, &ue), "got %v", err)
		require.Equal(t, up.ID(), ue.Node)
		require.Contains(t, ue.GoType, "upsample")
	})
	t.Run("read node", func(t *testing.T) {
		g := gorgonia.NewGraph()
		x := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(2), gorgonia.WithName("x"))
		var v gorgonia.Value
		r := gorgonia.Read(gorgonia.Must(gorgonia.Square(x)), &v)
		_, err := FromGorgonia(g)
		var ue *UnsupportedOpError
		require.True(t, errors.As(err, &ue), "got %v", err)
		require.Equal(t, r.ID(), ue.Node)
	})
	t.Run("learnable not an input", func(t *testing.T) {
		g := gorgonia.NewGraph()
		x := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(2), gorgonia.WithName("x"))
		s := gorgonia.Must(gorgonia.Square(x))
		_, err := FromGorgonia(g, Learnables(s))
		var ne *NodeError
		require.True(t, errors.As(err, &ne), "got %v", err)
		require.Equal(t, s.ID(), ne.ID)
		require.ErrorIs(t, err, ErrInvalid)
	})
	t.Run("learnable from another graph", func(t *testing.T) {
		g, other := gorgonia.NewGraph(), gorgonia.NewGraph()
		gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(2), gorgonia.WithName("x"))
		o := gorgonia.NewVector(other, tensor.Float64, gorgonia.WithShape(3), gorgonia.WithName("o"))
		o2 := gorgonia.NewVector(other, tensor.Float64, gorgonia.WithShape(3), gorgonia.WithName("o2"))
		_ = o2
		_, err := FromGorgonia(g, Learnables(o2))
		require.ErrorIs(t, err, ErrInvalid)
		_ = o
	})
}

func TestConcurrentReaders(t *testing.T) {
	m := mlp(tensor.Float64, 2)
	ir, err := FromGorgonia(m.g)
	require.NoError(t, err)
	last := ir.Nodes()[ir.Len()-1].ID
	done := make(chan []int64)
	for i := 0; i < 4; i++ {
		go func() { done <- append(ir.Outputs(), ir.Consumers(ir.Nodes()[0].ID)...) }()
	}
	for i := 0; i < 4; i++ {
		got := <-done
		require.Equal(t, last, got[0], "outputs")
	}
}

package ravdl

import (
	"fmt"
	"math/rand"
	"strings"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Model is a Sequential model: layers applied one after the other. Its
// parameters are created, from the seed, when it is built (by Build or
// the first Fit) and live in the model between calls; Fit trains them
// on executors and brings them back.
type Model struct {
	layers   []Layer
	built    bool
	dtype    tensor.Dtype
	inShape  []int // one sample
	outShape []int // one sample's output
	params   map[string]*tensor.Dense
	order    []string // parameter names in creation order
	rng      *rand.Rand
	hasBN    bool
}

// Sequential returns a model of the layers, in order.
func Sequential(layers ...Layer) *Model {
	m := &Model{layers: append([]Layer{}, layers...), params: make(map[string]*tensor.Dense)}
	for _, l := range layers {
		if _, ok := l.(*batchNorm); ok {
			m.hasBN = true
		}
	}
	return m
}

// Layers returns the model's layers.
func (m *Model) Layers() []Layer { return append([]Layer{}, m.layers...) }

// Built reports whether the model has its parameters.
func (m *Model) Built() bool { return m.built }

// DType is the dtype of the parameters (Float32 unless built with
// Float64).
func (m *Model) DType() tensor.Dtype { return m.dtype }

// InputShape and OutputShape are the shapes of one sample, known once
// the model is built.
func (m *Model) InputShape() []int  { return append([]int{}, m.inShape...) }
func (m *Model) OutputShape() []int { return append([]int{}, m.outShape...) }

// NumParams is the number of trainable values.
func (m *Model) NumParams() int {
	n := 0
	for _, p := range m.params {
		n += p.Shape().TotalSize()
	}
	return n
}

// Params returns copies of the parameters by name ("0.dense/w": layer 0,
// a Dense layer, its weights).
func (m *Model) Params() map[string]*tensor.Dense {
	out := make(map[string]*tensor.Dense, len(m.params))
	for k, v := range m.params {
		out[k] = v.Clone().(*tensor.Dense)
	}
	return out
}

// Build creates the parameters for samples of shape inShape (without the
// batch axis), drawing initial values from the seed given with Seed (0 by
// default) in the dtype given with Float64 (float32 by default). Fit calls
// it when the model is not built yet; call it directly to set the seed,
// or to Predict with untrained weights.
func (m *Model) Build(inShape []int, opts ...Option) error {
	cfg := newConfig(opts)
	return m.build(inShape, cfg)
}

func (m *Model) build(inShape []int, cfg *config) error {
	if m.built {
		if !equalInts(inShape, m.inShape) {
			return &ShapeError{Layer: -1, Kind: "x", Got: append([]int{-1}, inShape...), Reason: fmt.Sprintf("the model was built for samples of shape %v", m.inShape)}
		}
		return nil
	}
	if len(m.layers) == 0 {
		return fmt.Errorf("%w: a Sequential needs at least one layer", ErrConfig)
	}
	m.dtype = cfg.dtype
	m.inShape = append([]int{}, inShape...)
	m.rng = rand.New(rand.NewSource(cfg.seed))
	ng, err := m.graph(1, modeInfer, nil)
	if err != nil {
		m.params, m.order, m.inShape = make(map[string]*tensor.Dense), nil, nil
		return err
	}
	m.outShape = append([]int{}, ng.out.Shape()[1:]...)
	m.built = true
	return nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Summary describes the layers, their output shapes and parameter counts.
func (m *Model) Summary() string {
	var b strings.Builder
	if !m.built {
		for i, l := range m.layers {
			fmt.Fprintf(&b, "%2d %s\n", i, l.Kind())
		}
		return b.String()
	}
	ng, err := m.graph(1, modeInfer, nil)
	if err != nil {
		return err.Error()
	}
	for i, l := range m.layers {
		n := 0
		prefix := fmt.Sprintf("%d.%s/", i, l.Kind())
		for k, p := range m.params {
			if strings.HasPrefix(k, prefix) {
				n += p.Shape().TotalSize()
			}
		}
		fmt.Fprintf(&b, "%2d %-10s %-14s %8d params\n", i, l.Kind(), fmt.Sprint([]int(ng.shapes[i][1:])), n)
	}
	fmt.Fprintf(&b, "total %d params, %v\n", m.NumParams(), m.dtype)
	return b.String()
}

// ---- building graphs ----

type buildMode uint8

const (
	modeInfer buildMode = iota // BatchNorm on stored statistics, no Dropout
	modeTrain                  // batch statistics, Dropout
	modeCalib                  // batch statistics, no Dropout
)

// builder carries what layers need while they add themselves to a graph.
type builder struct {
	m      *Model
	g      *gorgonia.ExprGraph
	dt     tensor.Dtype
	train  bool // BatchNorm on batch statistics
	drop   bool // Dropout active
	layer  int
	kind   string
	learn  gorgonia.Nodes
	names  []string
	stats  []bnStats
	nconst int
}

// name is a node name unique to the current layer.
func (b *builder) name(s string) string { return fmt.Sprintf("%d.%s/%s", b.layer, b.kind, s) }

// param returns the learnable node for the current layer's parameter
// name, creating its value on first use.
func (b *builder) param(name string, shape []int, init Initializer, fanIn, fanOut int) *gorgonia.Node {
	key := b.name(name)
	v, ok := b.m.params[key]
	if !ok {
		w := make([]float64, prod(shape))
		init.Fill(b.m.rng, w, fanIn, fanOut)
		v = denseOf(b.dt, w, shape)
		b.m.params[key] = v
		b.m.order = append(b.m.order, key)
	}
	n := gorgonia.NewTensor(b.g, b.dt, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(key), gorgonia.WithValue(v))
	b.learn = append(b.learn, n)
	b.names = append(b.names, key)
	return n
}

// scalar is a constant scalar of the model's dtype.
func (b *builder) scalar(v float64) *gorgonia.Node {
	if b.dt == tensor.Float32 {
		return gorgonia.NewConstant(float32(v))
	}
	return gorgonia.NewConstant(v)
}

// constVec is a named constant vector of n values (fill where vals is
// nil).
func (b *builder) constVec(name string, vals []float64, n int, fill float64) *gorgonia.Node {
	if vals == nil {
		vals = make([]float64, n)
		for i := range vals {
			vals[i] = fill
		}
	}
	return b.constTensor(name, vals, n)
}

func (b *builder) constTensor(name string, vals []float64, shape ...int) *gorgonia.Node {
	return b.g.AddNode(gorgonia.NewConstant(denseOf(b.dt, vals, shape), gorgonia.WithName(name)))
}

func (b *builder) shapeErr(l Layer, x *gorgonia.Node, reason string) error {
	return &ShapeError{Layer: b.layer, Kind: l.Kind(), Got: []int(x.Shape().Clone()), Reason: reason}
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

func denseOf(dt tensor.Dtype, vals []float64, shape []int) *tensor.Dense {
	if dt == tensor.Float32 {
		f := make([]float32, len(vals))
		for i, v := range vals {
			f[i] = float32(v)
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(f))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64{}, vals...)))
}

// netGraph is the model as a Gorgonia graph for one batch size.
type netGraph struct {
	g      *gorgonia.ExprGraph
	x, y   *gorgonia.Node
	out    *gorgonia.Node
	loss   *gorgonia.Node
	learn  gorgonia.Nodes
	names  []string
	stats  []bnStats
	shapes []tensor.Shape // output shape of each layer
}

// Node names in every graph the model builds (and so in saved models).
const (
	InputName  = "x"
	OutputName = "output"
	TargetName = "y"
	LossName   = "loss"
)

// graph builds the model for batch samples; with loss it adds the target
// input and the loss.
func (m *Model) graph(batch int, mode buildMode, loss *Loss) (ng *netGraph, err error) {
	defer func() {
		if r := recover(); r != nil { // Gorgonia panics on some shape errors
			ng, err = nil, fmt.Errorf("%w: %v", ErrShape, r)
		}
	}()
	g := gorgonia.NewGraph()
	b := &builder{m: m, g: g, dt: m.dtype, train: mode != modeInfer, drop: mode == modeTrain}
	xs := append([]int{batch}, m.inShape...)
	x := gorgonia.NewTensor(g, m.dtype, len(xs), gorgonia.WithShape(xs...), gorgonia.WithName(InputName))
	h := x
	ng = &netGraph{g: g, x: x}
	for i, l := range m.layers {
		b.layer, b.kind = i, l.Kind()
		if h, err = l.apply(b, h); err != nil {
			if _, ok := err.(*ShapeError); !ok {
				err = &ShapeError{Layer: i, Kind: l.Kind(), Got: []int(ng.lastShape(x)), Reason: err.Error()}
			}
			return nil, err
		}
		ng.shapes = append(ng.shapes, h.Shape().Clone())
	}
	if h == x {
		return nil, fmt.Errorf("%w: the model computes nothing", ErrConfig)
	}
	gorgonia.WithName(OutputName)(h)
	ng.out = h
	if loss != nil {
		ys := append([]int{batch}, m.outShape...)
		if loss.kind == lossCE && len(m.outShape) != 1 {
			return nil, &ShapeError{Layer: -1, Kind: "output", Got: ys, Reason: "cross-entropy needs (batch, classes) logits"}
		}
		ng.y = gorgonia.NewTensor(g, m.dtype, len(ys), gorgonia.WithShape(ys...), gorgonia.WithName(TargetName))
		if ng.loss, err = loss.build(b, h, ng.y); err != nil {
			return nil, err
		}
		gorgonia.WithName(LossName)(ng.loss)
	}
	ng.learn, ng.names, ng.stats = b.learn, b.names, b.stats
	return ng, nil
}

func (ng *netGraph) lastShape(x *gorgonia.Node) tensor.Shape {
	if len(ng.shapes) == 0 {
		return x.Shape()
	}
	return ng.shapes[len(ng.shapes)-1]
}

package synth

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/rookery-ml/rookery/graph"
)

// SpecError says that a synthetic-graph spec cannot be understood.
type SpecError struct {
	Spec   string
	Reason string
}

func (e *SpecError) Error() string { return fmt.Sprintf("synth: spec %q: %s", e.Spec, e.Reason) }

// Kinds lists the synthetic graph kinds that Parse understands, with their
// parameters and defaults.
func Kinds() []string {
	return []string{
		"mlp:layers=50,width=1024,batch=32",
		"resnet:blocks=16,width=256,batch=32",
		"random-dag:nodes=1000,seed=1,width=64,batch=16",
		"classifier:in=784,hidden=1024,layers=2,classes=10,batch=256,bits=32",
	}
}

// Parse builds the graph a spec names, for instance
// "mlp:layers=50,width=1024", "resnet:blocks=16" or
// "random-dag:nodes=100000,seed=1". Parameters left out take the defaults
// listed by Kinds.
func Parse(spec string) (*graph.Graph, error) {
	kind, rest, _ := strings.Cut(spec, ":")
	params := map[string]int64{}
	if rest != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, &SpecError{Spec: spec, Reason: fmt.Sprintf("%q is not key=value", kv)}
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, &SpecError{Spec: spec, Reason: fmt.Sprintf("%s=%q is not an integer", k, v)}
			}
			if _, dup := params[k]; dup {
				return nil, &SpecError{Spec: spec, Reason: fmt.Sprintf("%s given twice", k)}
			}
			params[k] = n
		}
	}
	take := func(key string, def int64) int64 {
		v, ok := params[key]
		if !ok {
			return def
		}
		delete(params, key)
		return v
	}
	unknown := func() error {
		if len(params) == 0 {
			return nil
		}
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return &SpecError{Spec: spec, Reason: fmt.Sprintf("unknown parameter %s for %s", strings.Join(keys, ", "), kind)}
	}
	wrap := func(g *graph.Graph, err error) (*graph.Graph, error) {
		if se, ok := err.(*SpecError); ok {
			se.Spec = spec
		}
		return g, err
	}
	switch kind {
	case "mlp":
		layers, width, batch := take("layers", 50), take("width", 1024), take("batch", 32)
		if err := unknown(); err != nil {
			return nil, err
		}
		return wrap(MLP(int(layers), int(width), int(batch)))
	case "resnet":
		blocks, width, batch := take("blocks", 16), take("width", 256), take("batch", 32)
		if err := unknown(); err != nil {
			return nil, err
		}
		return wrap(ResNet(int(blocks), int(width), int(batch)))
	case "random-dag":
		nodes, seed, width, batch := take("nodes", 1000), take("seed", 1), take("width", 64), take("batch", 16)
		if err := unknown(); err != nil {
			return nil, err
		}
		return wrap(RandomDAG(int(nodes), seed, int(width), int(batch)))
	case "classifier":
		in, hidden, layers, classes, batch := take("in", 784), take("hidden", 1024), take("layers", 2), take("classes", 10), take("batch", 256)
		bits := take("bits", 32)
		if err := unknown(); err != nil {
			return nil, err
		}
		if bits != 32 && bits != 64 {
			return nil, &SpecError{Spec: spec, Reason: fmt.Sprintf("bits=%d: want 32 or 64", bits)}
		}
		return wrap(Classifier(int(in), int(hidden), int(layers), int(classes), int(batch), int(bits)))
	}
	return nil, &SpecError{Spec: spec, Reason: fmt.Sprintf("unknown kind %q (want mlp, resnet, random-dag or classifier)", kind)}
}

// MLPNodes is the number of nodes MLP(layers, ...) has.
func MLPNodes(layers int) int { return 1 + 5*layers }

// MLP builds a deep perceptron: an input x of shape (batch, width), then
// layers times matmul with a (width, width) weight, broadcast_add of a
// (1, width) bias, and tanh. The nodes form a chain with a weight and a
// bias hanging off each layer.
func MLP(layers, width, batch int) (*graph.Graph, error) {
	if err := positive("layers", layers, "width", width, "batch", batch); err != nil {
		return nil, err
	}
	b := newBuilder(MLPNodes(layers), batch)
	h := b.input("x", width)
	for l := 0; l < layers; l++ {
		p := "l" + strconv.Itoa(l) + "."
		h = b.dense(p, h, width)
		h = b.unary(p+"act", graph.KindTanh, h)
	}
	return b.done()
}

// Classifier builds the perceptron of the MNIST examples: an input x of
// shape (batch, in), layers hidden layers of hidden units (matmul,
// broadcast_add of a bias, tanh) and a head of classes units (matmul and
// bias), in float32 (bits 32) or float64 (bits 64).
// Classifier(784, 1024, 2, 10, 256, 32) is the 784-1024-1024-10 MLP.
func Classifier(in, hidden, layers, classes, batch, bits int) (*graph.Graph, error) {
	if err := positive("in", in, "hidden", hidden, "layers", layers, "classes", classes, "batch", batch); err != nil {
		return nil, err
	}
	b := newBuilder(1+5*layers+4, batch)
	if bits == 32 {
		b.dtype = graph.Float32
	}
	h := b.input("x", in)
	for l := 0; l < layers; l++ {
		p := "l" + strconv.Itoa(l) + "."
		h = b.unary(p+"act", graph.KindTanh, b.dense(p, h, hidden))
	}
	b.dense("head.", h, classes)
	return b.done()
}

// ResNet builds a residual network of width units: a stem (matmul, tanh),
// blocks residual blocks and a head (matmul to 10 classes plus bias). A
// plain block is tanh(x + dense(tanh(dense(x)))); every fourth block,
// starting with the second (and the only one when blocks is 1), is a
// two-branch block tanh(x + concat(tanh(x·Wa), tanh(x·Wb))) whose branches
// are width/2 wide. width must be even.
func ResNet(blocks, width, batch int) (*graph.Graph, error) {
	if err := positive("blocks", blocks, "width", width, "batch", batch); err != nil {
		return nil, err
	}
	if width%2 != 0 {
		return nil, &SpecError{Reason: fmt.Sprintf("width %d is odd; the two-branch blocks need it even", width)}
	}
	b := newBuilder(8+11*blocks, batch)
	x := b.input("x", width)
	w0 := b.learnable("stem.w", width, width)
	h := b.unary("stem.act", graph.KindTanh, b.matmul("stem.mm", x, w0, width))
	for i := 0; i < blocks; i++ {
		p := "b" + strconv.Itoa(i) + "."
		var r ref
		if i%4 == 1 || blocks == 1 {
			wa := b.learnable(p+"wa", width, width/2)
			ba := b.unary(p+"a.act", graph.KindTanh, b.matmul(p+"a.mm", h, wa, width/2))
			wb := b.learnable(p+"wb", width, width/2)
			bb := b.unary(p+"b.act", graph.KindSigmoid, b.matmul(p+"b.mm", h, wb, width/2))
			r = b.concat(p+"concat", ba, bb)
		} else {
			r = b.dense(p+"1.", h, width)
			r = b.unary(p+"1.act", graph.KindTanh, r)
			r = b.dense(p+"2.", r, width)
		}
		h = b.unary(p+"act", graph.KindTanh, b.binary(p+"skip", graph.KindAdd, h, r))
	}
	b.dense("head.", h, 10)
	return b.done()
}

// RandomDAG builds a random layered graph of exactly nodes nodes, the same
// for the same seed. Layers hold width/2 to 3·width/2 nodes each; runs of 2
// to 8 layers share a feature size drawn from 64 to 1024, so output bytes
// vary by 16× along the graph and a matmul's cost by far more. Each node
// takes its first input from the layer before it, four times in five from
// a window of five nodes around its own column (preferring one that
// nothing consumes yet) and otherwise from anywhere in the two layers
// before it. It is a matmul with a fresh weight when that input's feature
// size differs from the layer's; otherwise an elementwise unary op (40%),
// add, sub or mul with a second input of the same shape (35%), a square
// matmul (15%), a bias add (5%) or a concat with a second input (5%). When
// a layer has fewer nodes left than the layer before has unconsumed ones,
// nodes take one of those as a second operand (concatenating and
// projecting across a change of feature size), so that few nodes end up
// unused. Out-degrees vary from zero (the outputs) to several.
func RandomDAG(nodes int, seed int64, width, batch int) (*graph.Graph, error) {
	if err := positive("nodes", nodes, "width", width, "batch", batch); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	dims := []int{64, 128, 256, 512, 1024}
	unaries := []graph.OpKind{graph.KindTanh, graph.KindSigmoid, graph.KindNeg, graph.KindSquare,
		graph.KindAbs, graph.KindSoftplus, graph.KindSin, graph.KindCos}
	binaries := []graph.OpKind{graph.KindAdd, graph.KindSub, graph.KindMul}

	b := newBuilder(nodes, batch)
	d := dims[rng.IntN(len(dims))]
	prev := []ref{b.input("x", d)}
	var prev2 []ref
	var consumed []bool // by position in prev
	consumed = make([]bool, 1)
	unused := 1 // nodes of prev that nothing consumes yet
	use := func(i int) {
		if !consumed[i] {
			consumed[i] = true
			unused--
		}
	}
	stageLeft := 0
	for b.count < nodes {
		if stageLeft == 0 {
			d = dims[rng.IntN(len(dims))]
			stageLeft = 2 + rng.IntN(7)
		}
		stageLeft--
		lw := max(1, width/2+rng.IntN(width+1))
		layer := make([]ref, 0, lw)
		oldest := 0 // the first node of prev that nothing consumes yet
		for j := 0; j < lw && b.count < nodes; j++ {
			left := nodes - b.count
			col := j * len(prev) / lw
			for oldest < len(prev) && consumed[oldest] {
				oldest++
			}
			var p ref
			pi := -1
			if rng.IntN(5) < 4 {
				lo, hi := max(0, col-2), min(len(prev)-1, col+2)
				if oldest < lo {
					pi = oldest // about to be left behind: nothing else would consume it
				}
				for i := lo; i <= hi && pi < 0; i++ {
					if !consumed[i] {
						pi = i
					}
				}
				if pi < 0 {
					pi = lo + rng.IntN(hi-lo+1)
				}
			} else if len(prev2) > 0 && rng.IntN(2) == 0 {
				p = prev2[rng.IntN(len(prev2))]
			} else {
				pi = rng.IntN(len(prev))
			}
			if pi >= 0 {
				use(pi)
				p = prev[pi]
			}
			// More unconsumed nodes than nodes left in this layer: take an
			// extra operand, the oldest unconsumed one of p's shape.
			extra := -1
			if unused > lw-j-1 {
				for i := oldest; i < len(prev); i++ {
					if !consumed[i] && prev[i].d == p.d && prev[i].id != p.id {
						extra = i
						break
					}
				}
			}
			second := func() (ref, bool) {
				if extra >= 0 {
					use(extra)
					return prev[extra], true
				}
				// A second operand of p's shape from near p's column.
				for try := 0; try < 6; try++ {
					src := prev
					if try%2 == 1 && len(prev2) > 0 {
						src = prev2
					}
					c := min(len(src)-1, max(0, col-3+rng.IntN(7)))
					q := src[c]
					if q.id != p.id && q.d == p.d {
						if try%2 == 0 || len(prev2) == 0 {
							use(c)
						}
						return q, true
					}
				}
				return ref{}, false
			}
			name := "n" + strconv.Itoa(b.count)
			var n ref
			r := rng.Float64()
			switch {
			case p.d != d && extra >= 0 && left >= 3:
				// Concatenate, then project to the layer's size.
				q, _ := second()
				c := b.concat(name+".cat", p, q)
				w := b.learnable(name+".w", c.d, d)
				n = b.matmul(name, c, w, d)
			case p.d != d && left >= 2:
				w := b.learnable(name+".w", p.d, d)
				n = b.matmul(name, p, w, d)
			case left < 2:
				n = b.unary(name, unaries[rng.IntN(len(unaries))], p)
			case r < 0.40 && extra < 0:
				n = b.unary(name, unaries[rng.IntN(len(unaries))], p)
			case r < 0.75:
				q, ok := second()
				if !ok {
					n = b.unary(name, unaries[rng.IntN(len(unaries))], p)
					break
				}
				n = b.binary(name, binaries[rng.IntN(len(binaries))], p, q)
			case r < 0.90 && extra < 0:
				w := b.learnable(name+".w", p.d, p.d)
				n = b.matmul(name, p, w, p.d)
			case r < 0.95 && extra < 0:
				bias := b.learnable(name+".b", 1, p.d)
				n = b.broadcastAdd(name, p, bias)
			default:
				q, ok := second()
				if !ok {
					n = b.unary(name, unaries[rng.IntN(len(unaries))], p)
					break
				}
				n = b.concat(name, p, q)
			}
			layer = append(layer, n)
		}
		prev2, prev = prev, layer
		consumed = make([]bool, len(prev))
		unused = len(prev)
	}
	return b.done()
}

func positive(kv ...any) error {
	for i := 0; i < len(kv); i += 2 {
		if v := kv[i+1].(int); v < 1 {
			return &SpecError{Reason: fmt.Sprintf("%s must be at least 1, got %d", kv[i], v)}
		}
	}
	return nil
}

// ref is a node already in the graph: its id and its feature size (its
// shape is (batch, d), or (1, d) for a bias, (rows, d) for a weight).
type ref struct {
	id int64
	d  int
}

var (
	opMatMul = graph.NewOp(graph.KindMatMul)
	opBAdd   = graph.NewOp(graph.KindBroadcastAdd, graph.AxesAttr("right", 0))
	opConcat = graph.NewOp(graph.KindConcat, graph.IntAttr("axis", 1))
	opInput  = graph.NewOp(graph.KindInput)
)

// builder adds nodes with consecutive ids, sharing shape and op values and
// carving input lists out of one slab, so that a million nodes build in
// about a second.
type builder struct {
	g      *graph.Graph
	batch  int
	dtype  graph.DType
	count  int
	shapes map[[2]int]graph.Shape
	ops    map[graph.OpKind]graph.Op
	slab   []int64
	err    error
}

func newBuilder(hint, batch int) *builder {
	return &builder{
		g:      graph.New(),
		batch:  batch,
		dtype:  graph.Float64,
		shapes: map[[2]int]graph.Shape{},
		ops:    map[graph.OpKind]graph.Op{},
		slab:   make([]int64, 0, min(2*hint, 1<<20)),
	}
}

func (b *builder) shape(r, c int) graph.Shape {
	k := [2]int{r, c}
	s, ok := b.shapes[k]
	if !ok {
		s = graph.Shape{r, c}
		b.shapes[k] = s
	}
	return s
}

func (b *builder) op(k graph.OpKind) graph.Op {
	o, ok := b.ops[k]
	if !ok {
		o = graph.NewOp(k)
		b.ops[k] = o
	}
	return o
}

func (b *builder) inputs(ids ...int64) []int64 {
	if len(ids) == 0 {
		return nil
	}
	if cap(b.slab)-len(b.slab) < len(ids) {
		b.slab = make([]int64, 0, 1<<16)
	}
	n := len(b.slab)
	b.slab = append(b.slab, ids...)
	return b.slab[n:len(b.slab):len(b.slab)]
}

func (b *builder) add(n graph.Node, d int) ref {
	n.ID = int64(b.count)
	n.DType = b.dtype
	if b.err == nil {
		if err := b.g.Add(n); err != nil {
			b.err = fmt.Errorf("synth: node %d (%s): %w", n.ID, n.Name, err)
		}
	}
	b.count++
	return ref{id: n.ID, d: d}
}

func (b *builder) input(name string, d int) ref {
	return b.add(graph.Node{Role: graph.RoleInput, Op: opInput, Shape: b.shape(b.batch, d), Name: name}, d)
}

func (b *builder) learnable(name string, rows, d int) ref {
	return b.add(graph.Node{Role: graph.RoleLearnable, Op: opInput, Shape: b.shape(rows, d), Name: name}, d)
}

func (b *builder) matmul(name string, x, w ref, d int) ref {
	return b.add(graph.Node{Role: graph.RoleOp, Op: opMatMul, Inputs: b.inputs(x.id, w.id), Shape: b.shape(b.batch, d), Name: name}, d)
}

func (b *builder) broadcastAdd(name string, x, bias ref) ref {
	return b.add(graph.Node{Role: graph.RoleOp, Op: opBAdd, Inputs: b.inputs(x.id, bias.id), Shape: b.shape(b.batch, x.d), Name: name}, x.d)
}

func (b *builder) unary(name string, k graph.OpKind, x ref) ref {
	return b.add(graph.Node{Role: graph.RoleOp, Op: b.op(k), Inputs: b.inputs(x.id), Shape: b.shape(b.batch, x.d), Name: name}, x.d)
}

func (b *builder) binary(name string, k graph.OpKind, x, y ref) ref {
	return b.add(graph.Node{Role: graph.RoleOp, Op: b.op(k), Inputs: b.inputs(x.id, y.id), Shape: b.shape(b.batch, x.d), Name: name}, x.d)
}

func (b *builder) concat(name string, x, y ref) ref {
	d := x.d + y.d
	return b.add(graph.Node{Role: graph.RoleOp, Op: opConcat, Inputs: b.inputs(x.id, y.id), Shape: b.shape(b.batch, d), Name: name}, d)
}

// dense is x·W + b with a fresh (x.d, d) weight and (1, d) bias.
func (b *builder) dense(prefix string, x ref, d int) ref {
	w := b.learnable(prefix+"w", x.d, d)
	h := b.matmul(prefix+"mm", x, w, d)
	bias := b.learnable(prefix+"b", 1, d)
	return b.broadcastAdd(prefix+"bias", h, bias)
}

func (b *builder) done() (*graph.Graph, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.g, nil
}

package exec

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec/kernels"
	"github.com/rookery-ml/rookery/graph"
)

// Lower rebuilds g into dst, as (*graph.Graph).Lower does, and builds the
// nodes of the kinds that Gorgonia has no op for (graph's ML kinds, whose
// Props say Extension) as forward-only Gorgonia ops that run the kernels
// of exec/kernels. It returns the new node for each IR id. Every executor
// and tool that runs a graph on Gorgonia lowers it with Lower.
func Lower(g *graph.Graph, dst *gorgonia.ExprGraph) (map[int64]*gorgonia.Node, error) {
	return g.LowerWith(dst, lowerKernel)
}

// lowerKernel is the graph.LowerFunc of Lower: it applies a kernelOp for
// n's kind.
func lowerKernel(n *graph.Node, in []*gorgonia.Node) (*gorgonia.Node, error) {
	if !hasKernel(n.Op.Kind) {
		return nil, fmt.Errorf("exec: op kind %q has no kernel", n.Op.Kind)
	}
	types := make([]hm.Type, len(in))
	for i, x := range in {
		types[i] = x.Type()
	}
	dt, err := n.DType.Tensor()
	if err != nil {
		return nil, err
	}
	shape := make(tensor.Shape, len(n.Shape))
	copy(shape, n.Shape)
	return gorgonia.ApplyOp(&kernelOp{op: n.Op, in: types, shape: shape, dt: dt}, in...)
}

// hasKernel reports whether kernelOp runs op kind k.
func hasKernel(k graph.OpKind) bool {
	switch k {
	case graph.KindTopK, graph.KindArgMin, graph.KindOneHot, graph.KindTake, graph.KindTreeRoute,
		graph.KindHistogram, graph.KindGroupRows, graph.KindGatherRows, graph.KindLogSoftmaxRows,
		graph.KindMatMulTopK, graph.KindSegmentSum:
		return true
	}
	return false
}

// kernelOp is the Gorgonia op that runs one of graph's ML kinds on its
// kernel. It is forward-only: no input is differentiable.
type kernelOp struct {
	op    graph.Op
	in    []hm.Type
	shape tensor.Shape
	dt    tensor.Dtype
}

func (m *kernelOp) Arity() int { return len(m.in) }

func (m *kernelOp) Type() hm.Type {
	ts := append(append([]hm.Type{}, m.in...), gorgonia.TensorType{Dims: len(m.shape), Of: m.dt})
	return hm.NewFnType(ts...)
}

func (m *kernelOp) InferShape(...gorgonia.DimSizer) (tensor.Shape, error) {
	return m.shape.Clone(), nil
}

func (m *kernelOp) ReturnsPtr() bool     { return false }
func (m *kernelOp) CallsExtern() bool    { return false }
func (m *kernelOp) OverwritesInput() int { return -1 }
func (m *kernelOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "rookery.%v%v", m.op, m.shape)
	for _, t := range m.in {
		fmt.Fprintf(h, ",%v", t)
	}
}
func (m *kernelOp) Hashcode() uint32 {
	h := fnv.New32a()
	m.WriteHash(h)
	return h.Sum32()
}
func (m *kernelOp) String() string { return "rookery." + m.op.String() }

// DiffWRT says that no input is differentiable.
func (m *kernelOp) DiffWRT(n int) []bool { return make([]bool, n) }

// SymDiff is never called: the op is not differentiable.
func (m *kernelOp) SymDiff(gorgonia.Nodes, *gorgonia.Node, *gorgonia.Node) (gorgonia.Nodes, error) {
	return nil, fmt.Errorf("exec: %s is not differentiable", m.op.Kind)
}

func (m *kernelOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	if len(vals) != len(m.in) {
		return nil, fmt.Errorf("exec: %s: got %d inputs, want %d", m.op.Kind, len(vals), len(m.in))
	}
	in := make([]*tensor.Dense, len(vals))
	for i, v := range vals {
		d, ok := v.(*tensor.Dense)
		if !ok {
			return nil, fmt.Errorf("exec: %s: input %d is %T, want a tensor", m.op.Kind, i, v)
		}
		if !d.IsNativelyAccessible() || d.RequiresIterator() {
			d = d.Materialize().(*tensor.Dense)
		}
		if d.Dtype() != m.dt {
			return nil, fmt.Errorf("exec: %s: input %d is %v, want %v", m.op.Kind, i, d.Dtype(), m.dt)
		}
		in[i] = d
	}
	out := tensor.New(tensor.Of(m.dt), tensor.WithShape(m.shape.Clone()...))
	var err error
	switch m.dt {
	case tensor.Float64:
		err = runKernel(m.op, in, out, (*tensor.Dense).Float64s)
	case tensor.Float32:
		err = runKernel(m.op, in, out, (*tensor.Dense).Float32s)
	default:
		err = fmt.Errorf("dtype %v", m.dt)
	}
	if err != nil {
		return nil, fmt.Errorf("exec: %s: %w", m.op.Kind, err)
	}
	return out, nil
}

// runKernel runs op's kernel on the data of in, writing out.
func runKernel[T float32 | float64](op graph.Op, in []*tensor.Dense, out *tensor.Dense, data func(*tensor.Dense) []T) error {
	o := data(out)
	x := data(in[0])
	s0 := in[0].Shape()
	switch op.Kind {
	case graph.KindTopK:
		kernels.TopK(x, s0[0], s0[1], op.Int("k"), op.Bool("indices"), o)
	case graph.KindArgMin:
		kernels.ArgMin(x, s0[0], s0[1], o)
	case graph.KindOneHot:
		kernels.OneHot(x, op.Int("depth"), o)
	case graph.KindTake:
		kernels.Take(x, data(in[1]), o)
	case graph.KindTreeRoute:
		return kernels.TreeRoute(x, s0[1], data(in[1]), o)
	case graph.KindHistogram:
		kernels.Histogram(x, s0[1], data(in[1]), data(in[2]), in[2].Shape()[1], op.Int("groups"), op.Int("bins"), o)
	case graph.KindGroupRows:
		kernels.GroupRows(x, op.Int("groups"), op.Int("limit"), o)
	case graph.KindGatherRows:
		kernels.GatherRows(x, s0[1], data(in[1]), o)
	case graph.KindLogSoftmaxRows:
		kernels.LogSoftmaxRows(x, s0[0], s0[1], o)
	case graph.KindMatMulTopK:
		kernels.MatMulTopK(cpuBLAS, x, data(in[1]), s0[0], s0[1], in[1].Shape()[1], op.Int("k"), o)
	case graph.KindSegmentSum:
		m := 1
		if s1 := in[1].Shape(); len(s1) == 2 {
			m = s1[1]
		}
		kernels.SegmentSum(x, s0[1], data(in[1]), m, op.Int("groups"), op.Bool("square"), o)
	default:
		return fmt.Errorf("no kernel")
	}
	return nil
}

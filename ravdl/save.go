package ravdl

import (
	"context"
	"fmt"
	"io"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/graph"
)

// Save writes the model for inference in the format of
// rookery.Trainer.Save: the graph IR of the model (BatchNorm on its
// measured statistics, no Dropout) for a batch of one, with the trained
// parameters, encoded as rookery.v1 protobuf. The input is the node
// named InputName, the output OutputName; parameters keep their names
// ("0.dense/w"). Load reads it back for prediction, rookery.Load too, and
// LoadWeights restores the parameters into a Sequential of the same
// layers.
func (m *Model) Save(w io.Writer) error {
	if !m.built {
		return ErrNotBuilt
	}
	ng, err := m.graph(1, modeInfer, nil)
	if err != nil {
		return err
	}
	ir, err := graph.FromGorgonia(ng.g, graph.Learnables(ng.learn...), graph.WithValues())
	if err != nil {
		return err
	}
	b, err := ir.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// LoadWeights reads parameters written by Save into the model, matching
// them by name and shape. The model is built first if it is not (from
// the saved input shape and dtype); every parameter of the model must be
// in the file.
func (m *Model) LoadWeights(r io.Reader) error {
	saved, err := Load(r)
	if err != nil {
		return err
	}
	g := saved.m.Graph()
	if !m.built {
		cfg := newConfig(nil)
		if saved.dtype == tensor.Float64 {
			cfg.dtype = tensor.Float64
		}
		if err := m.build(saved.inShape, cfg); err != nil {
			return err
		}
	}
	if !equalInts(saved.inShape, m.inShape) {
		return &ShapeError{Layer: -1, Kind: "saved input", Got: saved.inShape, Reason: fmt.Sprintf("the model takes %v", m.inShape)}
	}
	for _, name := range m.order {
		n, ok := g.ByName(name)
		if !ok || n.Value == nil {
			return fmt.Errorf("%w: no parameter %q in the saved model", ErrFormat, name)
		}
		p := m.params[name]
		if !p.Shape().Eq(n.Value.Shape()) {
			return &ShapeError{Layer: -1, Kind: "saved " + name, Got: []int(n.Value.Shape().Clone()), Reason: fmt.Sprintf("the model has %v", p.Shape())}
		}
		copyConvert(p, n.Value)
	}
	for i, l := range m.layers {
		if bn, ok := l.(*batchNorm); ok {
			node, ok := g.ByName(fmt.Sprintf("%d.%s/mean", i, bn.Kind()))
			vnode, ok2 := g.ByName(fmt.Sprintf("%d.%s/var", i, bn.Kind()))
			if !ok || !ok2 || node.Value == nil || vnode.Value == nil {
				return fmt.Errorf("%w: no statistics for batch-norm layer %d", ErrFormat, i)
			}
			bn.mean = appendFloats(nil, node.Value)
			bn.variance = appendFloats(nil, vnode.Value)
		}
	}
	return nil
}

func copyConvert(dst, src *tensor.Dense) {
	gatherRows(dst, src, src.Shape().TotalSize(), []int{0})
}

// Saved is a model read by Load: it predicts, in this process, without
// the layers that built it.
type Saved struct {
	m        *rookery.Model
	in, out  int64
	inShape  []int
	outShape []int
	dtype    tensor.Dtype
}

// Load reads a model written by Model.Save.
func Load(r io.Reader) (*Saved, error) {
	rm, err := rookery.Load(r)
	if err != nil {
		return nil, err
	}
	g := rm.Graph()
	in, ok := g.ByName(InputName)
	out, ok2 := g.ByName(OutputName)
	if !ok || !ok2 || len(in.Shape) < 1 || len(out.Shape) < 1 {
		return nil, fmt.Errorf("%w: no input %q and output %q nodes: not a ravdl model", ErrFormat, InputName, OutputName)
	}
	dt, err := in.DType.Tensor()
	if err != nil {
		return nil, err
	}
	return &Saved{m: rm, in: in.ID, out: out.ID, inShape: append([]int{}, in.Shape[1:]...),
		outShape: append([]int{}, out.Shape[1:]...), dtype: dt}, nil
}

// InputShape and OutputShape are the shapes of one sample.
func (s *Saved) InputShape() []int  { return append([]int{}, s.inShape...) }
func (s *Saved) OutputShape() []int { return append([]int{}, s.outShape...) }

// Predict returns the outputs for x, (samples, outputs...), in the saved
// model's dtype.
func (s *Saved) Predict(ctx context.Context, x *tensor.Dense) (*tensor.Dense, error) {
	x, n, wx, err := rowsOf(x, "x")
	if err != nil {
		return nil, err
	}
	if !equalInts(x.Shape()[1:], s.inShape) {
		return nil, &ShapeError{Layer: -1, Kind: "x", Got: []int(x.Shape().Clone()), Reason: fmt.Sprintf("the model takes samples of shape %v", s.inShape)}
	}
	var out []float64
	for lo := 0; lo < n; lo += chunk {
		k := min(chunk, n-lo)
		xb := tensor.New(tensor.Of(s.dtype), tensor.WithShape(append([]int{k}, s.inShape...)...))
		gatherRows(xb, x, wx, indices(lo + k)[lo:])
		res, err := s.m.Predict(ctx, map[int64]*tensor.Dense{s.in: xb}, s.out)
		if err != nil {
			return nil, err
		}
		out = appendFloats(out, res[s.out])
	}
	return denseOf(s.dtype, out, append([]int{n}, s.outShape...)), nil
}

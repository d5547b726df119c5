package ravdl

import (
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Layer is one stage of a Sequential model. A layer adds its operations
// to a Gorgonia graph when the model is built; its parameters belong to
// the model, so the same layer value must not be used in two models.
type Layer interface {
	// Kind names the layer ("dense", "conv2d", ...).
	Kind() string
	// apply adds the layer to the graph that b builds and returns the
	// layer's output. x has the batch on axis 0.
	apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error)
}

// LayerOption configures a layer.
type LayerOption func(*layerConfig)

type layerConfig struct {
	init    Initializer
	noBias  bool
	stride  int
	pad     int
	samePad bool
	eps     float64
}

func newLayerConfig(def Initializer, opts []LayerOption) layerConfig {
	c := layerConfig{init: def, eps: 1e-5}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Init sets the initialiser of a layer's weights (the default is
// GlorotUniform for Dense and Embedding, HeNormal for Conv2D).
func Init(i Initializer) LayerOption { return func(c *layerConfig) { c.init = i } }

// NoBias leaves out the bias of Dense and Conv2D.
func NoBias() LayerOption { return func(c *layerConfig) { c.noBias = true } }

// Stride sets the stride of Conv2D (default 1) and of the pooling layers
// (default: the kernel size).
func Stride(s int) LayerOption { return func(c *layerConfig) { c.stride = s } }

// Pad pads Conv2D and the pooling layers by p zeros on every side
// (default 0).
func Pad(p int) LayerOption { return func(c *layerConfig) { c.pad = p } }

// SamePad pads Conv2D by kernel/2 on every side, so that with stride 1 and
// an odd kernel the output has the size of the input.
func SamePad() LayerOption { return func(c *layerConfig) { c.samePad = true } }

// Epsilon sets BatchNorm's ε (default 1e-5).
func Epsilon(e float64) LayerOption { return func(c *layerConfig) { c.eps = e } }

// ---- Dense ----

type dense struct {
	units int
	cfg   layerConfig
}

// Dense is a fully connected layer: x·W + b, x of shape (batch, in), W of
// shape (in, units), b of shape (units).
func Dense(units int, opts ...LayerOption) Layer {
	return &dense{units: units, cfg: newLayerConfig(GlorotUniform(), opts)}
}

func (l *dense) Kind() string { return "dense" }

func (l *dense) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	s := x.Shape()
	if s.Dims() != 2 {
		return nil, b.shapeErr(l, x, "dense takes (batch, features); add Flatten before it")
	}
	if l.units < 1 {
		return nil, b.shapeErr(l, x, fmt.Sprintf("%d units", l.units))
	}
	in := s[1]
	w := b.param("w", []int{in, l.units}, l.cfg.init, in, l.units)
	y, err := gorgonia.Mul(x, w)
	if err != nil || l.cfg.noBias {
		return y, err
	}
	bias := b.param("b", []int{l.units}, Zeros(), in, l.units)
	return gorgonia.BroadcastAdd(y, bias, nil, []byte{0})
}

// ---- Conv2D ----

type conv2d struct {
	filters, kernel int
	cfg             layerConfig
}

// Conv2D is a 2-D convolution over (batch, channels, height, width) with
// filters square kernels of side kernel, plus a bias per filter.
func Conv2D(filters, kernel int, opts ...LayerOption) Layer {
	l := &conv2d{filters: filters, kernel: kernel, cfg: newLayerConfig(HeNormal(), opts)}
	if l.cfg.stride == 0 {
		l.cfg.stride = 1
	}
	if l.cfg.samePad {
		l.cfg.pad = kernel / 2
	}
	return l
}

func (l *conv2d) Kind() string { return "conv2d" }

func (l *conv2d) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	s := x.Shape()
	if s.Dims() != 4 {
		return nil, b.shapeErr(l, x, "conv2d takes (batch, channels, height, width); add Reshape before it")
	}
	k, p, st := l.kernel, l.cfg.pad, l.cfg.stride
	if l.filters < 1 || k < 1 || st < 1 || p < 0 || s[2]+2*p < k || s[3]+2*p < k {
		return nil, b.shapeErr(l, x, fmt.Sprintf("%d filters of %dx%d, stride %d, pad %d do not fit", l.filters, k, k, st, p))
	}
	c := s[1]
	w := b.param("w", []int{l.filters, c, k, k}, l.cfg.init, c*k*k, l.filters*k*k)
	y, err := gorgonia.Conv2d(x, w, tensor.Shape{k, k}, []int{p, p}, []int{st, st}, []int{1, 1})
	if err != nil || l.cfg.noBias {
		return y, err
	}
	bias := b.param("b", []int{l.filters}, Zeros(), c*k*k, l.filters*k*k)
	return gorgonia.BroadcastAdd(y, bias, nil, []byte{0, 2, 3})
}

// ---- pooling ----

type pool2d struct {
	avg    bool
	kernel int
	cfg    layerConfig
}

// MaxPool2D takes the maximum over kernel × kernel windows (stride: the
// kernel size unless Stride says otherwise).
func MaxPool2D(kernel int, opts ...LayerOption) Layer {
	return newPool(false, kernel, opts)
}

// AvgPool2D takes the mean over kernel × kernel windows.
func AvgPool2D(kernel int, opts ...LayerOption) Layer {
	return newPool(true, kernel, opts)
}

func newPool(avg bool, kernel int, opts []LayerOption) *pool2d {
	l := &pool2d{avg: avg, kernel: kernel, cfg: newLayerConfig(nil, opts)}
	if l.cfg.stride == 0 {
		l.cfg.stride = kernel
	}
	return l
}

func (l *pool2d) Kind() string {
	if l.avg {
		return "avgpool2d"
	}
	return "maxpool2d"
}

func (l *pool2d) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	s := x.Shape()
	k, p, st := l.kernel, l.cfg.pad, l.cfg.stride
	if s.Dims() != 4 {
		return nil, b.shapeErr(l, x, "pooling takes (batch, channels, height, width)")
	}
	if k < 1 || st < 1 || p < 0 || s[2]+2*p < k || s[3]+2*p < k {
		return nil, b.shapeErr(l, x, fmt.Sprintf("window %dx%d, stride %d, pad %d does not fit", k, k, st, p))
	}
	if l.avg {
		return avgPool(x, k, p, st)
	}
	return gorgonia.MaxPool2D(x, tensor.Shape{k, k}, []int{p, p}, []int{st, st})
}

// avgPool averages k × k windows as im2col, then a mean over each
// window's values: Gorgonia's own average-pool op gives wrong gradients
// (some are 0). Padding zeros count in the mean.
func avgPool(x *gorgonia.Node, k, p, st int) (*gorgonia.Node, error) {
	s := x.Shape()
	b, c := s[0], s[1]
	cols, err := gorgonia.Im2Col(x, tensor.Shape{k, k}, tensor.Shape{p, p}, tensor.Shape{st, st}, tensor.Shape{1, 1})
	if err != nil {
		return nil, err
	}
	cs := cols.Shape()
	h, w := cs[1], cs[2]
	if cols, err = gorgonia.Reshape(cols, tensor.Shape{b * h * w * c, k * k}); err != nil {
		return nil, err
	}
	m, err := gorgonia.Mean(cols, 1)
	if err != nil {
		return nil, err
	}
	if m, err = gorgonia.Reshape(m, tensor.Shape{b, h, w, c}); err != nil {
		return nil, err
	}
	return gorgonia.Transpose(m, 0, 3, 1, 2)
}

// ---- shape layers ----

type flatten struct{}

// Flatten reshapes (batch, d1, d2, ...) to (batch, d1·d2·...).
func Flatten() Layer { return flatten{} }

func (flatten) Kind() string { return "flatten" }

func (l flatten) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	s := x.Shape()
	if s.Dims() == 2 {
		return x, nil
	}
	if s.Dims() < 2 {
		return nil, b.shapeErr(l, x, "flatten needs (batch, ...)")
	}
	return gorgonia.Reshape(x, tensor.Shape{s[0], s.TotalSize() / s[0]})
}

type reshape struct{ shape []int }

// Reshape reshapes every sample to shape: Reshape(1, 28, 28) turns
// (batch, 784) into (batch, 1, 28, 28).
func Reshape(shape ...int) Layer { return reshape{shape: append([]int{}, shape...)} }

func (reshape) Kind() string { return "reshape" }

func (l reshape) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	s := x.Shape()
	n := 1
	for _, d := range l.shape {
		n *= d
	}
	if len(l.shape) == 0 || n != s.TotalSize()/s[0] {
		return nil, b.shapeErr(l, x, fmt.Sprintf("cannot reshape samples to %v", l.shape))
	}
	return gorgonia.Reshape(x, append(tensor.Shape{s[0]}, l.shape...))
}

// ---- Dropout ----

type dropout struct{ p float64 }

// Dropout zeroes each value with probability p while training (scaling
// the others by 1/(1−p)) and is the identity at inference. Its mask comes
// from Gorgonia's own random source, which no seed reaches: training with
// Dropout is not reproducible.
func Dropout(p float64) Layer { return dropout{p: p} }

func (dropout) Kind() string { return "dropout" }

func (l dropout) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	if !(l.p >= 0 && l.p < 1) {
		return nil, b.shapeErr(l, x, fmt.Sprintf("probability %v is not in [0, 1)", l.p))
	}
	if !b.train || l.p == 0 {
		return x, nil
	}
	return gorgonia.Dropout(x, l.p)
}

// ---- BatchNorm ----

type batchNorm struct {
	cfg layerConfig
	// statistics for inference, set by calibration after training
	mean, variance []float64
}

// BatchNorm normalises each feature (axis 1) over the batch (and, for
// (batch, channels, h, w), over the spatial axes too), then scales by γ
// and shifts by β, both learnt. While training it uses the mini-batch's
// statistics (each micro-batch's, with MicroBatches); at inference it
// uses statistics that Fit measures at the end of every epoch on up to
// CalibrationSamples training samples with the trained weights (rather
// than a running average: the statistics live in the requester, while
// training runs on the executors).
func BatchNorm(opts ...LayerOption) Layer { return &batchNorm{cfg: newLayerConfig(nil, opts)} }

func (l *batchNorm) Kind() string { return "batchnorm" }

func (l *batchNorm) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	s := x.Shape()
	var axes []int
	var pattern []byte
	switch s.Dims() {
	case 2:
		axes, pattern = []int{0}, []byte{0}
	case 4:
		axes, pattern = []int{0, 2, 3}, []byte{0, 2, 3}
	default:
		return nil, b.shapeErr(l, x, "batchnorm takes (batch, features) or (batch, channels, h, w)")
	}
	c := s[1]
	gamma := b.param("gamma", []int{c}, Constant(1), c, c)
	beta := b.param("beta", []int{c}, Zeros(), c, c)
	var mean, variance *gorgonia.Node
	var err error
	if b.train {
		if mean, err = gorgonia.Mean(x, axes...); err != nil {
			return nil, err
		}
	} else {
		mean = b.constVec(b.name("mean"), l.mean, c, 0)
	}
	xc, err := gorgonia.BroadcastSub(x, mean, nil, pattern)
	if err != nil {
		return nil, err
	}
	if b.train {
		sq, err := gorgonia.Square(xc)
		if err != nil {
			return nil, err
		}
		if variance, err = gorgonia.Mean(sq, axes...); err != nil {
			return nil, err
		}
		b.stats = append(b.stats, bnStats{layer: l, mean: mean, variance: variance})
	} else {
		variance = b.constVec(b.name("var"), l.variance, c, 1)
	}
	ve, err := gorgonia.Add(variance, b.scalar(l.cfg.eps))
	if err != nil {
		return nil, err
	}
	// 1/√v as two ops: Gorgonia's InverseSqrt has a wrong gradient.
	sd, err := gorgonia.Sqrt(ve)
	if err != nil {
		return nil, err
	}
	inv, err := gorgonia.Inverse(sd)
	if err != nil {
		return nil, err
	}
	scale, err := gorgonia.HadamardProd(inv, gamma)
	if err != nil {
		return nil, err
	}
	y, err := gorgonia.BroadcastHadamardProd(xc, scale, nil, pattern)
	if err != nil {
		return nil, err
	}
	return gorgonia.BroadcastAdd(y, beta, nil, pattern)
}

// bnStats are the batch statistics of one BatchNorm layer in a training
// graph, read when calibrating.
type bnStats struct {
	layer          *batchNorm
	mean, variance *gorgonia.Node
}

// ---- activations ----

type activation struct {
	kind  string
	alpha float64
}

// ReLU is max(x, 0).
func ReLU() Layer { return activation{kind: "relu"} }

// LeakyReLU is x for x ≥ 0 and alpha·x below.
func LeakyReLU(alpha float64) Layer { return activation{kind: "leaky_relu", alpha: alpha} }

// Sigmoid is 1 / (1 + e^−x).
func Sigmoid() Layer { return activation{kind: "sigmoid"} }

// Tanh is the hyperbolic tangent.
func Tanh() Layer { return activation{kind: "tanh"} }

// Softmax normalises the last axis to probabilities. A classifier trained
// with CrossEntropy should end in logits (no Softmax): the loss applies a
// log-softmax itself.
func Softmax() Layer { return activation{kind: "softmax"} }

// GELU is the Gaussian error linear unit in its tanh form:
// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
func GELU() Layer { return activation{kind: "gelu"} }

// Swish is x·sigmoid(x) (also called SiLU).
func Swish() Layer { return activation{kind: "swish"} }

func (a activation) Kind() string { return a.kind }

func (a activation) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	switch a.kind {
	case "relu":
		return gorgonia.Rectify(x)
	case "leaky_relu":
		// α·x + (1−α)·relu(x), from ops every executor runs
		r, err := gorgonia.Rectify(x)
		if err != nil {
			return nil, err
		}
		ax, err := gorgonia.Mul(b.scalar(a.alpha), x)
		if err != nil {
			return nil, err
		}
		rr, err := gorgonia.Mul(b.scalar(1-a.alpha), r)
		if err != nil {
			return nil, err
		}
		return gorgonia.Add(ax, rr)
	case "sigmoid":
		return gorgonia.Sigmoid(x)
	case "tanh":
		return gorgonia.Tanh(x)
	case "softmax":
		return gorgonia.SoftMax(x, x.Shape().Dims()-1)
	case "gelu":
		c3, err := gorgonia.Cube(x)
		if err != nil {
			return nil, err
		}
		t, err := gorgonia.Mul(b.scalar(0.044715), c3)
		if err != nil {
			return nil, err
		}
		if t, err = gorgonia.Add(x, t); err != nil {
			return nil, err
		}
		if t, err = gorgonia.Mul(b.scalar(math.Sqrt(2/math.Pi)), t); err != nil {
			return nil, err
		}
		if t, err = gorgonia.Tanh(t); err != nil {
			return nil, err
		}
		if t, err = gorgonia.Add(b.scalar(1), t); err != nil {
			return nil, err
		}
		if t, err = gorgonia.HadamardProd(x, t); err != nil {
			return nil, err
		}
		return gorgonia.Mul(b.scalar(0.5), t)
	case "swish":
		s, err := gorgonia.Sigmoid(x)
		if err != nil {
			return nil, err
		}
		return gorgonia.HadamardProd(x, s)
	}
	return nil, fmt.Errorf("%w: unknown activation %q", ErrConfig, a.kind)
}

// ---- Embedding ----

type embedding struct {
	vocab, dim int
	cfg        layerConfig
}

// Embedding maps token ids to learnt vectors: (batch, T) ids in
// [0, vocab), given as floats, become (batch, T, dim). It is a one-hot
// comparison followed by a matrix product, so that it runs on every
// executor; ids outside [0, vocab) give zero vectors.
func Embedding(vocab, dim int, opts ...LayerOption) Layer {
	return &embedding{vocab: vocab, dim: dim, cfg: newLayerConfig(GlorotUniform(), opts)}
}

func (l *embedding) Kind() string { return "embedding" }

func (l *embedding) apply(b *builder, x *gorgonia.Node) (*gorgonia.Node, error) {
	s := x.Shape()
	if s.Dims() != 2 {
		return nil, b.shapeErr(l, x, "embedding takes (batch, T) token ids")
	}
	if l.vocab < 1 || l.dim < 1 {
		return nil, b.shapeErr(l, x, fmt.Sprintf("vocabulary %d, dimension %d", l.vocab, l.dim))
	}
	bt, t := s[0], s[1]
	w := b.param("w", []int{l.vocab, l.dim}, l.cfg.init, l.vocab, l.dim)
	ids, err := gorgonia.Reshape(x, tensor.Shape{bt, t, 1})
	if err != nil {
		return nil, err
	}
	r := make([]float64, l.vocab)
	for i := range r {
		r[i] = float64(i)
	}
	rc := b.constTensor(b.name("range"), r, 1, 1, l.vocab)
	oh, err := gorgonia.BroadcastEq(ids, rc, true, []byte{2}, []byte{0, 1})
	if err != nil {
		return nil, err
	}
	if oh, err = gorgonia.Reshape(oh, tensor.Shape{bt * t, l.vocab}); err != nil {
		return nil, err
	}
	y, err := gorgonia.Mul(oh, w)
	if err != nil {
		return nil, err
	}
	return gorgonia.Reshape(y, tensor.Shape{bt, t, l.dim})
}

package ravdl

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func f64(shape []int, v ...float64) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64{}, v...)))
}

// built returns a float64 model of the layers for samples of inShape,
// with the parameters given by name replaced.
func built(t *testing.T, inShape []int, params map[string][]float64, layers ...Layer) *Model {
	t.Helper()
	m := Sequential(layers...)
	if err := m.Build(inShape, Float64(), Seed(1)); err != nil {
		t.Fatal(err)
	}
	for name, v := range params {
		p, ok := m.params[name]
		if !ok {
			t.Fatalf("no parameter %q; have %v", name, m.order)
		}
		if len(v) != p.Shape().TotalSize() {
			t.Fatalf("parameter %q has %d values, given %d", name, p.Shape().TotalSize(), len(v))
		}
		copy(p.Float64s(), v)
	}
	return m
}

// run computes the model's outputs in the given mode.
func run(t *testing.T, m *Model, x *tensor.Dense, mode buildMode) []float64 {
	t.Helper()
	var out []float64
	err := m.forward(context.Background(), x, indices(x.Shape()[0]), mode, func(o []float64, _ []int) error {
		out = append(out, o...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func near(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s: got %v, want %v (index %d)", what, got, want, i)
		}
	}
}

func TestLayerForward(t *testing.T) {
	gelu := func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	x3 := []float64{-1, 0.5, 2}
	e := math.Exp
	z := e(-1) + e(0.5) + e(2)
	for _, tc := range []struct {
		name    string
		layers  []Layer
		inShape []int
		params  map[string][]float64
		x       *tensor.Dense
		want    []float64
	}{
		{name: "dense", layers: []Layer{Dense(2)}, inShape: []int{3},
			params: map[string][]float64{"0.dense/w": {1, 2, 3, 4, 5, 6}, "0.dense/b": {0.5, -1}},
			x:      f64([]int{2, 3}, 1, 0, -1, 2, 1, 0),
			// row 1: [1·1+0·3−1·5, 1·2+0·4−1·6] + b = [−4+0.5, −4−1]
			want: []float64{-3.5, -5, 5.5, 7}},
		{name: "dense no bias", layers: []Layer{Dense(1, NoBias())}, inShape: []int{2},
			params: map[string][]float64{"0.dense/w": {2, -1}},
			x:      f64([]int{1, 2}, 3, 4), want: []float64{2}},
		{name: "conv2d", layers: []Layer{Conv2D(1, 2)}, inShape: []int{1, 3, 3},
			params: map[string][]float64{"0.conv2d/w": {1, 0, 0, -1}, "0.conv2d/b": {0.5}},
			x:      f64([]int{1, 1, 3, 3}, 1, 2, 3, 4, 5, 6, 7, 8, 9),
			// x[i][j] − x[i+1][j+1] = −4 everywhere, plus 0.5
			want: []float64{-3.5, -3.5, -3.5, -3.5}},
		{name: "conv2d pad stride", layers: []Layer{Conv2D(1, 3, Pad(1), Stride(2), NoBias())}, inShape: []int{1, 3, 3},
			params: map[string][]float64{"0.conv2d/w": {0, 0, 0, 0, 1, 0, 0, 0, 0}},
			x:      f64([]int{1, 1, 3, 3}, 1, 2, 3, 4, 5, 6, 7, 8, 9),
			want:   []float64{1, 3, 7, 9}},
		{name: "maxpool", layers: []Layer{MaxPool2D(2)}, inShape: []int{1, 4, 4},
			x:    f64([]int{1, 1, 4, 4}, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
			want: []float64{6, 8, 14, 16}},
		{name: "avgpool", layers: []Layer{AvgPool2D(2)}, inShape: []int{1, 4, 4},
			x:    f64([]int{1, 1, 4, 4}, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
			want: []float64{3.5, 5.5, 11.5, 13.5}},
		{name: "flatten", layers: []Layer{Flatten()}, inShape: []int{2, 2},
			x: f64([]int{1, 2, 2}, 1, 2, 3, 4), want: []float64{1, 2, 3, 4}},
		{name: "reshape", layers: []Layer{Reshape(2, 2)}, inShape: []int{4},
			x: f64([]int{1, 4}, 1, 2, 3, 4), want: []float64{1, 2, 3, 4}},
		{name: "dropout at inference", layers: []Layer{Dropout(0.5), Tanh()}, inShape: []int{3},
			x: f64([]int{1, 3}, x3...), want: []float64{math.Tanh(-1), math.Tanh(0.5), math.Tanh(2)}},
		{name: "relu", layers: []Layer{ReLU()}, inShape: []int{3}, x: f64([]int{1, 3}, x3...), want: []float64{0, 0.5, 2}},
		{name: "leaky relu", layers: []Layer{LeakyReLU(0.1)}, inShape: []int{3}, x: f64([]int{1, 3}, x3...), want: []float64{-0.1, 0.5, 2}},
		{name: "sigmoid", layers: []Layer{Sigmoid()}, inShape: []int{3}, x: f64([]int{1, 3}, x3...), want: []float64{sig(-1), sig(0.5), sig(2)}},
		{name: "tanh", layers: []Layer{Tanh()}, inShape: []int{3}, x: f64([]int{1, 3}, x3...), want: []float64{math.Tanh(-1), math.Tanh(0.5), math.Tanh(2)}},
		{name: "softmax", layers: []Layer{Softmax()}, inShape: []int{3}, x: f64([]int{1, 3}, x3...), want: []float64{e(-1) / z, e(0.5) / z, e(2) / z}},
		{name: "gelu", layers: []Layer{GELU()}, inShape: []int{3}, x: f64([]int{1, 3}, x3...), want: []float64{gelu(-1), gelu(0.5), gelu(2)}},
		{name: "swish", layers: []Layer{Swish()}, inShape: []int{3}, x: f64([]int{1, 3}, x3...), want: []float64{-sig(-1), 0.5 * sig(0.5), 2 * sig(2)}},
		{name: "embedding", layers: []Layer{Embedding(3, 2)}, inShape: []int{2},
			params: map[string][]float64{"0.embedding/w": {1, 2, 3, 4, 5, 6}},
			x:      f64([]int{2, 2}, 2, 0, 1, 1), want: []float64{5, 6, 1, 2, 3, 4, 3, 4}},
		{name: "batchnorm at inference, before calibration", layers: []Layer{BatchNorm(Epsilon(0))}, inShape: []int{2},
			params: map[string][]float64{"0.batchnorm/gamma": {2, 3}, "0.batchnorm/beta": {1, -1}},
			x:      f64([]int{1, 2}, 4, 5), want: []float64{9, 14}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := built(t, tc.inShape, tc.params, tc.layers...)
			got, err := m.Predict(context.Background(), tc.x)
			if err != nil {
				t.Fatal(err)
			}
			near(t, tc.name, got.Float64s(), tc.want, 1e-12)
		})
	}
}

func TestBatchNormForward(t *testing.T) {
	m := built(t, []int{2}, map[string][]float64{"0.batchnorm/gamma": {2, 1}, "0.batchnorm/beta": {0, 1}}, BatchNorm(Epsilon(0)))
	x := f64([]int{4, 2}, 1, 10, 2, 10, 3, 14, 4, 14)
	// feature 0: mean 2.5, variance 1.25; feature 1: mean 12, variance 4
	s := 1 / math.Sqrt(1.25)
	want := []float64{-3 * s, 0, -s, 0, s, 2, 3 * s, 2}
	near(t, "training mode", run(t, m, x, modeCalib), want, 1e-12)
	// Calibration stores the statistics that inference then uses.
	if err := m.calibrate(x, 2, indices(4), 100); err != nil {
		t.Fatal(err)
	}
	near(t, "stored mean", m.layers[0].(*batchNorm).mean, []float64{2.5, 12}, 1e-12)
	near(t, "inference mode", run(t, m, x, modeInfer), want, 1e-12)

	// (batch, channels, h, w): statistics over batch and space.
	m4 := built(t, []int{1, 1, 2}, nil, BatchNorm(Epsilon(0)))
	x4 := f64([]int{2, 1, 1, 2}, 0, 2, 4, 6)
	s4 := 1 / math.Sqrt(5)
	near(t, "4-d", run(t, m4, x4, modeCalib), []float64{-3 * s4, -s4, s4, 3 * s4}, 1e-12)
}

// gradCheck compares the gradients that Gorgonia derives for the model's
// parameters and input with central finite differences of the objective
// Σ out ⊙ r, r random.
func gradCheck(t *testing.T, inShape []int, batch int, layers ...Layer) {
	t.Helper()
	m := Sequential(layers...)
	if err := m.Build(inShape, Float64(), Seed(7)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	// Move biases and BatchNorm's γ, β off their initial constants.
	for _, p := range m.params {
		for i := range p.Float64s() {
			p.Float64s()[i] += 0.3 * rng.NormFloat64()
		}
	}
	ng, err := m.graph(batch, modeCalib, nil)
	if err != nil {
		t.Fatal(err)
	}
	xs := ng.x.Shape().Clone()
	xv := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(xs...))
	for i := range xv.Float64s() {
		xv.Float64s()[i] = rng.NormFloat64()
	}
	if _, ok := layers[0].(*embedding); ok {
		for i := range xv.Float64s() {
			xv.Float64s()[i] = float64(rng.Intn(4))
		}
	}
	if err := gorgonia.Let(ng.x, xv); err != nil {
		t.Fatal(err)
	}
	r := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(ng.out.Shape().Clone()...))
	for i := range r.Float64s() {
		r.Float64s()[i] = rng.NormFloat64()
	}
	rc := gorgonia.NewConstant(r, gorgonia.WithName("r"))
	obj := gorgonia.Must(gorgonia.Sum(gorgonia.Must(gorgonia.HadamardProd(ng.out, rc))))
	wrt := append(gorgonia.Nodes{}, ng.learn...)
	vals := []*tensor.Dense{}
	for _, n := range ng.learn {
		vals = append(vals, n.Value().(*tensor.Dense))
	}
	_, isEmb := layers[0].(*embedding)
	if !isEmb {
		wrt = append(wrt, ng.x)
		vals = append(vals, xv)
	}
	grads, err := gorgonia.Grad(obj, wrt...)
	if err != nil {
		t.Fatal(err)
	}
	var objVal gorgonia.Value
	gv := make([]gorgonia.Value, len(grads))
	roots := gorgonia.Nodes{gorgonia.Read(obj, &objVal)}
	for i, g := range grads {
		roots = append(roots, gorgonia.Read(g, &gv[i]))
	}
	vm := gorgonia.NewTapeMachine(ng.g)
	defer vm.Close()
	eval := func() float64 {
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		return objVal.Data().(float64)
	}
	eval()
	analytic := make([][]float64, len(gv))
	for i, v := range gv {
		analytic[i] = append([]float64{}, v.Data().([]float64)...)
	}
	const h = 1e-6
	for i, v := range vals {
		data := v.Float64s()
		for _, j := range rng.Perm(len(data))[:min(len(data), 12)] {
			old := data[j]
			data[j] = old + h
			up := eval()
			data[j] = old - h
			down := eval()
			data[j] = old
			num := (up - down) / (2 * h)
			if d := math.Abs(num - analytic[i][j]); d > 1e-6*math.Max(1, math.Abs(num)) {
				t.Fatalf("%s, element %d: analytic gradient %v, finite differences %v", wrt[i].Name(), j, analytic[i][j], num)
			}
		}
	}
}

func TestLayerGradients(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inShape []int
		layers  []Layer
	}{
		{"dense", []int{5}, []Layer{Dense(4)}},
		{"conv2d", []int{2, 5, 5}, []Layer{Conv2D(3, 3, Pad(1))}},
		{"conv2d stride", []int{1, 6, 6}, []Layer{Conv2D(2, 2, Stride(2))}},
		{"maxpool", []int{2, 4, 4}, []Layer{Conv2D(2, 3, SamePad()), MaxPool2D(2)}},
		{"avgpool", []int{2, 4, 4}, []Layer{Conv2D(2, 3, SamePad()), AvgPool2D(2)}},
		{"avgpool alone", []int{2, 4, 4}, []Layer{AvgPool2D(2)}},
		{"flatten", []int{2, 3, 3}, []Layer{Conv2D(2, 2), Flatten(), Dense(3)}},
		{"reshape", []int{8}, []Layer{Reshape(2, 2, 2), Conv2D(1, 2)}},
		{"batchnorm", []int{4}, []Layer{Dense(3), BatchNorm()}},
		{"batchnorm 4-d", []int{2, 3, 3}, []Layer{BatchNorm()}},
		{"relu", []int{6}, []Layer{Dense(6), ReLU()}},
		{"leaky relu", []int{6}, []Layer{Dense(6), LeakyReLU(0.2)}},
		{"sigmoid", []int{6}, []Layer{Dense(6), Sigmoid()}},
		{"tanh", []int{6}, []Layer{Dense(6), Tanh()}},
		{"softmax", []int{6}, []Layer{Dense(6), Softmax()}},
		{"gelu", []int{6}, []Layer{Dense(6), GELU()}},
		{"swish", []int{6}, []Layer{Dense(6), Swish()}},
		{"embedding", []int{3}, []Layer{Embedding(4, 2), Flatten(), Dense(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) { gradCheck(t, tc.inShape, 3, tc.layers...) })
	}
}

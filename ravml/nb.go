package ravml

import (
	"context"
	"fmt"
	"math"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// GaussianNB is Gaussian naive Bayes: per class, each feature is normal
// with its own mean and variance, and variances get ε = VarSmoothing ×
// the largest feature variance added, as in scikit-learn.
//
// Fit runs one graph twice on every shard: with the class means at zero
// it returns per-class sums and counts (a one-hot of the labels times X),
// then with the means it returns per-class sums of squared deviations.
type GaussianNB struct {
	cfg          config
	VarSmoothing float64

	Classes int
	Prior   []float64 // per class
	Mean    []float64 // classes × features
	Var     []float64 // classes × features, smoothed
	Width   int
}

// NewGaussianNB returns a Gaussian naive Bayes classifier.
func NewGaussianNB(opts ...Option) *GaussianNB {
	return &GaussianNB{cfg: newConfig(opts), VarSmoothing: 1e-9}
}

// Fit estimates the per-class means and variances; y holds class indexes.
func (m *GaussianNB) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	if err := m.cfg.check(); err != nil {
		return err
	}
	x, err := asMatrix(X)
	if err != nil {
		return err
	}
	c, err := checkLabels(y, x.rows)
	if err != nil {
		return err
	}
	d := x.cols
	const xID, yID, mID, sID, nID, ssID = 1, 2, 3, 5, 6, 10
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, d)
		b.input("y", rows)
		b.input("means", c, d)
		oh := b.op(graph.KindOneHot, attrs(graph.IntAttr("depth", c)), graph.Shape{rows, c}, yID)
		b.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_a", true)), graph.Shape{c, d}, oh, xID)
		b.op(graph.KindSum, attrs(graph.AxesAttr("axes", 0)), graph.Shape{c}, oh)
		rm := b.op(graph.KindMatMul, nil, graph.Shape{rows, d}, oh, mID)
		dev := b.op(graph.KindSub, nil, graph.Shape{rows, d}, xID, rm)
		sq := b.op(graph.KindSquare, nil, graph.Shape{rows, d}, dev)
		b.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_a", true)), graph.Shape{c, d}, oh, sq)
		return b.g, []int64{sID, nID, ssID}, b.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		return map[int64]*tensor.Dense{
			xID: dense(x.data[lo*d:hi*d], hi-lo, d),
			yID: dense(append([]float64(nil), y[lo:hi]...), hi-lo),
		}
	}
	j, err := openJob(ctx, &m.cfg, x.rows, spec, resident)
	if err != nil {
		return err
	}
	defer j.close()
	means := make([]float64, c*d)
	feed := func(int) map[int64]*tensor.Dense { return map[int64]*tensor.Dense{mID: dense(means, c, d)} }
	outs, err := j.forward(ctx, feed)
	if err != nil {
		return err
	}
	sums, counts := make([]float64, c*d), make([]float64, c)
	for _, o := range outs {
		addTo(sums, o[sID].Float64s())
		addTo(counts, o[nID].Float64s())
	}
	for k := 0; k < c; k++ {
		for f := 0; f < d; f++ {
			if counts[k] > 0 {
				means[k*d+f] = sums[k*d+f] / counts[k]
			}
		}
	}
	outs, err = j.forward(ctx, feed)
	if err != nil {
		return err
	}
	ss := make([]float64, c*d)
	for _, o := range outs {
		addTo(ss, o[ssID].Float64s())
	}
	// the overall variance of each feature, from the per-class moments
	n := float64(x.rows)
	maxVar := 0.0
	for f := 0; f < d; f++ {
		tot := 0.0
		for k := 0; k < c; k++ {
			tot += sums[k*d+f]
		}
		mu := tot / n
		v := 0.0
		for k := 0; k < c; k++ {
			dm := means[k*d+f] - mu
			v += ss[k*d+f] + counts[k]*dm*dm
		}
		maxVar = max(maxVar, v/n)
	}
	eps := m.VarSmoothing * maxVar
	m.Classes, m.Width = c, d
	m.Mean = means
	m.Var = make([]float64, c*d)
	m.Prior = make([]float64, c)
	for k := 0; k < c; k++ {
		m.Prior[k] = counts[k] / n
		for f := 0; f < d; f++ {
			if counts[k] > 0 {
				m.Var[k*d+f] = ss[k*d+f]/counts[k] + eps
			}
		}
	}
	return nil
}

func addTo(dst, src []float64) {
	for i, v := range src {
		dst[i] += v
	}
}

// LogProba returns the joint log-likelihood of each row and class (rows ×
// classes); a class never seen in training gets −Inf.
func (m *GaussianNB) LogProba(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	if m.Mean == nil {
		return nil, notFitted("GaussianNB")
	}
	x, err := asMatrix(X)
	if err != nil {
		return nil, err
	}
	if err := checkWidth(x, m.Width); err != nil {
		return nil, err
	}
	c, d := m.Classes, m.Width
	base := make([]float64, c)
	for k := 0; k < c; k++ {
		if m.Prior[k] == 0 {
			base[k] = math.Inf(-1)
			continue
		}
		s := 0.0
		for f := 0; f < d; f++ {
			s += math.Log(2 * math.Pi * m.Var[k*d+f])
		}
		base[k] = math.Log(m.Prior[k]) - 0.5*s
	}
	out := make([]float64, x.rows*c)
	for i := 0; i < x.rows; i++ {
		r := x.row(i)
		for k := 0; k < c; k++ {
			if math.IsInf(base[k], -1) {
				out[i*c+k] = base[k]
				continue
			}
			mu, v := m.Mean[k*d:(k+1)*d], m.Var[k*d:(k+1)*d]
			s := 0.0
			for f, xv := range r {
				dx := xv - mu[f]
				s += dx * dx / v[f]
			}
			out[i*c+k] = base[k] - 0.5*s
		}
	}
	return out, nil
}

// Predict returns the most likely class of each row of X.
func (m *GaussianNB) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	lp, err := m.LogProba(ctx, X)
	if err != nil {
		return nil, err
	}
	return argmaxRows(lp, m.Classes), nil
}

// Score returns the accuracy on X and y.
func (m *GaussianNB) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, Accuracy)
}

func argmaxRows(v []float64, c int) []float64 {
	out := make([]float64, len(v)/c)
	for i := range out {
		r := v[i*c : (i+1)*c]
		b := 0
		for k, x := range r {
			if x > r[b] {
				b = k
			}
		}
		out[i] = float64(b)
	}
	return out
}

func (m *GaussianNB) String() string { return fmt.Sprintf("GaussianNB(%d classes)", m.Classes) }

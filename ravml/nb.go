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
// Fit runs one graph once on every shard: it holds the rows, centred on
// the column means, and returns per-class sums, counts and sums of
// squares (segment_sum over the labels, plain and squared).
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
	if err := m.cfg.check("GaussianNB"); err != nil {
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
	e := d + 1
	// The shards hold [x − μ, 1], μ the column means, so that the sums
	// of squares below lose little to cancellation.
	mu := make([]float64, d)
	for i := 0; i < x.rows; i++ {
		addTo(mu, x.row(i))
	}
	for f := range mu {
		mu[f] /= float64(x.rows)
	}
	const xID, yID, sID, ssID = 1, 2, 3, 4
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, e)
		b.input("y", rows)
		b.op(graph.KindSegmentSum, attrs(graph.IntAttr("groups", c)), graph.Shape{c, e}, xID, yID)
		b.op(graph.KindSegmentSum, attrs(graph.IntAttr("groups", c), graph.BoolAttr("square", true)), graph.Shape{c, e}, xID, yID)
		return b.g, []int64{sID, ssID}, b.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		xc := make([]float64, (hi-lo)*e)
		for i := lo; i < hi; i++ {
			o := xc[(i-lo)*e : (i-lo+1)*e]
			for f, v := range x.row(i) {
				o[f] = v - mu[f]
			}
			o[d] = 1
		}
		return map[int64]*tensor.Dense{
			xID: dense(xc, hi-lo, e),
			yID: dense(append([]float64(nil), y[lo:hi]...), hi-lo),
		}
	}
	j, err := openJob(ctx, &m.cfg, x.rows, spec, resident)
	if err != nil {
		return err
	}
	defer j.close()
	outs, err := j.forward(ctx, nil)
	if err != nil {
		return err
	}
	sums, sq := make([]float64, c*e), make([]float64, c*e)
	for _, o := range outs {
		addTo(sums, o[sID].Float64s())
		addTo(sq, o[ssID].Float64s())
	}
	counts := make([]float64, c)
	means := make([]float64, c*d) // of the centred data
	vars := make([]float64, c*d)
	for k := 0; k < c; k++ {
		counts[k] = sums[k*e+d]
		if counts[k] == 0 {
			continue
		}
		for f := 0; f < d; f++ {
			mc := sums[k*e+f] / counts[k]
			means[k*d+f] = mc
			vars[k*d+f] = max(0, sq[k*e+f]/counts[k]-mc*mc)
		}
	}
	// the overall variance of each feature, from the per-class moments
	n := float64(x.rows)
	maxVar := 0.0
	for f := 0; f < d; f++ {
		tot := 0.0
		for k := 0; k < c; k++ {
			tot += sq[k*e+f]
		}
		mc := 0.0
		for k := 0; k < c; k++ {
			mc += sums[k*e+f]
		}
		mc /= n
		maxVar = max(maxVar, tot/n-mc*mc)
	}
	eps := m.VarSmoothing * maxVar
	m.Classes, m.Width = c, d
	m.Mean = means
	m.Var = vars
	m.Prior = make([]float64, c)
	for k := 0; k < c; k++ {
		m.Prior[k] = counts[k] / n
		for f := 0; f < d; f++ {
			means[k*d+f] += mu[f]
			if counts[k] > 0 {
				vars[k*d+f] += eps
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

package ravml

import (
	"context"
	"fmt"
	"math"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// LogisticRegression is multinomial logistic regression with an L2
// penalty, fitted by L-BFGS on the mean cross-entropy plus
// ‖W‖²/(2·C·n) (the intercept is not penalised), the objective and
// stopping rule of scikit-learn's lbfgs solver: at most MaxIter (100)
// iterations, gradient tolerance Tol (1e-4).
//
// Each evaluation feeds the weights to every shard, whose graph computes
// the log-softmax of [X 1]·W, the summed log-likelihood of its labels
// and its gradient [X 1]ᵀ(softmax − onehot(y)); the requester adds them.
type LogisticRegression struct {
	cfg     config
	Classes int
	Width   int
	W       []float64 // (Width+1) × Classes; the last row is the intercept
	Iter    int       // L-BFGS iterations run
}

// NewLogisticRegression returns a multinomial logistic regression.
func NewLogisticRegression(opts ...Option) *LogisticRegression {
	return &LogisticRegression{cfg: newConfig(opts)}
}

// Fit estimates the weights; y holds class indexes.
func (m *LogisticRegression) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	if err := m.cfg.check("LogisticRegression", "C", "MaxIter", "Tol"); err != nil {
		return err
	}
	if !(m.cfg.c > 0) {
		return &ParamError{Name: "C", Reason: fmt.Sprintf("%v must be positive", m.cfg.c)}
	}
	x, err := asMatrix(X)
	if err != nil {
		return err
	}
	c, err := checkLabels(y, x.rows)
	if err != nil {
		return err
	}
	c = max(c, 2)
	d := x.cols
	e := d + 1
	const xID, yID, wID, llID, gID = 1, 2, 3, 8, 11
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, e)
		b.input("y", rows)
		b.input("w", e, c)
		oh := b.op(graph.KindOneHot, attrs(graph.IntAttr("depth", c)), graph.Shape{rows, c}, yID)
		z := b.op(graph.KindMatMul, nil, graph.Shape{rows, c}, xID, wID)
		ls := b.op(graph.KindLogSoftmaxRows, nil, graph.Shape{rows, c}, z)
		yl := b.op(graph.KindMul, nil, graph.Shape{rows, c}, oh, ls)
		b.op(graph.KindSum, attrs(graph.AxesAttr("axes", 0, 1)), nil, yl)
		p := b.op(graph.KindExp, nil, graph.Shape{rows, c}, ls)
		r := b.op(graph.KindSub, nil, graph.Shape{rows, c}, p, oh)
		b.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_a", true)), graph.Shape{e, c}, xID, r)
		return b.g, []int64{llID, gID}, b.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		return map[int64]*tensor.Dense{
			xID: dense(augment(x, lo, hi, one, 1), hi-lo, e),
			yID: dense(append([]float64(nil), y[lo:hi]...), hi-lo),
		}
	}
	j, err := openJob(ctx, &m.cfg, x.rows, spec, resident)
	if err != nil {
		return err
	}
	defer j.close()

	n := float64(x.rows)
	lam := 1 / (m.cfg.c * n)
	nw := e * c
	wbuf := make([]float64, nw)
	feed := map[int64]*tensor.Dense{wID: dense(wbuf, e, c)}
	lastW := make([]float64, nw)
	lastG := make([]float64, nw)
	lastF := math.NaN()
	var evalErr error
	eval := func(w []float64) {
		if !math.IsNaN(lastF) && equalSlices(w, lastW) {
			return
		}
		copy(wbuf, w)
		outs, err := j.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
		if err != nil {
			evalErr = err
			lastF = math.Inf(1)
			return
		}
		ll := 0.0
		clear(lastG)
		for _, o := range outs {
			ll += o[llID].Float64s()[0]
			addTo(lastG, o[gID].Float64s())
		}
		f := -ll / n
		for i := range lastG {
			lastG[i] /= n
		}
		for i := 0; i < d*c; i++ { // the intercept row is not penalised
			f += 0.5 * lam * w[i] * w[i]
			lastG[i] += lam * w[i]
		}
		copy(lastW, w)
		lastF = f
	}
	maxIter := m.cfg.maxIter
	if maxIter <= 0 {
		maxIter = 100
	}
	tol := m.cfg.tol
	if tol <= 0 {
		tol = 1e-4
	}
	f := func(w, g []float64) float64 {
		eval(w)
		copy(g, lastG)
		return lastF
	}
	w, iters := lbfgs(f, make([]float64, nw), maxIter, tol, 10)
	if evalErr != nil {
		return evalErr
	}
	m.W = w
	m.Classes, m.Width, m.Iter = c, d, iters
	return nil
}

func equalSlices(a, b []float64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// DecisionFunction returns [X 1]·W (rows × classes).
func (m *LogisticRegression) DecisionFunction(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	if m.W == nil {
		return nil, notFitted("LogisticRegression")
	}
	x, err := asMatrix(X)
	if err != nil {
		return nil, err
	}
	if err := checkWidth(x, m.Width); err != nil {
		return nil, err
	}
	return linearScores(x, m.W, m.Classes), nil
}

// linearScores returns [x 1]·w for w of (cols+1) × c.
func linearScores(x matrix, w []float64, c int) []float64 {
	d := x.cols
	out := make([]float64, x.rows*c)
	for i := 0; i < x.rows; i++ {
		o := out[i*c : (i+1)*c]
		copy(o, w[d*c:(d+1)*c])
		for f, v := range x.row(i) {
			if v == 0 {
				continue
			}
			wr := w[f*c : (f+1)*c]
			for k := range o {
				o[k] += v * wr[k]
			}
		}
	}
	return out
}

// Predict returns the most likely class of each row.
func (m *LogisticRegression) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	s, err := m.DecisionFunction(ctx, X)
	if err != nil {
		return nil, err
	}
	return argmaxRows(s, m.Classes), nil
}

// Score returns the accuracy on X and y.
func (m *LogisticRegression) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, Accuracy)
}

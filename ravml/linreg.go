package ravml

import (
	"context"
	"fmt"

	"gonum.org/v1/gonum/mat"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// LinearRegression is ordinary least squares, or ridge regression with
// the Ridge option. Each shard returns [X 1]ᵀ[X 1] and [X 1]ᵀy for its
// rows; the requester sums them, centres them (so the intercept is not
// penalised) and solves the normal equations with an SVD, which gives the
// minimum-norm solution when features are collinear.
type LinearRegression struct {
	cfg       config
	Coef      []float64
	Intercept float64
	fitted    bool
}

// NewLinearRegression returns a linear regression.
func NewLinearRegression(opts ...Option) *LinearRegression {
	return &LinearRegression{cfg: newConfig(opts)}
}

// Fit solves for the coefficients and the intercept.
func (m *LinearRegression) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	if err := m.cfg.check("LinearRegression", "Ridge"); err != nil {
		return err
	}
	if m.cfg.alpha < 0 {
		return &ParamError{Name: "Ridge", Reason: fmt.Sprintf("alpha %v must not be negative", m.cfg.alpha)}
	}
	x, err := asMatrix(X)
	if err != nil {
		return err
	}
	if err := checkTargets(y, x.rows); err != nil {
		return err
	}
	d := x.cols
	e := d + 1
	const xID, yID, xtID, xtxID, xtyID = 1, 2, 3, 4, 5
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, e)
		b.input("y", rows, 1)
		// Gorgonia's matmul cannot read one operand as both A and Aᵀ, so
		// the transpose is its own node.
		b.op(graph.KindTranspose, attrs(graph.AxesAttr("perm", 1, 0)), graph.Shape{e, rows}, xID)
		b.op(graph.KindMatMul, nil, graph.Shape{e, e}, xtID, xID)
		b.op(graph.KindMatMul, nil, graph.Shape{e, 1}, xtID, yID)
		return b.g, []int64{xtxID, xtyID}, b.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		return map[int64]*tensor.Dense{
			xID: dense(augment(x, lo, hi, one, 1), hi-lo, e),
			yID: dense(append([]float64(nil), y[lo:hi]...), hi-lo, 1),
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
	xtx, xty := make([]float64, e*e), make([]float64, e)
	for _, o := range outs {
		addTo(xtx, o[xtxID].Float64s())
		addTo(xty, o[xtyID].Float64s())
	}
	coef, icept, err := solveCentered(xtx, xty, d, m.cfg.alpha)
	if err != nil {
		return err
	}
	m.Coef, m.Intercept, m.fitted = coef, icept, true
	return nil
}

// solveCentered solves the centred normal equations from the moments of
// [X 1]: xtx is (d+1)², xty is d+1, the last row and column are the sums.
func solveCentered(xtx, xty []float64, d int, alpha float64) ([]float64, float64, error) {
	e := d + 1
	n := xtx[d*e+d]
	mu := make([]float64, d)
	for j := 0; j < d; j++ {
		mu[j] = xtx[j*e+d] / n
	}
	ybar := xty[d] / n
	a := mat.NewDense(d, d, nil)
	b := mat.NewDense(d, 1, nil)
	for j := 0; j < d; j++ {
		for k := 0; k < d; k++ {
			v := xtx[j*e+k] - n*mu[j]*mu[k]
			if j == k {
				v += alpha
			}
			a.Set(j, k, v)
		}
		b.Set(j, 0, xty[j]-n*mu[j]*ybar)
	}
	var svd mat.SVD
	if !svd.Factorize(a, mat.SVDThin) {
		return nil, 0, fmt.Errorf("ravml: linear regression: SVD did not converge")
	}
	rank := svd.Rank(1e-12)
	if rank == 0 {
		return make([]float64, d), ybar, nil
	}
	var w mat.Dense
	svd.SolveTo(&w, b, rank)
	coef := make([]float64, d)
	icept := ybar
	for j := range coef {
		coef[j] = w.At(j, 0)
		icept -= coef[j] * mu[j]
	}
	return coef, icept, nil
}

// Predict returns Xw + b for each row.
func (m *LinearRegression) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	if !m.fitted {
		return nil, notFitted("LinearRegression")
	}
	x, err := asMatrix(X)
	if err != nil {
		return nil, err
	}
	if err := checkWidth(x, len(m.Coef)); err != nil {
		return nil, err
	}
	out := make([]float64, x.rows)
	for i := range out {
		s := m.Intercept
		for j, v := range x.row(i) {
			s += v * m.Coef[j]
		}
		out[i] = s
	}
	return out, nil
}

// Score returns R² on X and y.
func (m *LinearRegression) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, R2)
}

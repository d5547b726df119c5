package ravml

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"sort"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// KMeans is k-means clustering: greedy k-means++ initialisation from a
// seeded source, then Lloyd iterations until the centres move less than
// the tolerance (1e-4 × the mean feature variance by default, as in
// scikit-learn) or MaxIter (300) is reached; NInit (10) restarts, the run
// with the lowest inertia wins.
//
// Every shard holds [X 1]. A Lloyd iteration feeds [−2c, ‖c‖²] for the
// centres; the shard computes ‖c‖² − 2x·c for all rows and centres, takes
// the argmin, and returns per-cluster sums of [x 1] (the last column
// counts the rows) and the sum of its rows' smallest distances. For
// k-means++ a second graph returns the distances from the shard's rows to
// the candidate centres.
type KMeans struct {
	cfg     config
	K       int
	Centers []float64 // K × Width
	Inertia float64
	Iter    int // Lloyd iterations of the winning run
	Width   int
}

// NewKMeans returns k-means with k clusters.
func NewKMeans(k int, opts ...Option) *KMeans { return &KMeans{cfg: newConfig(opts), K: k} }

// Fit clusters the rows of X; y is ignored (it may be nil).
func (m *KMeans) Fit(ctx context.Context, X *tensor.Dense, _ []float64) error {
	if err := m.cfg.check(); err != nil {
		return err
	}
	x, err := asMatrix(X)
	if err != nil {
		return err
	}
	k := m.K
	if k < 1 || k > x.rows {
		return &ParamError{Name: "k", Reason: fmt.Sprintf("%d clusters for %d rows", k, x.rows)}
	}
	maxIter, nInit := m.cfg.maxIter, m.cfg.nInit
	if maxIter <= 0 {
		maxIter = 300
	}
	if nInit <= 0 {
		nInit = 1
	}
	d := x.cols
	e := d + 1
	trials := 2 + int(math.Log(float64(k)))

	// Lloyd graph: 1 x, 2 centres, 3 distances, 4 argmin, 5 sums, 6 min, 7 Σmin
	const xID, cID, sumID, inID = 1, 2, 5, 7
	lloyd := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, e)
		b.input("centres", k, e)
		dist := b.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_b", true)), graph.Shape{rows, k}, xID, cID)
		a := b.op(graph.KindArgMin, nil, graph.Shape{rows}, dist)
		b.op(graph.KindSegmentSum, attrs(graph.IntAttr("groups", k)), graph.Shape{k, e}, xID, a)
		mn := b.op(graph.KindTopK, attrs(graph.IntAttr("k", 1)), graph.Shape{rows, 1}, dist)
		b.op(graph.KindSum, attrs(graph.AxesAttr("axes", 0, 1)), nil, mn)
		return b.g, []int64{sumID, inID}, b.err
	}
	// candidates graph: 1 x, 2 candidates, 3 distances
	const candID, cdID = 2, 3
	cands := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, e)
		b.input("candidates", trials, e)
		b.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_b", true)), graph.Shape{rows, trials}, xID, candID)
		return b.g, []int64{cdID}, b.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		return map[int64]*tensor.Dense{xID: dense(augment(x, lo, hi, one, 1), hi-lo, e)}
	}
	lj, err := openJob(ctx, &m.cfg, x.rows, lloyd, resident)
	if err != nil {
		return err
	}
	defer lj.close()
	cj, err := openJob(ctx, &m.cfg, x.rows, cands, resident)
	if err != nil {
		return err
	}
	defer cj.close()

	xx := make([]float64, x.rows)
	sumXX := 0.0
	for i := range xx {
		xx[i] = sqNorm(0, x.row(i))
		sumXX += xx[i]
	}
	tol := m.cfg.tol
	if tol <= 0 {
		tol = 1e-4 * meanVariance(x)
	}
	rng := rand.New(rand.NewSource(m.cfg.seed))
	best := math.Inf(1)
	for run := 0; run < nInit; run++ {
		centres, err := m.plusPlus(ctx, cj, x, xx, trials, rng)
		if err != nil {
			return err
		}
		inertia, iter, err := m.lloyd(ctx, lj, x, centres, sumXX, maxIter, tol)
		if err != nil {
			return err
		}
		if inertia < best {
			best = inertia
			m.Centers, m.Inertia, m.Iter = centres, inertia, iter
		}
	}
	m.Width = d
	return nil
}

func meanVariance(x matrix) float64 {
	s := 0.0
	for j := 0; j < x.cols; j++ {
		mu := 0.0
		for i := 0; i < x.rows; i++ {
			mu += x.data[i*x.cols+j]
		}
		mu /= float64(x.rows)
		v := 0.0
		for i := 0; i < x.rows; i++ {
			dv := x.data[i*x.cols+j] - mu
			v += dv * dv
		}
		s += v / float64(x.rows)
	}
	return s / float64(x.cols)
}

// packCentres writes rows [−2c, ‖c‖²] of the given centres into dst.
func packCentres(dst []float64, c []float64, d int) {
	for i := 0; i < len(c)/d; i++ {
		r := c[i*d : (i+1)*d]
		o := dst[i*(d+1) : (i+1)*(d+1)]
		for j, v := range r {
			o[j] = -2 * v
		}
		o[d] = sqNorm(0, r)
	}
}

// candDistances returns the squared distances (rows × len(ids)) of all
// rows to the rows ids, computed on the shards.
func (m *KMeans) candDistances(ctx context.Context, j *job, x matrix, xx []float64, ids []int, trials int, out []float64) error {
	d := x.cols
	buf := make([]float64, trials*(d+1))
	for t, id := range ids {
		packCentres(buf[t*(d+1):(t+1)*(d+1)], x.row(id), d)
	}
	// rows past len(ids) are padding whose distances are not read
	feed := map[int64]*tensor.Dense{2: dense(buf, trials, d+1)}
	outs, err := j.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
	if err != nil {
		return err
	}
	for s, o := range outs {
		v := o[3].Float64s()
		for i := j.lo[s]; i < j.hi[s]; i++ {
			r := v[(i-j.lo[s])*trials:]
			for t := range ids {
				out[i*len(ids)+t] = max(0, r[t]+xx[i])
			}
		}
	}
	return nil
}

// plusPlus picks k centres by greedy k-means++ (scikit-learn's variant:
// the best of several sampled candidates at each step).
func (m *KMeans) plusPlus(ctx context.Context, j *job, x matrix, xx []float64, trials int, rng *rand.Rand) ([]float64, error) {
	n, d, k := x.rows, x.cols, m.K
	centres := make([]float64, k*d)
	first := rng.Intn(n)
	copy(centres, x.row(first))
	closest := make([]float64, n)
	if err := m.candDistances(ctx, j, x, xx, []int{first}, trials, closest); err != nil {
		return nil, err
	}
	pot := 0.0
	for _, v := range closest {
		pot += v
	}
	cum := make([]float64, n)
	dist := make([]float64, n*trials)
	ids := make([]int, trials)
	for c := 1; c < k; c++ {
		s := 0.0
		for i, v := range closest {
			s += v
			cum[i] = s
		}
		for t := range ids {
			r := rng.Float64() * pot
			ids[t] = min(sort.SearchFloat64s(cum, r), n-1)
		}
		if err := m.candDistances(ctx, j, x, xx, ids, trials, dist); err != nil {
			return nil, err
		}
		bestT, bestPot := 0, math.Inf(1)
		for t := range ids {
			p := 0.0
			for i := 0; i < n; i++ {
				p += min(closest[i], dist[i*trials+t])
			}
			if p < bestPot {
				bestT, bestPot = t, p
			}
		}
		for i := 0; i < n; i++ {
			closest[i] = min(closest[i], dist[i*trials+bestT])
		}
		pot = bestPot
		copy(centres[c*d:], x.row(ids[bestT]))
	}
	return centres, nil
}

// lloyd refines centres in place and returns the inertia of the final
// assignment and the number of iterations.
func (m *KMeans) lloyd(ctx context.Context, j *job, x matrix, centres []float64, sumXX float64, maxIter int, tol float64) (float64, int, error) {
	k, d := m.K, x.cols
	e := d + 1
	packed := make([]float64, k*e)
	feed := map[int64]*tensor.Dense{2: dense(packed, k, e)}
	sums := make([]float64, k*e)
	inertia := 0.0
	for it := 1; ; it++ {
		packCentres(packed, centres, d)
		outs, err := j.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
		if err != nil {
			return 0, 0, err
		}
		clear(sums)
		inertia = sumXX
		for _, o := range outs {
			addTo(sums, o[5].Float64s())
			inertia += o[7].Float64s()[0]
		}
		if it > maxIter {
			return max(0, inertia), maxIter, nil
		}
		shift := 0.0
		for c := 0; c < k; c++ {
			cnt := sums[c*e+d]
			if cnt == 0 {
				continue // an empty cluster keeps its centre
			}
			for f := 0; f < d; f++ {
				v := sums[c*e+f] / cnt
				dv := v - centres[c*d+f]
				shift += dv * dv
				centres[c*d+f] = v
			}
		}
		if shift <= tol {
			// one more pass so that the inertia belongs to the final centres
			packCentres(packed, centres, d)
			outs, err := j.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
			if err != nil {
				return 0, 0, err
			}
			inertia = sumXX
			for _, o := range outs {
				inertia += o[7].Float64s()[0]
			}
			return max(0, inertia), it, nil
		}
	}
}

// Predict returns the index of the nearest centre of each row.
func (m *KMeans) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	if m.Centers == nil {
		return nil, notFitted("KMeans")
	}
	x, err := asMatrix(X)
	if err != nil {
		return nil, err
	}
	if err := checkWidth(x, m.Width); err != nil {
		return nil, err
	}
	d := m.Width
	out := make([]float64, x.rows)
	for i := range out {
		r := x.row(i)
		best, bc := math.Inf(1), 0
		for c := 0; c < m.K; c++ {
			s := 0.0
			for f, v := range m.Centers[c*d : (c+1)*d] {
				dv := r[f] - v
				s += dv * dv
			}
			if s < best {
				best, bc = s, c
			}
		}
		out[i] = float64(bc)
	}
	return out, nil
}

// Score returns the adjusted Rand index of the predicted clusters against
// the labels y.
func (m *KMeans) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, AdjustedRandIndex)
}

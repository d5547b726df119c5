package ravml

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"sync"

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
	if err := m.cfg.check("KMeans", "Seed", "MaxIter", "Tol", "NInit"); err != nil {
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

	// All nInit restarts run in lockstep, so every graph run serves all of
	// them: the centres of restart j are rows j·k onwards of the fed
	// matrix.
	//
	// Lloyd graph: 1 x, 2 centres, 3 distances (rows, R·k), 4 the same as
	// (rows·R, k), 5 argmin, 6 as (rows, R), 7 per-cluster sums (R·k, e),
	// 8 smallest distance, 9 as (rows, R), 10 its sum per restart (R).
	R := nInit
	P := min(R, lloydSlots) // restarts served per Lloyd run
	const xID, cID, sumID, inID = 1, 2, 7, 10
	lloyd := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, e)
		b.input("centres", P*k, e)
		dist := b.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_b", true)), graph.Shape{rows, P * k}, xID, cID)
		d2 := b.op(graph.KindReshape, attrs(graph.ShapeAttr("shape", rows*P, k)), graph.Shape{rows * P, k}, dist)
		a := b.op(graph.KindArgMin, nil, graph.Shape{rows * P}, d2)
		a2 := b.op(graph.KindReshape, attrs(graph.ShapeAttr("shape", rows, P)), graph.Shape{rows, P}, a)
		b.op(graph.KindSegmentSum, attrs(graph.IntAttr("groups", k)), graph.Shape{P * k, e}, xID, a2)
		mn := b.op(graph.KindTopK, attrs(graph.IntAttr("k", 1)), graph.Shape{rows * P, 1}, d2)
		mn2 := b.op(graph.KindReshape, attrs(graph.ShapeAttr("shape", rows, P)), graph.Shape{rows, P}, mn)
		b.op(graph.KindSum, attrs(graph.AxesAttr("axes", 0)), graph.Shape{P}, mn2)
		return b.g, []int64{sumID, inID}, b.err
	}
	// candidates graph: 1 x, 2 candidates (R·trials, e), 3 distances
	const candID, cdID = 2, 3
	cands := func(_ int, rows int) (*graph.Graph, []int64, error) {
		b := newBuilder()
		b.input("x", rows, e)
		b.input("candidates", R*trials, e)
		b.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_b", true)), graph.Shape{rows, R * trials}, xID, candID)
		return b.g, []int64{cdID}, b.err
	}
	// Both jobs read the same shards, which neither writes: each shard is
	// built once and kept by both.
	var mu sync.Mutex
	shards := map[[2]int]*tensor.Dense{}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		mu.Lock()
		t, ok := shards[[2]int{lo, hi}]
		mu.Unlock()
		if !ok {
			t = dense(augment(x, lo, hi, one, 1), hi-lo, e)
			mu.Lock()
			shards[[2]int{lo, hi}] = t
			mu.Unlock()
		}
		return map[int64]*tensor.Dense{xID: t}
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
	centres, err := m.plusPlus(ctx, cj, x, xx, R, trials, rng)
	if err != nil {
		return err
	}
	inertia, iters, err := m.lloyd(ctx, lj, x, centres, R, P, sumXX, maxIter, tol)
	if err != nil {
		return err
	}
	best := 0
	for r := range inertia {
		if inertia[r] < inertia[best] {
			best = r
		}
	}
	m.Centers = append([]float64(nil), centres[best*k*d:(best+1)*k*d]...)
	m.Inertia, m.Iter, m.Width = inertia[best], iters[best], d
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
func (m *KMeans) candDistances(ctx context.Context, j *job, x matrix, xx []float64, ids []int, out []float64) error {
	d := x.cols
	buf := make([]float64, len(ids)*(d+1))
	for t, id := range ids {
		packCentres(buf[t*(d+1):(t+1)*(d+1)], x.row(id), d)
	}
	feed := map[int64]*tensor.Dense{2: dense(buf, len(ids), d+1)}
	outs, err := j.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
	if err != nil {
		return err
	}
	nc := len(ids)
	for s, o := range outs {
		v := o[3].Float64s()
		for i := j.lo[s]; i < j.hi[s]; i++ {
			r := v[(i-j.lo[s])*nc : (i-j.lo[s]+1)*nc]
			for t := range r {
				out[i*nc+t] = max(0, r[t]+xx[i])
			}
		}
	}
	return nil
}

// plusPlus picks k centres for each of R restarts by greedy k-means++
// (scikit-learn's variant: the best of several sampled candidates at each
// step); the restarts share every graph run.
func (m *KMeans) plusPlus(ctx context.Context, j *job, x matrix, xx []float64, R, trials int, rng *rand.Rand) ([]float64, error) {
	n, d, k := x.rows, x.cols, m.K
	nc := R * trials
	centres := make([]float64, R*k*d)
	ids := make([]int, nc) // candidate rows, trials per restart
	for r := 0; r < R; r++ {
		first := rng.Intn(n)
		copy(centres[r*k*d:], x.row(first))
		for t := 0; t < trials; t++ {
			ids[r*trials+t] = first
		}
	}
	dist := make([]float64, n*nc)
	if err := m.candDistances(ctx, j, x, xx, ids, dist); err != nil {
		return nil, err
	}
	closest := make([]float64, R*n) // restart-major
	pot := make([]float64, R)
	for r := 0; r < R; r++ {
		for i := 0; i < n; i++ {
			v := dist[i*nc+r*trials]
			closest[r*n+i] = v
			pot[r] += v
		}
	}
	cum := make([]float64, n)
	for c := 1; c < k; c++ {
		for r := 0; r < R; r++ {
			s := 0.0
			for i, v := range closest[r*n : (r+1)*n] {
				s += v
				cum[i] = s
			}
			for t := 0; t < trials; t++ {
				ids[r*trials+t] = min(sort.SearchFloat64s(cum, rng.Float64()*pot[r]), n-1)
			}
		}
		if err := m.candDistances(ctx, j, x, xx, ids, dist); err != nil {
			return nil, err
		}
		for r := 0; r < R; r++ {
			cl := closest[r*n : (r+1)*n]
			bestT, bestPot := 0, math.Inf(1)
			for t := 0; t < trials; t++ {
				p := 0.0
				col := r*trials + t
				for i, v := range cl {
					p += min(v, dist[i*nc+col])
				}
				if p < bestPot {
					bestT, bestPot = t, p
				}
			}
			col := r*trials + bestT
			for i := range cl {
				cl[i] = min(cl[i], dist[i*nc+col])
			}
			pot[r] = bestPot
			copy(centres[(r*k+c)*d:], x.row(ids[col]))
		}
	}
	return centres, nil
}

// lloydSlots bounds how many restarts one Lloyd graph run serves; a
// restart that converges hands its slot to the next one.
const lloydSlots = 4

// lloyd refines the centres of R restarts in place, P at a time, and
// returns each restart's inertia for its final centres and its
// iterations.
func (m *KMeans) lloyd(ctx context.Context, j *job, x matrix, centres []float64, R, P int, sumXX float64, maxIter int, tol float64) ([]float64, []int, error) {
	k, d := m.K, x.cols
	e := d + 1
	kd := k * d
	packed := make([]float64, P*k*e)
	feed := map[int64]*tensor.Dense{2: dense(packed, P*k, e)}
	sums := make([]float64, P*k*e)
	in := make([]float64, P)
	inertia := make([]float64, R)
	iters := make([]int, R)
	const (
		running = iota
		converged
		frozen
	)
	state := make([]int, R)
	slot := make([]int, P) // restart in each slot, −1 when idle
	nextRestart := 0
	for p := range slot {
		slot[p] = nextRestart
		nextRestart++
	}
	for {
		for p, r := range slot {
			if r >= 0 {
				packCentres(packed[p*k*e:(p+1)*k*e], centres[r*kd:(r+1)*kd], d)
			}
		}
		outs, err := j.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
		if err != nil {
			return nil, nil, err
		}
		clear(sums)
		clear(in)
		for _, o := range outs {
			addTo(sums, o[7].Float64s())
			addTo(in, o[10].Float64s())
		}
		active := false
		for p, r := range slot {
			if r < 0 {
				continue
			}
			inertia[r] = max(0, in[p]+sumXX)
			if state[r] == converged || iters[r] >= maxIter {
				state[r] = frozen // the inertia belongs to its final centres
				slot[p] = -1
				if nextRestart < R {
					slot[p] = nextRestart
					nextRestart++
					active = true
				}
				continue
			}
			iters[r]++
			shift := 0.0
			for c := 0; c < k; c++ {
				row := sums[(p*k+c)*e : (p*k+c+1)*e]
				cnt := row[d]
				if cnt == 0 {
					continue // an empty cluster keeps its centre
				}
				cc := centres[r*kd+c*d : r*kd+(c+1)*d]
				for f := range cc {
					v := row[f] / cnt
					dv := v - cc[f]
					shift += dv * dv
					cc[f] = v
				}
			}
			if shift <= tol {
				state[r] = converged
			}
			active = true
		}
		if !active {
			return inertia, iters, nil
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

package ravml

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// Metric is the distance of a nearest-neighbour search.
type Metric uint8

// Metrics.
const (
	// Euclidean is the straight-line distance.
	Euclidean Metric = iota
	// Cosine is 1 − cos(angle) between rows; zero rows stay zero.
	Cosine
)

// WithMetric sets the distance of KNNClassifier and KNNRegressor.
func WithMetric(m Metric) Option { return func(c *config) { c.metric = m } }

// DistanceWeighted weights each neighbour's vote by the inverse of its
// distance (scikit-learn's weights="distance"); the default is uniform.
func DistanceWeighted() Option { return func(c *config) { c.weights = true } }

// knn is the search shared by the classifier and the regressor. Each
// shard holds its rows as [−2x, ‖x‖²]; a query batch [q, 1] times that
// transposed is ‖x‖² − 2q·x, and the shard returns its k smallest with
// their row indexes. The requester adds ‖q‖² and merges, breaking ties by
// the lower global row, so the answer does not depend on the shards.
type knn struct {
	cfg  config
	k    int
	x    matrix
	y    []float64
	mu   sync.Mutex
	job  *job
	bsz  int // query rows per graph run
	name string
}

func (m *knn) fit(ctx context.Context, X *tensor.Dense, y []float64, check func([]float64, int) error) error {
	if err := m.cfg.check(); err != nil {
		return err
	}
	if m.k < 1 {
		return &ParamError{Name: "k", Reason: fmt.Sprintf("%d must be at least 1", m.k)}
	}
	x, err := asMatrix(X)
	if err != nil {
		return err
	}
	if err := check(y, x.rows); err != nil {
		return err
	}
	if m.k > x.rows {
		return &ParamError{Name: "k", Reason: fmt.Sprintf("%d is larger than the %d training rows", m.k, x.rows)}
	}
	m.close()
	m.x = matrix{rows: x.rows, cols: x.cols, data: append([]float64(nil), x.data...)}
	if m.cfg.metric == Cosine {
		normalizeRows(m.x)
	}
	m.y = append([]float64(nil), y...)
	return m.open(ctx)
}

func normalizeRows(x matrix) {
	for i := 0; i < x.rows; i++ {
		r := x.row(i)
		n := math.Sqrt(sqNorm(0, r))
		if n > 0 {
			for j := range r {
				r[j] /= n
			}
		}
	}
}

func (m *knn) open(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.job != nil {
		return nil
	}
	b := m.cfg.batch
	if b < 1 {
		b = 256
	}
	d := m.x.cols
	const xID = 1
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		k := min(m.k, rows)
		gb := newBuilder()
		gb.input("x", rows, d+1)
		q := gb.input("q", b, d+1)
		dist := gb.op(graph.KindMatMul, attrs(graph.BoolAttr("trans_b", true)), graph.Shape{b, rows}, q, xID)
		vals := gb.op(graph.KindTopK, attrs(graph.IntAttr("k", k)), graph.Shape{b, k}, dist)
		idx := gb.op(graph.KindTopK, attrs(graph.IntAttr("k", k), graph.BoolAttr("indices", true)), graph.Shape{b, k}, dist)
		return gb.g, []int64{vals, idx}, gb.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		return map[int64]*tensor.Dense{xID: dense(augment(m.x, lo, hi, sqNorm, -2), hi-lo, d+1)}
	}
	j, err := openJob(ctx, &m.cfg, m.x.rows, spec, resident)
	if err != nil {
		return err
	}
	m.job, m.bsz = j, b
	return nil
}

// neighbours returns, for every query row, the k nearest training rows
// and their distances, nearest first.
func (m *knn) neighbours(ctx context.Context, X *tensor.Dense) (idx []int, dist []float64, err error) {
	if m.y == nil {
		return nil, nil, notFitted(m.name)
	}
	q, err := asMatrix(X)
	if err != nil {
		return nil, nil, err
	}
	if err := checkWidth(q, m.x.cols); err != nil {
		return nil, nil, err
	}
	if m.cfg.metric == Cosine {
		q = matrix{rows: q.rows, cols: q.cols, data: append([]float64(nil), q.data...)}
		normalizeRows(q)
	}
	if err := m.open(ctx); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k, b, d := m.k, m.bsz, q.cols
	idx = make([]int, q.rows*k)
	dist = make([]float64, q.rows*k)
	qid := int64(2) // the query input, second node of every shard graph
	batch := make([]float64, b*(d+1))
	type cand struct {
		v float64
		i int
	}
	cands := make([]cand, 0, k*len(m.job.sessions))
	for start := 0; start < q.rows; start += b {
		n := min(b, q.rows-start)
		clear(batch)
		for i := 0; i < n; i++ {
			copy(batch[i*(d+1):], q.row(start+i))
			batch[i*(d+1)+d] = 1
		}
		feed := map[int64]*tensor.Dense{qid: dense(batch, b, d+1)}
		outs, err := m.job.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
		if err != nil {
			return nil, nil, err
		}
		for i := 0; i < n; i++ {
			cands = cands[:0]
			for s, o := range outs {
				kk := m.job.hi[s] - m.job.lo[s]
				kk = min(kk, k)
				vals, ids := o[4].Float64s(), o[5].Float64s() // the two top_k nodes
				for j := 0; j < kk; j++ {
					cands = append(cands, cand{vals[i*kk+j], m.job.lo[s] + int(ids[i*kk+j])})
				}
			}
			sort.Slice(cands, func(a, c int) bool {
				if cands[a].v != cands[c].v {
					return cands[a].v < cands[c].v
				}
				return cands[a].i < cands[c].i
			})
			qq := sqNorm(0, q.row(start+i))
			for j := 0; j < k; j++ {
				idx[(start+i)*k+j] = cands[j].i
				dist[(start+i)*k+j] = math.Sqrt(max(0, cands[j].v+qq))
			}
		}
	}
	return idx, dist, nil
}

func (m *knn) weights(dist []float64, w []float64) {
	if !m.cfg.weights {
		for i := range w {
			w[i] = 1
		}
		return
	}
	zero := false
	for _, d := range dist {
		zero = zero || d == 0
	}
	for i, d := range dist {
		switch {
		case zero && d == 0:
			w[i] = 1
		case zero:
			w[i] = 0
		default:
			w[i] = 1 / d
		}
	}
}

func (m *knn) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.job.close()
	m.job = nil
}

// KNNClassifier predicts the majority class of the k nearest training
// rows (ties: the lowest class).
type KNNClassifier struct {
	knn
	classes int
}

// NewKNNClassifier returns a k-nearest-neighbours classifier.
func NewKNNClassifier(k int, opts ...Option) *KNNClassifier {
	return &KNNClassifier{knn: knn{cfg: newConfig(opts), k: k, name: "KNNClassifier"}}
}

// Fit puts the training rows on the shards; y holds class indexes.
func (m *KNNClassifier) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	return m.fit(ctx, X, y, func(y []float64, rows int) error {
		c, err := checkLabels(y, rows)
		m.classes = c
		return err
	})
}

// Predict returns the class of each row of X.
func (m *KNNClassifier) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	idx, dist, err := m.neighbours(ctx, X)
	if err != nil {
		return nil, err
	}
	k := m.k
	out := make([]float64, len(idx)/k)
	votes := make([]float64, m.classes)
	w := make([]float64, k)
	for i := range out {
		clear(votes)
		m.weights(dist[i*k:(i+1)*k], w)
		for j, r := range idx[i*k : (i+1)*k] {
			votes[int(m.y[r])] += w[j]
		}
		best := 0
		for c, v := range votes {
			if v > votes[best] {
				best = c
			}
		}
		out[i] = float64(best)
	}
	return out, nil
}

// Score returns the accuracy on X and y.
func (m *KNNClassifier) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, Accuracy)
}

// Close releases the shards held on the executors.
func (m *KNNClassifier) Close() error { m.close(); return nil }

// KNNRegressor predicts the mean target of the k nearest training rows.
type KNNRegressor struct{ knn }

// NewKNNRegressor returns a k-nearest-neighbours regressor.
func NewKNNRegressor(k int, opts ...Option) *KNNRegressor {
	return &KNNRegressor{knn{cfg: newConfig(opts), k: k, name: "KNNRegressor"}}
}

// Fit puts the training rows on the shards.
func (m *KNNRegressor) Fit(ctx context.Context, X *tensor.Dense, y []float64) error {
	return m.fit(ctx, X, y, checkTargets)
}

// Predict returns the (weighted) mean target of each row's neighbours.
func (m *KNNRegressor) Predict(ctx context.Context, X *tensor.Dense) ([]float64, error) {
	idx, dist, err := m.neighbours(ctx, X)
	if err != nil {
		return nil, err
	}
	k := m.k
	out := make([]float64, len(idx)/k)
	w := make([]float64, k)
	for i := range out {
		m.weights(dist[i*k:(i+1)*k], w)
		var s, sw float64
		for j, r := range idx[i*k : (i+1)*k] {
			s += w[j] * m.y[r]
			sw += w[j]
		}
		out[i] = s / sw
	}
	return out, nil
}

// Score returns R² on X and y.
func (m *KNNRegressor) Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error) {
	return scoreWith(ctx, m.Predict, X, y, R2)
}

// Close releases the shards held on the executors.
func (m *KNNRegressor) Close() error { m.close(); return nil }

func scoreWith(ctx context.Context, predict func(context.Context, *tensor.Dense) ([]float64, error), X *tensor.Dense, y []float64, metric func(p, y []float64) float64) (float64, error) {
	p, err := predict(ctx, X)
	if err != nil {
		return 0, err
	}
	if err := checkTargets(y, len(p)); err != nil {
		return 0, err
	}
	return metric(p, y), nil
}

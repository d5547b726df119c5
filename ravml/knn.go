package ravml

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
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
func WithMetric(m Metric) Option { return func(c *config) { c.metric = m; c.mark("WithMetric") } }

// DistanceWeighted weights each neighbour's vote by the inverse of its
// distance (scikit-learn's weights="distance"); the default is uniform.
func DistanceWeighted() Option {
	return func(c *config) { c.weights = true; c.mark("DistanceWeighted") }
}

// knn is the search shared by the classifier and the regressor.
//
// Each shard holds its rows, less their mean and scaled to norms near 1,
// as the columns of [−2x, ‖x‖²]ᵀ, in float32 where the data allow it (see
// screenable), else in float64. A query batch [q, 1] times that matrix is
// ‖x‖² − 2q·x, and the shard returns the cand rows with the smallest
// such values (matmul_top_k). The requester then works out the exact
// float64 distance ‖q − x‖² of every candidate and keeps the k nearest,
// ties broken by the lower global row. A bound on the rounding error of
// the shard's product proves that no row the shard left out can be
// nearer than the k-th kept; where the bound cannot prove it (many rows
// at nearly the same distance), the requester measures every row of that
// shard exactly. The answer is thus the exact float64 one, whatever the
// number of shards and whichever precision the shards compute in.
type knn struct {
	cfg  config
	k    int
	x    matrix
	y    []float64
	mu   sync.Mutex
	job  *job
	bsz  int // query rows per graph run
	name string

	dt      graph.DType // of the shards' rows and products
	cand    int         // candidates a shard returns per query
	mean    []float64   // of the training rows, taken from rows and queries on the shards
	scale   float64     // a power of two applied to rows and queries on the shards
	shardSq []float64   // per shard: the largest ‖x − mean‖² of its rows
	scans   int         // (query, shard) pairs measured in full; for tests
	noF32   bool        // never screen in float32; for tests
}

// candExtra is how many candidates beyond k a shard returns: enough that
// the bound almost always holds on real data, few enough that re-ranking
// costs little next to the shards' products.
const candExtra = 16

func (m *knn) fit(ctx context.Context, X *tensor.Dense, y []float64, check func([]float64, int) error) error {
	if err := m.cfg.check(m.name, "BatchRows", "WithMetric", "DistanceWeighted"); err != nil {
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
	m.x = matrix{rows: x.rows, cols: x.cols, data: parallelCopy(x.data)}
	if m.cfg.metric == Cosine {
		normalizeRows(m.x)
	}
	m.y = append([]float64(nil), y...)
	return m.open(ctx)
}

// parallelCopy returns a copy of src made by all cores at once: copying
// a data set into fresh memory is bound by the page faults of its first
// touch, which the cores take in parallel.
func parallelCopy(src []float64) []float64 {
	dst := make([]float64, len(src))
	p := runtime.GOMAXPROCS(0)
	if p < 2 || len(src) < 1<<20 {
		copy(dst, src)
		return dst
	}
	var wg sync.WaitGroup
	for i := 0; i < p; i++ {
		lo, hi := len(src)*i/p, len(src)*(i+1)/p
		wg.Add(1)
		go func() {
			defer wg.Done()
			copy(dst[lo:hi], src[lo:hi])
		}()
	}
	wg.Wait()
	return dst
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

// screenable says whether float32 products can screen candidates with a
// useful error bound: the row count fits float32 indexes exactly (a
// shard's would do; the whole count is simpler to know), the width keeps
// the bound's γ small, and the squared norms are finite (the shards scale
// them near 1).
func screenable(rows, cols int, maxSq float64) bool {
	return rows <= 1<<24 && cols+1 <= 100_000 && !math.IsInf(maxSq, 0)
}

// unitScale returns the power of two that brings the largest norm √maxSq
// into [½, 1): scaling by it is exact, and keeps float32 clear of both
// underflow (tiny data) and overflow (huge data).
func unitScale(maxSq float64) float64 {
	if maxSq == 0 || math.IsInf(maxSq, 0) {
		return 1
	}
	_, exp := math.Frexp(math.Sqrt(maxSq))
	return math.Ldexp(1, -exp)
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
	// The shards hold the rows less their mean: distances do not change,
	// and the smaller norms tighten the error bound (a common offset
	// would otherwise leave float32 few digits for the differences).
	mean := make([]float64, d)
	for i := 0; i < m.x.rows; i++ {
		for j, v := range m.x.row(i) {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= float64(m.x.rows)
	}
	sq := make([]float64, m.x.rows)
	maxSq := 0.0
	for i := range sq {
		sq[i] = sqDist(m.x.row(i), mean)
		maxSq = max(maxSq, sq[i])
	}
	dt := graph.Float64
	if !m.noF32 && screenable(m.x.rows, d, maxSq) {
		dt = graph.Float32
	}
	scale := unitScale(maxSq)
	const xID = 1
	spec := func(_ int, rows int) (*graph.Graph, []int64, error) {
		c := min(m.k+candExtra, rows)
		gb := newBuilder()
		gb.inputOf(dt, "x", d+1, rows)
		q := gb.inputOf(dt, "q", b, d+1)
		top := gb.opOf(dt, graph.KindMatMulTopK, attrs(graph.IntAttr("k", c)), graph.Shape{b, 2 * c}, q, xID)
		return gb.g, []int64{top}, gb.err
	}
	resident := func(lo, hi int) map[int64]*tensor.Dense {
		if dt == graph.Float32 {
			return map[int64]*tensor.Dense{xID: tensor.New(tensor.WithShape(d+1, hi-lo), tensor.WithBacking(shardColumns[float32](m.x, mean, sq, scale, lo, hi)))}
		}
		return map[int64]*tensor.Dense{xID: dense(shardColumns[float64](m.x, mean, sq, scale, lo, hi), d+1, hi-lo)}
	}
	j, err := openJob(ctx, &m.cfg, m.x.rows, spec, resident)
	if err != nil {
		return err
	}
	m.job, m.bsz, m.dt, m.cand, m.mean, m.scale = j, b, dt, m.k+candExtra, mean, scale
	m.shardSq = make([]float64, len(j.lo))
	for s := range j.lo {
		for _, v := range sq[j.lo[s]:j.hi[s]] {
			m.shardSq[s] = max(m.shardSq[s], v)
		}
	}
	return nil
}

// shardColumns returns rows lo..hi of x, less mean and times scale, as
// the columns of a (d+1) × (hi−lo) matrix [−2x', ‖x'‖²]ᵀ, x' = (x −
// mean)·scale: a product with the rows in columns reads them in place,
// where rows would first be copied into the product's panels on every
// run.
func shardColumns[T float32 | float64](x matrix, mean, sq []float64, scale float64, lo, hi int) []T {
	d, n := x.cols, hi-lo
	out := make([]T, (d+1)*n)
	// In tiles of 64 rows by 64 columns: each row of a tile is a run of
	// one column of out, so a tile writes 64 runs instead of one value to
	// each of 64 distant lines.
	const tile = 64
	for i0 := lo; i0 < hi; i0 += tile {
		i1 := min(i0+tile, hi)
		for j0 := 0; j0 < d; j0 += tile {
			j1 := min(j0+tile, d)
			for j := j0; j < j1; j++ {
				o := out[j*n+i0-lo : j*n+i1-lo]
				for t := range o {
					o[t] = T(-2 * (x.data[(i0+t)*d+j] - mean[j]) * scale)
				}
			}
		}
		for i := i0; i < i1; i++ {
			out[d*n+i-lo] = T(sq[i] * scale * scale)
		}
	}
	return out
}

// neighbour is a training row and its exact squared distance to a query.
type neighbour struct {
	d float64
	i int
}

func nearer(a, b neighbour) bool { return a.d < b.d || a.d == b.d && a.i < b.i }

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
	var batch64 []float64
	var batch32 []float32
	var feed map[int64]*tensor.Dense
	if m.dt == graph.Float32 {
		batch32 = make([]float32, b*(d+1))
		feed = map[int64]*tensor.Dense{qid: tensor.New(tensor.WithShape(b, d+1), tensor.WithBacking(batch32))}
	} else {
		batch64 = make([]float64, b*(d+1))
		feed = map[int64]*tensor.Dense{qid: dense(batch64, b, d+1)}
	}
	// The requester re-ranks a batch on all cores, each with its own
	// buffers: the shards are idle meanwhile (and, in-process, share the
	// same cores).
	rs := make([]reranker, runtime.GOMAXPROCS(0))
	for i := range rs {
		rs[i] = reranker{m: m, d: d}
	}
	for start := 0; start < q.rows; start += b {
		n := min(b, q.rows-start)
		clear(batch32)
		clear(batch64)
		for i := 0; i < n; i++ {
			row := q.row(start + i)
			if batch32 != nil {
				o := batch32[i*(d+1) : (i+1)*(d+1)]
				for j, v := range row {
					o[j] = float32((v - m.mean[j]) * m.scale)
				}
				o[d] = 1
			} else {
				o := batch64[i*(d+1) : (i+1)*(d+1)]
				for j, v := range row {
					o[j] = (v - m.mean[j]) * m.scale
				}
				o[d] = 1
			}
		}
		outs, err := m.job.forward(ctx, func(int) map[int64]*tensor.Dense { return feed })
		if err != nil {
			return nil, nil, err
		}
		var wg sync.WaitGroup
		for p := range rs {
			wg.Add(1)
			go func(r *reranker, lo, hi int) {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					best := r.query(q.row(start+i), outs, i)
					for j, c := range best {
						idx[(start+i)*k+j] = c.i
						dist[(start+i)*k+j] = math.Sqrt(c.d)
					}
				}
			}(&rs[p], n*p/len(rs), n*(p+1)/len(rs))
		}
		wg.Wait()
	}
	for _, r := range rs {
		m.scans += r.scans
	}
	return idx, dist, nil
}

// reranker turns the shards' candidates for one query into its k exact
// nearest rows.
type reranker struct {
	m     *knn
	d     int
	cands []neighbour
	fail  []bool
	last  []float64 // the largest value each shard returned
	scans int       // (query, shard) pairs measured in full
}

func (r *reranker) query(qrow []float64, outs []map[int64]*tensor.Dense, i int) []neighbour {
	m := r.m
	j := m.job
	k := m.k
	s2 := m.scale * m.scale
	qq := sqDist(qrow, m.mean) * s2 // all in the shards' scaled units
	r.cands = r.cands[:0]
	r.fail = append(r.fail[:0], make([]bool, len(outs))...)
	r.last = append(r.last[:0], make([]float64, len(outs))...)
	last := r.last
	for s, o := range outs {
		c := min(m.cand, j.hi[s]-j.lo[s])
		top := floats(o[3]) // the matmul_top_k node: c values, then c columns
		for t := 0; t < c; t++ {
			g := j.lo[s] + int(top(i*2*c+c+t))
			r.cands = append(r.cands, neighbour{sqDist(qrow, m.x.row(g)), g})
		}
		last[s] = top(i*2*c + c - 1)
	}
	sortNeighbours(r.cands)
	dk := r.cands[k-1].d
	any := false
	for s := range outs {
		if m.cand < j.hi[s]-j.lo[s] && !r.bounded(last[s], qq, m.shardSq[s]*s2, dk*s2) {
			r.fail[s], any = true, true
		}
	}
	if !any {
		return r.cands[:k]
	}
	// Measure every row of the shards the bound could not clear, instead
	// of their candidates. The k-th distance can only fall, so the shards
	// that were cleared stay cleared.
	kept := r.cands[:0]
	for _, c := range r.cands {
		if !r.fail[shardOf(j, c.i)] {
			kept = append(kept, c)
		}
	}
	r.cands = kept
	for s, f := range r.fail {
		if !f {
			continue
		}
		r.scans++
		for g := j.lo[s]; g < j.hi[s]; g++ {
			r.cands = append(r.cands, neighbour{sqDist(qrow, m.x.row(g)), g})
		}
	}
	sortNeighbours(r.cands)
	return r.cands[:k]
}

// bounded says whether every row that a shard left out is provably
// farther than dk, the k-th exact squared distance so far.
//
// The shard computed, for each row x (less the mean and scaled, as the
// query q; all four arguments are in those units, where scaling by a
// power of two is exact), a = ‖x‖² − 2q·x in precision u, and every
// left-out row has a ≥ last.
// Rounding the inputs and summing d+1 products in any order err by at
// most (γ(d+1) + 3u)·(‖x‖² + 2‖x‖·‖q‖) plus underflow, bounded here with
// room by (2(d+1)+8)·u·(…) and a term for the float64 centring; so the
// row's exact squared distance is at least last + ‖q‖² − e. The norms and
// distances summed in float64 carry a relative error below g, which the
// comparison allows for in the safe direction.
func (r *reranker) bounded(last, qq, xsq, dk float64) bool {
	u, limit := 0x1p-53, 1e300
	if r.m.dt == graph.Float32 {
		u, limit = 0x1p-24, 1e30 // beyond it, the query's product may overflow
	}
	if !(qq < limit && xsq < limit) || math.IsInf(last, 0) || math.IsNaN(last) {
		return false
	}
	n := float64(r.d + 1)
	g := float64(r.d+4) * 0x1p-52
	xs, qs := math.Sqrt(xsq*(1+g)), math.Sqrt(qq*(1+g))
	e := (2*n+8)*u*(xs*xs+2*xs*qs) + 0x1p-50*(xs+qs)*(xs+qs) + 3*(n+2)*0x1p-149
	lb := last + qq*(1-g) - e
	lb -= 4 * 0x1p-52 * (math.Abs(last) + qq + e)
	return lb*(1-g) > dk
}

func shardOf(j *job, g int) int {
	return sort.Search(len(j.hi), func(s int) bool { return g < j.hi[s] })
}

// floats returns an accessor for a float32 or float64 tensor's values.
func floats(t *tensor.Dense) func(int) float64 {
	if v, ok := t.Data().([]float32); ok {
		return func(i int) float64 { return float64(v[i]) }
	}
	v := t.Float64s()
	return func(i int) float64 { return v[i] }
}

func sortNeighbours(c []neighbour) {
	slices.SortFunc(c, func(a, b neighbour) int {
		switch {
		case nearer(a, b):
			return -1
		case nearer(b, a):
			return 1
		}
		return 0
	})
}

// sqDist is ‖a − b‖², summed in a fixed order, so that it is the same
// number whichever shard holds b.
func sqDist(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0, d1, d2, d3 := a[i]-b[i], a[i+1]-b[i+1], a[i+2]-b[i+2], a[i+3]-b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
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

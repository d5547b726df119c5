package ravml

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// Option configures a model. Fit fails with a *ParamError when given an
// option that does not apply to the model (MaxDepth to a KMeans, say).
type Option func(*config)

type config struct {
	execs  []exec.Executor
	shards int
	given  []string // the options given, by name, in order

	seed     int64
	maxIter  int
	tol      float64
	nInit    int
	alpha    float64 // ridge / L2 strength
	c        float64 // inverse regularisation of LogisticRegression
	batch    int
	metric   Metric
	weights  bool // distance-weighted votes
	maxDepth int
	minSplit int
	minLeaf  int
	maxBins  int
	crit     Criterion
	hidden   []int
	learn    float64
}

func newConfig(opts []Option) config {
	c := config{seed: 1, nInit: 10, c: 1, batch: 256, minSplit: 2, minLeaf: 1, maxBins: 256,
		learn: 1e-3}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// DefaultShards is the number of in-process executors (and shards) used
// when neither WithExecutors nor Shards is given.
const DefaultShards = 2

// WithExecutors runs the shards on the given executors (in-process,
// remote or a mix). Shard i goes to executor i mod len(executors); without
// Shards there is one shard per executor. It applies to every model.
func WithExecutors(executors ...exec.Executor) Option {
	return func(c *config) { c.execs = append([]exec.Executor(nil), executors...); c.mark("WithExecutors") }
}

// Shards sets the number of shards the rows are split into.
func Shards(n int) Option { return func(c *config) { c.shards = n; c.mark("Shards") } }

// Seed seeds the random choices of a model (k-means++ centres, weight
// initialisation, mini-batch order).
func Seed(s int64) Option { return func(c *config) { c.seed = s; c.mark("Seed") } }

// MaxIter bounds the iterations of the iterative models (KMeans: 300,
// LogisticRegression: 100, MLPClassifier: 200 epochs by default).
func MaxIter(n int) Option { return func(c *config) { c.maxIter = n; c.mark("MaxIter") } }

// Tol sets the convergence tolerance of the iterative models.
func Tol(t float64) Option { return func(c *config) { c.tol = t; c.mark("Tol") } }

// NInit sets how many times KMeans starts from new centres (default 10);
// the run with the lowest inertia wins.
func NInit(n int) Option { return func(c *config) { c.nInit = n; c.mark("NInit") } }

// Ridge adds an L2 penalty alpha·‖w‖² to LinearRegression (the intercept
// is not penalised), and sets the L2 strength of MLPClassifier.
func Ridge(alpha float64) Option { return func(c *config) { c.alpha = alpha; c.mark("Ridge") } }

// C sets the inverse regularisation strength of LogisticRegression
// (default 1, as scikit-learn).
func C(c float64) Option { return func(cf *config) { cf.c = c; cf.mark("C") } }

// BatchRows sets how many query rows one KNN graph run handles (default
// 256), or the mini-batch size of MLPClassifier (default 200).
func BatchRows(n int) Option { return func(c *config) { c.batch = n; c.mark("BatchRows") } }

// MaxDepth bounds the depth of a decision tree (0: no bound).
func MaxDepth(d int) Option { return func(c *config) { c.maxDepth = d; c.mark("MaxDepth") } }

// MinSamplesSplit is the fewest rows a tree node needs to be split
// (default 2).
func MinSamplesSplit(n int) Option {
	return func(c *config) { c.minSplit = n; c.mark("MinSamplesSplit") }
}

// MinSamplesLeaf is the fewest rows each side of a split must keep
// (default 1).
func MinSamplesLeaf(n int) Option { return func(c *config) { c.minLeaf = n; c.mark("MinSamplesLeaf") } }

// MaxBins bounds the candidate thresholds per feature of a decision tree
// (default 256). A feature with at most that many distinct values is split
// exactly between them; otherwise on quantiles.
func MaxBins(n int) Option { return func(c *config) { c.maxBins = n; c.mark("MaxBins") } }

// LearnRate sets the Adam step size of MLPClassifier (default 1e-3).
func LearnRate(r float64) Option { return func(c *config) { c.learn = r; c.mark("LearnRate") } }

// mark records that the option called name was given.
func (c *config) mark(name string) { c.given = append(c.given, name) }

// placementOptions apply to every model: where its shards run.
var placementOptions = []string{"WithExecutors", "Shards"}

// check validates the configuration of the model called model, which
// reads the options named in applies besides placementOptions.
func (c *config) check(model string, applies ...string) error {
	for _, name := range c.given {
		if !slices.Contains(placementOptions, name) && !slices.Contains(applies, name) {
			return &ParamError{Name: name, Reason: "does not apply to " + model}
		}
	}
	if c.shards < 0 {
		return &ParamError{Name: "Shards", Reason: fmt.Sprintf("%d must not be negative", c.shards)}
	}
	for i, e := range c.execs {
		if e == nil {
			return &ParamError{Name: "WithExecutors", Reason: fmt.Sprintf("executor %d is nil", i)}
		}
	}
	return nil
}

// placement returns the executors and the number of shards to use.
func (c *config) placement() ([]exec.Executor, int) {
	execs := c.execs
	n := c.shards
	if len(execs) == 0 {
		if n == 0 {
			n = DefaultShards
		}
		execs = make([]exec.Executor, min(n, DefaultShards))
		for i := range execs {
			execs[i] = exec.NewCPU()
		}
	}
	if n == 0 {
		n = len(execs)
	}
	return execs, n
}

// shardRange returns rows [lo, hi) of shard s of n over rows rows.
func shardRange(rows, n, s int) (lo, hi int) {
	return rows * s / n, rows * (s + 1) / n
}

// job is one graph resident on every shard of a data set.
type job struct {
	sessions []exec.Session
	lo, hi   []int // row range of each shard
}

// shardSpec builds the forward-only graph of one shard of rows rows and
// says which of its inputs are resident.
type shardSpec func(shard, rows int) (g *graph.Graph, outputs []int64, err error)

// openJob opens the graph built by spec on every shard and puts the
// resident tensors that resident returns for each shard's row range.
// Each adjust function may change the session spec (list inputs that get
// gradients, name the loss) before it is opened.
func openJob(ctx context.Context, cfg *config, rows int, spec shardSpec, resident func(lo, hi int) map[int64]*tensor.Dense, adjust ...func(*exec.SessionSpec)) (*job, error) {
	execs, n := cfg.placement()
	if n > rows {
		n = rows
	}
	j := &job{sessions: make([]exec.Session, n), lo: make([]int, n), hi: make([]int, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for s := 0; s < n; s++ {
		j.lo[s], j.hi[s] = shardRange(rows, n, s)
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			errs[s] = j.openShard(ctx, execs[s%len(execs)], s, spec, resident, adjust)
		}(s)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			j.close()
			return nil, err
		}
	}
	return j, nil
}

func (j *job) openShard(ctx context.Context, e exec.Executor, s int, spec shardSpec, resident func(lo, hi int) map[int64]*tensor.Dense, adjust []func(*exec.SessionSpec)) error {
	lo, hi := j.lo[s], j.hi[s]
	g, outs, err := spec(s, hi-lo)
	if err != nil {
		return fmt.Errorf("ravml: shard %d graph: %w", s, err)
	}
	// one micro-batch: every pass runs the whole shard as index 0
	sp := exec.SessionSpec{Part: s, Graph: g, DataInputs: g.Inputs(), Outputs: outs, Solver: exec.SGD(1, 0), EvalMode: true, MicroBatches: 1}
	for _, a := range adjust {
		a(&sp)
	}
	sess, err := e.Open(ctx, sp)
	if err != nil {
		return fmt.Errorf("ravml: shard %d: %w", s, err)
	}
	j.sessions[s] = sess
	for id, t := range resident(lo, hi) {
		// resident builds its tensors afresh for the shard and never
		// changes them: an in-process session keeps them without a copy.
		if err := exec.Keep(ctx, sess, exec.InputName(id), t); err != nil {
			return fmt.Errorf("ravml: shard %d: %w", s, err)
		}
	}
	return nil
}

// forward runs every shard once with the feeds that feeds returns for it
// (nil: none) and returns each shard's outputs.
func (j *job) forward(ctx context.Context, feeds func(shard int) map[int64]*tensor.Dense) ([]map[int64]*tensor.Dense, error) {
	out := make([]map[int64]*tensor.Dense, len(j.sessions))
	errs := make([]error, len(j.sessions))
	var wg sync.WaitGroup
	for s, sess := range j.sessions {
		var f map[int64]*tensor.Dense
		if feeds != nil {
			f = feeds(s)
		}
		wg.Add(1)
		go func(s int, sess exec.Session, f map[int64]*tensor.Dense) {
			defer wg.Done()
			out[s], errs[s] = sess.Forward(ctx, 0, f)
			if errs[s] != nil {
				errs[s] = fmt.Errorf("ravml: shard %d: %w", s, errs[s])
			}
		}(s, sess, f)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// backward runs every shard's backward pass after forward and returns
// the gradients of each shard's inputs.
func (j *job) backward(ctx context.Context) ([]map[int64]*tensor.Dense, error) {
	out := make([]map[int64]*tensor.Dense, len(j.sessions))
	errs := make([]error, len(j.sessions))
	var wg sync.WaitGroup
	for s, sess := range j.sessions {
		wg.Add(1)
		go func(s int, sess exec.Session) {
			defer wg.Done()
			out[s], errs[s] = sess.Backward(ctx, 0, nil)
			if errs[s] != nil {
				errs[s] = fmt.Errorf("ravml: shard %d: %w", s, errs[s])
			}
		}(s, sess)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (j *job) close() {
	if j == nil {
		return
	}
	for _, s := range j.sessions {
		if s != nil {
			_ = s.Close()
		}
	}
}

// builder assigns node ids while a shard graph is built.
type builder struct {
	g    *graph.Graph
	next int64
	err  error
}

func newBuilder() *builder { return &builder{g: graph.New(), next: 1} }

func (b *builder) input(name string, shape ...int) int64 {
	return b.inputOf(graph.Float64, name, shape...)
}

func (b *builder) inputOf(dt graph.DType, name string, shape ...int) int64 {
	return b.add(graph.Node{Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: shape, DType: dt, Name: name})
}

func (b *builder) constant(name string, v *tensor.Dense) int64 {
	var s graph.Shape
	if !v.IsScalar() {
		s = graph.Shape(v.Shape().Clone())
	}
	return b.add(graph.Node{Role: graph.RoleConstant, Op: graph.NewOp(graph.KindConstant), Shape: s, DType: graph.Float64, Name: name, Value: v})
}

func (b *builder) op(kind graph.OpKind, attrs []graph.Attr, shape graph.Shape, inputs ...int64) int64 {
	return b.opOf(graph.Float64, kind, attrs, shape, inputs...)
}

func (b *builder) opOf(dt graph.DType, kind graph.OpKind, attrs []graph.Attr, shape graph.Shape, inputs ...int64) int64 {
	return b.add(graph.Node{Role: graph.RoleOp, Op: graph.NewOp(kind, attrs...), Inputs: inputs, Shape: shape, DType: dt})
}

func (b *builder) add(n graph.Node) int64 {
	if b.err != nil {
		return 0
	}
	n.ID = b.next
	b.next++
	if len(n.Shape) == 0 {
		n.Shape = nil
	}
	b.err = b.g.Add(n)
	return n.ID
}

func attrs(a ...graph.Attr) []graph.Attr { return a }

// dense wraps data as a float64 tensor of the given shape (no copy).
func dense(data []float64, shape ...int) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
}

// augment returns the rows lo..hi of m with extra appended as a last
// column: (hi-lo) × (cols+1).
func augment(m matrix, lo, hi int, extra func(i int, row []float64) float64, scale float64) []float64 {
	d := m.cols
	out := make([]float64, (hi-lo)*(d+1))
	for i := lo; i < hi; i++ {
		row := m.row(i)
		o := out[(i-lo)*(d+1) : (i-lo+1)*(d+1)]
		for j, v := range row {
			o[j] = scale * v
		}
		o[d] = extra(i, row)
	}
	return out
}

func one(int, []float64) float64 { return 1 }

func sqNorm(_ int, row []float64) float64 {
	s := 0.0
	for _, v := range row {
		s += v * v
	}
	return s
}

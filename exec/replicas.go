package exec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// WithRowWeights gives the relative speed of each replica for
// NewReplicas: replica i takes a share of every mini-batch's rows in
// proportion to weights[i] (see SplitRows). Without it, or with no
// weights, the replicas take equal shares. NewPipeline ignores it.
func WithRowWeights(weights ...float64) PipelineOption {
	return func(c *pipelineConfig) { c.weights = append([]float64(nil), weights...) }
}

// WithRebalance makes NewReplicas re-split the rows from the speeds it
// observes: every `every` steps it compares each replica's rows per
// second of compute (forward and backward) over those steps with its
// share of the rows, and when a share differs from the observed speed's
// by more than threshold (relative, e.g. 0.1), it moves rows to the
// faster replicas (SplitRows on the observed speeds). The replicas'
// pipelines are then opened again on the same executors for their new
// rows, with the parameters, optimiser state and update count carried
// over, so the model trained stays that of one process. every ≤ 0 turns
// it off (the default).
func WithRebalance(every int, threshold float64) PipelineOption {
	return func(c *pipelineConfig) { c.rebalance, c.threshold = every, threshold }
}

// WithClock sets the clock the replicas' compute is timed with (for
// WithRebalance and ReplicaStats.Took): now(i) is the time as replica i's
// driver sees it. The default is time.Now for all.
func WithClock(now func(replica int) time.Time) PipelineOption {
	return func(c *pipelineConfig) { c.now = now }
}

// Replicas trains r data-parallel replicas of a k-part pipeline. Every
// mini-batch is split by rows across the replicas; each runs forward and
// backward on its rows, micro-batched like a Pipeline; then the gradients
// each part accumulated are summed across its replicas, every replica
// weighted by its share of the rows, and every replica's part applies the
// same update. The loss stays the mean over the whole mini-batch, and all
// replicas hold bit-identical parameters after every step.
//
// Where every replica's executor for a part is a RingSession (a
// provider), the part's gradients are summed in a ring between them
// (WithReduction): each member is asked for the round as soon as its
// backward ends, and the requester moves none of the gradients. Such a
// ring also shards the update (WithShardedUpdate): its round is the
// step, each member updating the parameters whose sums it holds. Otherwise
// the sum runs through this process: for each part, concurrently, the
// accumulated gradients (GradName) are fetched from every replica as soon
// as its backward ends, added in replica order as they arrive (so the
// result does not depend on timing) and Put back to every replica before
// it steps. Either way every element's sum is rounded once per addition
// in a fixed order, the same on every replica.
type Replicas struct {
	mu     sync.Mutex
	g      *graph.Graph
	data   []int64
	batch  int
	rows   []int
	pipes  []*Pipeline
	learn  [][]int64 // the learnable parameters of each part
	closed bool
	broken error
	stats  ReplicaStats
	// for WithRebalance: what reopening needs, and the compute time of
	// each replica since the last check
	cfg    pipelineConfig
	opts   []PipelineOption
	loss   int64
	parts  [][]int64
	execs  [][]Executor
	took   []time.Duration
	window int
	// scratch keeps, by gradient name, the float64 sums reducePart adds
	// float32 gradients into when they arrive in several groups
	scratchMu sync.Mutex
	scratch   map[string][]float64
	// rings holds each part's ring (nil: summed through this process),
	// ringWhy why a part's ring did not form, round the last round
	// asked of the rings
	rings   []*ringPart
	ringWhy error
	ringMu  sync.Mutex
	round   uint64
}

// ReplicaStats counts where the steps of a Replicas spent their time.
type ReplicaStats struct {
	// Steps is the number of training steps taken.
	Steps int
	// Compute is the time the replicas spent running their rows forward
	// and backward (until the slowest replica's backward ended, the
	// gradients included), Reduce the time from then until the gradients
	// summed across replicas were put back to every replica (fetching a
	// replica's gradients starts when its backward ends, so the part of
	// the exchange that overlaps slower replicas' compute is not in it),
	// Update the time the parts spent applying the update (for parts whose
	// ring shards the update, the update is in Reduce: it runs inside the
	// ring's round). Each is a total over Steps.
	Compute, Reduce, Update time.Duration
	// Took is each replica's own compute time, Rebalances the number of
	// times WithRebalance re-split the rows.
	Took       []time.Duration
	Rebalances int
	// RingParts is the number of parts whose gradients are summed in a
	// ring between their replicas' executors (RingSession) rather than
	// through this process; RingBytes the bytes the ring members sent
	// each other in all, over Steps.
	RingParts int
	RingBytes int64
	// ShardedParts is the number of those rings that shard the update
	// (WithShardedUpdate).
	ShardedParts int
}

// NewReplicas opens len(executors) replicas of the pipeline NewPipeline
// would open: executors[i][j] runs part j of replica i. g, loss, data and
// parts are as for NewPipeline; WithRowWeights sets each replica's share
// of the rows, WithMicroBatches the micro-batches each replica cuts its
// rows into. The batch must hold at least one row per micro-batch for
// every replica.
func NewReplicas(ctx context.Context, g *graph.Graph, loss int64, data []int64, parts [][]int64, executors [][]Executor, opts ...PipelineOption) (*Replicas, error) {
	cfg := pipelineConfig{micro: 1, solver: SGD(0.01, 0.9)} // NewPipeline's defaults
	for _, o := range opts {
		o(&cfg)
	}
	r := len(executors)
	if r == 0 {
		return nil, fmt.Errorf("%w: no replicas", ErrSpec)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: no data inputs", ErrSpec)
	}
	n, ok := g.Node(data[0])
	if !ok || len(n.Shape) == 0 {
		return nil, &SpecError{Part: -1, Node: data[0], Reason: "data input must be an input node with the batch on axis 0"}
	}
	batch := n.Shape[0]
	weights := cfg.weights
	if len(weights) == 0 {
		weights = make([]float64, r)
		for i := range weights {
			weights[i] = 1
		}
	}
	if len(weights) != r {
		return nil, fmt.Errorf("%w: %d row weights for %d replicas", ErrSpec, len(weights), r)
	}
	rows, err := SplitRows(batch, cfg.micro, weights)
	if err != nil {
		return nil, err
	}
	if cfg.now == nil {
		cfg.now = func(int) time.Time { return time.Now() }
	}
	rs := &Replicas{g: g, data: append([]int64{}, data...), batch: batch, rows: rows, cfg: cfg, opts: opts, loss: loss,
		parts: parts, execs: executors, took: make([]time.Duration, r)}
	rs.stats.Took = make([]time.Duration, r)
	if err := rs.open(ctx); err != nil {
		return nil, err
	}
	return rs, nil
}

// open opens every replica's pipeline for its rows.
func (rs *Replicas) open(ctx context.Context) error {
	rs.pipes = make([]*Pipeline, len(rs.execs))
	errs := make([]error, len(rs.execs))
	var wg sync.WaitGroup
	for i := range rs.execs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rg, err := Rebatch(rs.g, rs.data, rs.batch, rs.rows[i])
			if err != nil {
				errs[i] = err
				return
			}
			opts := rs.opts
			if len(rs.execs) > 1 {
				// The gradients are read after every step's backward.
				opts = append(slices.Clone(opts), func(c *pipelineConfig) { c.exportGrads = true })
			}
			rs.pipes[i], errs[i] = NewPipeline(ctx, rg, rs.loss, rs.data, rs.parts, rs.execs[i], opts...)
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, p := range rs.pipes {
			if p != nil {
				p.Close()
			}
		}
		return err
	}
	if rs.learn == nil {
		for _, spec := range rs.pipes[0].layout.Specs {
			rs.learn = append(rs.learn, spec.Graph.Learnables())
		}
	}
	if err := rs.formRings(ctx); err != nil {
		for _, p := range rs.pipes {
			p.Close()
		}
		return err
	}
	return nil
}

// RingError says why parts' gradients are summed through this process
// although the reduction is ReduceAuto (nil when every part with
// parameters is summed in a ring, or ReduceRequester is asked for).
func (rs *Replicas) RingError() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.ringWhy
}

// rebalance re-splits the rows when the compute times observed since the
// last check say the replicas' speeds differ from their shares by more
// than the threshold, and reopens the replicas for their new rows with
// the state of replica 0.
func (rs *Replicas) rebalance(ctx context.Context) error {
	if rs.window++; rs.cfg.rebalance <= 0 || rs.window < rs.cfg.rebalance {
		return nil
	}
	took := rs.took
	rs.window, rs.took = 0, make([]time.Duration, len(rs.pipes))
	speeds := make([]float64, len(took))
	var sum float64
	for i, d := range took {
		if d <= 0 {
			return nil // too fast to measure
		}
		speeds[i] = float64(rs.rows[i]) / d.Seconds()
		sum += speeds[i]
	}
	moved := false
	for i, s := range speeds {
		share := float64(rs.rows[i]) / float64(rs.batch)
		moved = moved || math.Abs(s/sum/share-1) > rs.cfg.threshold
	}
	if !moved {
		return nil
	}
	rows, err := SplitRows(rs.batch, rs.cfg.micro, speeds)
	if err != nil || slices.Equal(rows, rs.rows) {
		return nil
	}
	// The state every replica holds: parameters, optimiser slots and
	// the update count, read from replica 0 once the rings that shard
	// the update have gathered it.
	var slots []string
	if s, err := NewSolver(rs.cfg.solver, 0); err == nil {
		slots = s.Slots()
	}
	if err := rs.gatherState(ctx); err != nil {
		return err
	}
	state := make([]map[string]*tensor.Dense, len(rs.parts))
	for j, ids := range rs.learn {
		names := []string{SolverStepName}
		for _, id := range ids {
			names = append(names, ParamName(id))
			for _, slot := range slots {
				names = append(names, StateName(id, slot))
			}
		}
		if state[j], err = rs.pipes[0].sessions[j].Get(ctx, names...); err != nil {
			return err
		}
	}
	for _, p := range rs.pipes {
		p.Close()
	}
	rs.rows = rows
	if err := rs.open(ctx); err != nil {
		return err
	}
	rs.stats.Rebalances++
	return rs.each(func(i int, p *Pipeline) error {
		for j, st := range state {
			names := make([]string, 0, len(st))
			for n := range st {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if err := p.sessions[j].Put(ctx, n, st[n]); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Grid cuts executors into replicas of k parts for NewReplicas: executor
// i*k+j runs part j of replica i. A remainder of fewer than k is dropped.
func Grid(executors []Executor, k int) [][]Executor {
	var out [][]Executor
	for i := 0; k > 0 && (i+1)*k <= len(executors); i++ {
		out = append(out, executors[i*k:(i+1)*k:(i+1)*k])
	}
	return out
}

// SplitRows cuts a mini-batch of batch rows into len(weights) shares in
// proportion to the weights (positive and finite), each a multiple of
// micro (so that every share splits into micro micro-batches) and at
// least micro. Shares are given in units of micro rows by the largest
// remainder: every replica gets the whole units of its exact share, and
// the units left over go to the largest fractional parts, the lower index
// first among equal ones; a replica whose share rounds to nothing gets
// one unit, taken from the replica with the most. The result depends only
// on the arguments. It fails with ErrSpec when batch is not a multiple of
// micro or holds fewer than len(weights) units.
func SplitRows(batch, micro int, weights []float64) ([]int, error) {
	r := len(weights)
	if r == 0 || micro < 1 || batch%micro != 0 || batch/micro < r {
		return nil, fmt.Errorf("%w: a batch of %d rows does not split into %d replicas of a multiple of %d rows each", ErrSpec, batch, r, micro)
	}
	var sum float64
	for i, w := range weights {
		if !(w > 0) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("%w: row weight %d is %v; weights must be positive and finite", ErrSpec, i, w)
		}
		sum += w
	}
	units := batch / micro
	got := make([]int, r)
	frac := make([]float64, r)
	left := units
	for i, w := range weights {
		exact := float64(units) * w / sum
		got[i] = int(math.Floor(exact))
		frac[i] = exact - float64(got[i])
		left -= got[i]
	}
	order := make([]int, r)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return frac[order[a]] > frac[order[b]] })
	for j := 0; left > 0; j = (j + 1) % r {
		got[order[j]]++
		left--
	}
	for i := range got {
		if got[i] > 0 {
			continue
		}
		most := 0
		for j := range got {
			if got[j] > got[most] {
				most = j
			}
		}
		got[most]--
		got[i] = 1
	}
	for i := range got {
		got[i] *= micro
	}
	return got, nil
}

// Rows returns the number of rows of every mini-batch each replica takes.
func (rs *Replicas) Rows() []int { return append([]int{}, rs.rows...) }

// Pipelines returns the replicas' pipelines, replica 0 first. Their
// parameters are the same; reading them is safe, stepping one alone
// breaks the replicas' agreement. Where the rings shard the update, each
// replica's solver state is whole only after SyncState.
func (rs *Replicas) Pipelines() []*Pipeline { return append([]*Pipeline{}, rs.pipes...) }

// Stats returns the time spent so far, by phase.
func (rs *Replicas) Stats() ReplicaStats {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	st := rs.stats
	st.Took = slices.Clone(st.Took)
	for _, rp := range rs.rings {
		if rp != nil {
			st.RingParts++
			if rp.shard {
				st.ShardedParts++
			}
		}
	}
	rs.ringMu.Lock()
	st.RingBytes = rs.stats.RingBytes
	rs.ringMu.Unlock()
	return st
}

// Step trains on one mini-batch: feeds holds a full-batch value for every
// data input. It returns the mini-batch loss, the mean over all its rows.
func (rs *Replicas) Step(ctx context.Context, feeds map[int64]*tensor.Dense) (float64, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return 0, ErrClosed
	}
	if rs.broken != nil {
		return 0, fmt.Errorf("%w: %w", ErrBroken, rs.broken)
	}
	t0 := time.Now()
	if len(rs.pipes) == 1 {
		l, err := rs.pipes[0].Step(ctx, feeds)
		if err == nil {
			rs.stats.Steps++
			rs.stats.Compute += time.Since(t0)
		}
		return l, err
	}
	shares, err := rs.split(feeds)
	if err != nil {
		return 0, err
	}
	// The reduction waits for each replica's backward to end (ready) and
	// fetches its gradients while the others still compute.
	ready := make([]chan struct{}, len(rs.pipes))
	for i := range ready {
		ready[i] = make(chan struct{})
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs.round++
	reduced := make(chan error, 1)
	go func() { reduced <- rs.reduce(rctx, ready) }()
	losses := make([]float64, len(rs.pipes))
	err = rs.each(func(i int, p *Pipeline) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return ErrClosed
		}
		if p.broken != nil {
			return fmt.Errorf("%w: %w", ErrBroken, p.broken)
		}
		start := rs.cfg.now(i)
		var err error
		losses[i], err = p.accumulate(ctx, shares[i])
		d := rs.cfg.now(i).Sub(start)
		rs.took[i] += d
		rs.stats.Took[i] += d
		if err == nil {
			close(ready[i])
		}
		return err
	})
	t1 := time.Now()
	if err != nil {
		cancel()
	}
	if rerr := <-reduced; err == nil {
		err = rerr
	}
	t2 := time.Now()
	if err == nil {
		err = rs.each(func(i int, p *Pipeline) error {
			p.mu.Lock()
			defer p.mu.Unlock()
			return rs.stepParts(ctx, p)
		})
	}
	if err != nil {
		rs.broken = err
		return 0, err
	}
	rs.stats.Steps++
	rs.stats.Compute += t1.Sub(t0)
	rs.stats.Reduce += t2.Sub(t1)
	rs.stats.Update += time.Since(t2)
	loss := rs.mean(losses)
	if err := rs.rebalance(ctx); err != nil {
		rs.broken = err
		return 0, err
	}
	return loss, nil
}

// stepParts steps every part of one replica whose ring did not step it
// already (a ring that shards the update ends the step in its round).
func (rs *Replicas) stepParts(ctx context.Context, p *Pipeline) error {
	errs := make([]error, len(p.sessions))
	var wg sync.WaitGroup
	for j, s := range p.sessions {
		if j < len(rs.rings) && rs.rings[j] != nil && rs.rings[j].shard {
			continue
		}
		wg.Add(1)
		go func(j int, s Session) {
			defer wg.Done()
			errs[j] = s.Step(ctx)
		}(j, s)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Evaluate runs one mini-batch forward only, each replica on its rows,
// and returns its loss, the mean over all its rows.
func (rs *Replicas) Evaluate(ctx context.Context, feeds map[int64]*tensor.Dense) (float64, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return 0, ErrClosed
	}
	if len(rs.pipes) == 1 {
		return rs.pipes[0].Evaluate(ctx, feeds)
	}
	shares, err := rs.split(feeds)
	if err != nil {
		return 0, err
	}
	losses := make([]float64, len(rs.pipes))
	err = rs.each(func(i int, p *Pipeline) error {
		var err error
		losses[i], err = p.Evaluate(ctx, shares[i])
		return err
	})
	if err != nil {
		return 0, err
	}
	return rs.mean(losses), nil
}

// mean weights each replica's loss, a mean over its rows, by its rows.
func (rs *Replicas) mean(losses []float64) float64 {
	var l float64
	for i, li := range losses {
		l += li * float64(rs.rows[i])
	}
	return l / float64(rs.batch)
}

// each runs f for every replica concurrently.
func (rs *Replicas) each(f func(i int, p *Pipeline) error) error {
	errs := make([]error, len(rs.pipes))
	var wg sync.WaitGroup
	for i, p := range rs.pipes {
		wg.Add(1)
		go func(i int, p *Pipeline) {
			defer wg.Done()
			errs[i] = f(i, p)
		}(i, p)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// split checks the feeds and cuts them by rows, one share per replica.
func (rs *Replicas) split(feeds map[int64]*tensor.Dense) ([]map[int64]*tensor.Dense, error) {
	for id := range feeds {
		if !contains(rs.data, id) {
			return nil, &FeedError{Part: -1, Node: id, MicroBatch: -1, Reason: "not a data input"}
		}
	}
	out := make([]map[int64]*tensor.Dense, len(rs.pipes))
	for i := range out {
		out[i] = make(map[int64]*tensor.Dense, len(rs.data))
	}
	for _, id := range rs.data {
		n, _ := rs.g.Node(id)
		t, ok := feeds[id]
		if !ok {
			return nil, &FeedError{Part: -1, Node: id, MicroBatch: -1, Reason: fmt.Sprintf("missing feed for %q", n.Name)}
		}
		if err := checkTensor(-1, -1, n, t); err != nil {
			return nil, err
		}
		if !t.IsNativelyAccessible() || t.RequiresIterator() {
			t = t.Materialize().(*tensor.Dense)
		}
		per := int(n.Shape.Size()) / rs.batch
		lo := 0
		for i, rows := range rs.rows {
			shape := append([]int{rows}, n.Shape[1:]...)
			st, err := sliceRows(t, lo*per, (lo+rows)*per, shape)
			if err != nil {
				return nil, &FeedError{Part: -1, Node: id, MicroBatch: -1, Reason: err.Error()}
			}
			out[i][id] = st
			lo += rows
		}
	}
	return out, nil
}

// sliceRows copies elements lo to hi of t into a new tensor of shape.
func sliceRows(t *tensor.Dense, lo, hi int, shape []int) (*tensor.Dense, error) {
	var back any
	switch d := t.Data().(type) {
	case []float64:
		back = append([]float64(nil), d[lo:hi]...)
	case []float32:
		back = append([]float32(nil), d[lo:hi]...)
	case []int:
		back = append([]int(nil), d[lo:hi]...)
	case []int64:
		back = append([]int64(nil), d[lo:hi]...)
	case []int32:
		back = append([]int32(nil), d[lo:hi]...)
	default:
		return nil, fmt.Errorf("data of dtype %v cannot be split across replicas", t.Dtype())
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(back)), nil
}

// reduce sums every part's accumulated gradients across the replicas,
// replica i weighted by its share of the rows, and puts the sum back to
// every replica; the parts are reduced concurrently. Replica i's
// gradients are fetched once ready[i] is closed.
func (rs *Replicas) reduce(ctx context.Context, ready []chan struct{}) error {
	errs := make([]error, len(rs.learn))
	var wg sync.WaitGroup
	for j, ids := range rs.learn {
		if len(ids) == 0 {
			continue
		}
		wg.Add(1)
		go func(j int, ids []int64) {
			defer wg.Done()
			if j < len(rs.rings) && rs.rings[j] != nil {
				errs[j] = rs.reduceRing(ctx, j, ready)
				return
			}
			errs[j] = rs.reducePart(ctx, j, ids, ready)
		}(j, ids)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reducePart fetches part's gradients from every replica as it becomes
// ready, adds each replica's as soon as those of all replicas before it
// are in, and puts the sums back to every replica.
func (rs *Replicas) reducePart(ctx context.Context, part int, ids []int64, ready []chan struct{}) error {
	r := len(rs.pipes)
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = GradName(id)
	}
	w := make([]float64, r)
	for i := range w {
		w[i] = float64(rs.rows[i]) / float64(rs.batch)
	}
	got := make([]map[string]*tensor.Dense, r)
	errs := make([]error, r)
	arrived := make(chan int, r)
	for i, p := range rs.pipes {
		go func(i int, p *Pipeline) {
			select {
			case <-ready[i]:
				got[i], errs[i] = p.sessions[part].Get(ctx, names...)
			case <-ctx.Done():
				errs[i] = ctx.Err()
			}
			arrived <- i
		}(i, p)
	}
	sums := make([]partialSum, len(names))
	defer func() {
		for k, name := range names {
			if sums[k].acc != nil && sums[k].dt == tensor.Float32 {
				rs.keepScratch(name, sums[k].acc)
			}
		}
	}()
	have := make([]bool, r)
	next := 0 // replicas before next are added
	var failed error
	for range r {
		i := <-arrived
		have[i] = true
		if errs[i] != nil || failed != nil {
			continue
		}
		end := next
		for end < r && have[end] && errs[end] == nil {
			end++
		}
		// Add two replicas or more per pass over the sums (each pass
		// reads and writes all of them), or the last.
		if end == next || (end-next < 2 && end < r) {
			continue
		}
		for k, name := range names {
			gs := make([]*tensor.Dense, end-next)
			for i := range gs {
				if gs[i] = got[next+i][name]; gs[i] == nil {
					failed = &FeedError{Part: part, Node: -1, Name: name, MicroBatch: -1, Reason: fmt.Sprintf("replica %d returned no gradient", next+i)}
					break
				}
			}
			if failed != nil {
				break
			}
			if next == 0 {
				sums[k].scratch = rs.scratchFor(name)
			}
			if err := sums[k].add(gs, w[next:end], end == r); err != nil {
				failed = &FeedError{Part: part, Node: -1, Name: name, MicroBatch: -1, Reason: err.Error()}
				break
			}
		}
		next = end
	}
	if err := errors.Join(append(errs, failed)...); err != nil {
		return err
	}
	out := make([]*tensor.Dense, len(names))
	for k := range sums {
		if out[k] = sums[k].result(); out[k] == nil {
			return &FeedError{Part: part, Node: -1, Name: names[k], MicroBatch: -1, Reason: "no sum"}
		}
	}
	return rs.each(func(i int, p *Pipeline) error {
		for k, name := range names {
			if err := p.sessions[part].Put(ctx, name, out[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

// scratchFor returns the float64 sums kept for gradient name, or nil.
func (rs *Replicas) scratchFor(name string) []float64 {
	rs.scratchMu.Lock()
	defer rs.scratchMu.Unlock()
	return rs.scratch[name]
}

// keepScratch keeps the float64 sums of gradient name for the next step.
func (rs *Replicas) keepScratch(name string, acc []float64) {
	rs.scratchMu.Lock()
	defer rs.scratchMu.Unlock()
	if rs.scratch == nil {
		rs.scratch = make(map[string][]float64)
	}
	rs.scratch[name] = acc
}

// weightedSum returns Σ w_i · g_i: every element is added in float64,
// g_0's term first, and rounded once to the gradients' dtype.
func weightedSum(gs []*tensor.Dense, w []float64) (*tensor.Dense, error) {
	var p partialSum
	if err := p.add(gs, w, true); err != nil {
		return nil, err
	}
	return p.result(), nil
}

// partialSum is a weighted sum of gradients added a few replicas at a
// time, in replica order: every element is added in float64, the first
// replica's term first, and rounded once to the gradients' dtype by the
// last add. The elements are summed in ranges on several goroutines; as
// each element's sum is the same sequence of additions whatever the
// ranges and however the replicas are grouped, the result depends on
// neither.
type partialSum struct {
	n     int
	dt    tensor.Dtype
	shape tensor.Shape
	// acc holds the float64 sums between adds (the output's backing for
	// float64 gradients); scratch, if set before the first add, is
	// reused for it for float32 gradients.
	acc, scratch []float64
	started      bool
	out          *tensor.Dense
}

// add adds Σ w_i · gs_i to the sum; with final set, these are the last
// replicas, and the sum is rounded for result.
func (p *partialSum) add(gs []*tensor.Dense, w []float64, final bool) error {
	if len(gs) == 0 {
		return nil
	}
	first := !p.started
	if first {
		p.dt, p.n, p.shape = gs[0].Dtype(), gs[0].Shape().TotalSize(), slices.Clone(gs[0].Shape())
	}
	var f32 [][]float32
	var f64 [][]float64
	for i, g := range gs {
		if !g.IsNativelyAccessible() || g.RequiresIterator() {
			g = g.Materialize().(*tensor.Dense)
		}
		if g.Shape().TotalSize() != p.n || g.Dtype() != p.dt {
			return fmt.Errorf("gradient %d is %v %v, the first %v %v", i, g.Dtype(), g.Shape(), p.dt, p.shape)
		}
		switch d := g.Data().(type) {
		case []float64:
			f64 = append(f64, d)
		case []float32:
			f32 = append(f32, d)
		case float64:
			f64 = append(f64, []float64{d})
		case float32:
			f32 = append(f32, []float32{d})
		default:
			return fmt.Errorf("gradient of dtype %v", g.Dtype())
		}
	}
	p.started = true
	var out32 []float32
	switch {
	case f64 != nil && first:
		p.acc = make([]float64, p.n)
	case f32 != nil && final:
		out32 = make([]float32, p.n)
		fallthrough
	case f32 != nil && first:
		// All at once: the sums need only a block's scratch.
		if first && !final {
			if cap(p.scratch) >= p.n {
				p.acc = p.scratch[:p.n]
			} else {
				p.acc = make([]float64, p.n)
			}
		}
	}
	sumRanges(p.n, func(lo, hi int, block []float64) {
		if f64 != nil {
			acc := p.acc[lo:hi]
			if first {
				clear(acc)
			}
			add64(acc, f64, w, lo)
			return
		}
		acc := block[:hi-lo]
		if p.acc != nil {
			acc = p.acc[lo:hi]
		}
		if first {
			clear(acc)
		}
		add32(acc, f32, w, lo)
		if final {
			for j, v := range acc {
				out32[lo+j] = float32(v)
			}
		}
	})
	if !final {
		return nil
	}
	var back any = p.acc
	if f32 != nil {
		back = out32
	}
	if len(p.shape) == 0 {
		if f32 != nil {
			p.out = tensor.New(tensor.FromScalar(out32[0]))
		} else {
			p.out = tensor.New(tensor.FromScalar(p.acc[0]))
		}
		return nil
	}
	p.out = tensor.New(tensor.WithShape(p.shape...), tensor.WithBacking(back))
	return nil
}

// result returns the sum, once the final add is done.
func (p *partialSum) result() *tensor.Dense { return p.out }

// sumBlock is the number of elements one goroutine of partialSum adds at
// a time: its float64 sums (32 KiB) stay in the first-level cache while
// every replica's terms are added to them.
const sumBlock = 4096

// sumRanges calls f for consecutive ranges [lo, hi) of at most sumBlock
// elements covering [0, n), on up to GOMAXPROCS goroutines, each with a
// scratch block of sumBlock float64s.
func sumRanges(n int, f func(lo, hi int, block []float64)) {
	blocks := (n + sumBlock - 1) / sumBlock
	workers := min(runtime.GOMAXPROCS(0), blocks)
	var next atomic.Int64
	work := func() {
		block := make([]float64, sumBlock)
		for {
			b := int(next.Add(1) - 1)
			if b >= blocks {
				return
			}
			lo := b * sumBlock
			f(lo, min(lo+sumBlock, n), block)
		}
	}
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	wg.Wait()
}

// add32 adds Σ w_i · gs_i[lo:lo+len(acc)] to acc, in replica order.
func add32(acc []float64, gs [][]float32, w []float64, lo int) {
	for i, g := range gs {
		wi := w[i]
		g = g[lo : lo+len(acc)]
		for j, v := range g {
			acc[j] += float64(wi * float64(v))
		}
	}
}

// add64 adds Σ w_i · gs_i[lo:lo+len(acc)] to acc, in replica order.
func add64(acc []float64, gs [][]float64, w []float64, lo int) {
	for i, g := range gs {
		wi := w[i]
		g = g[lo : lo+len(acc)]
		for j, v := range g {
			acc[j] += float64(wi * v)
		}
	}
}

// Params returns the current value of every learnable parameter, read
// from replica 0 (all replicas hold the same).
func (rs *Replicas) Params(ctx context.Context) (map[int64]*tensor.Dense, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil, ErrClosed
	}
	return rs.pipes[0].Params(ctx)
}

// Close closes every replica's sessions.
func (rs *Replicas) Close() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil
	}
	rs.closed = true
	errs := make([]error, len(rs.pipes))
	for i, p := range rs.pipes {
		errs[i] = p.Close()
	}
	return errors.Join(errs...)
}

// ReplicaShares turns the measured speeds of r×k executors, caps[i*k+j]
// for part j of replica i, into the capacities a partition of k parts is
// made for (part j: the mean speed of its r executors) and each replica's
// row weight for WithRowWeights: the speed of its slowest part relative to
// that mean, since a replica keeps pace with its slowest stage. It fails
// with ErrSpec when r does not divide len(caps) or a speed is not
// positive and finite.
func ReplicaShares(caps []float64, r int) (partCaps, rowWeights []float64, err error) {
	if r < 1 || len(caps) == 0 || len(caps)%r != 0 {
		return nil, nil, fmt.Errorf("%w: %d speeds for %d replicas", ErrSpec, len(caps), r)
	}
	for i, c := range caps {
		if !(c > 0) || math.IsInf(c, 0) {
			return nil, nil, fmt.Errorf("%w: speed %d is %v", ErrSpec, i, c)
		}
	}
	k := len(caps) / r
	partCaps = make([]float64, k)
	for i, c := range caps {
		partCaps[i%k] += c / float64(r)
	}
	rowWeights = make([]float64, r)
	for i := range rowWeights {
		rowWeights[i] = math.Inf(1)
		for j := range k {
			rowWeights[i] = math.Min(rowWeights[i], caps[i*k+j]/partCaps[j])
		}
	}
	return partCaps, rowWeights, nil
}

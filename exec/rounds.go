package exec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/graph"
)

// ErrNoReplicas marks a round that no replica finished.
var ErrNoReplicas = errors.New("exec: no replica finished the round")

// MinRoundDeadline is the shortest deadline a round has, so that the
// jitter of very short rounds does not leave replicas out.
const MinRoundDeadline = time.Second

// RoundsOption configures Rounds.
type RoundsOption func(*roundsConfig)

type roundsConfig struct {
	steps    int
	inner    SolverConfig
	outer    SolverConfig
	codec    compress.Codec
	seed     uint64
	deadline float64
	adapt    bool
	events   func(RoundEvent)
	spare    func(ctx context.Context) (Executor, error)
	now      func() time.Time
}

// WithRoundSteps sets h, the local steps each replica takes per round
// (default 50). A replica slower than the fastest takes proportionally
// fewer (see WithAdaptiveSteps).
func WithRoundSteps(h int) RoundsOption { return func(c *roundsConfig) { c.steps = h } }

// WithInnerSolver sets the optimiser each replica applies on its local
// steps (default SGD 0.01, momentum 0.9). Its state stays with the
// replica across rounds.
func WithInnerSolver(cfg SolverConfig) RoundsOption { return func(c *roundsConfig) { c.inner = cfg } }

// WithOuterSolver sets the outer optimiser, which moves the global
// parameters by the replicas' mean delta: SGD (with heavy-ball momentum)
// or Nesterov. The default is DefaultOuter.
func WithOuterSolver(cfg SolverConfig) RoundsOption { return func(c *roundsConfig) { c.outer = cfg } }

// DefaultOuter is the outer optimiser of DiLoCo: Nesterov momentum 0.9 at
// learning rate 0.7.
func DefaultOuter() SolverConfig { return Nesterov(0.7, 0.9) }

// WithDeltaCodec sets how deltas and updates travel (default
// compress.Int8, with error feedback on both sides).
func WithDeltaCodec(c compress.Codec) RoundsOption { return func(c2 *roundsConfig) { c2.codec = c } }

// WithRoundSeed seeds the shuffles: the split of the data into shards and
// each replica's stream of rows (default 1).
func WithRoundSeed(seed uint64) RoundsOption { return func(c *roundsConfig) { c.seed = seed } }

// WithRoundDeadline sets the deadline of a round as factor times the
// median round time of the replicas that have finished, counted once half
// of them have (default 3), and at least MinRoundDeadline. A replica
// still busy then is left out of the round's average and catches up at
// the next. 0 waits for every replica.
func WithRoundDeadline(factor float64) RoundsOption {
	return func(c *roundsConfig) { c.deadline = factor }
}

// WithAdaptiveSteps says whether each replica's local steps follow its
// measured speed (default on): the fastest takes h steps per round, a
// replica half as fast h/2, so that a slow provider does not hold the
// round back.
func WithAdaptiveSteps(on bool) RoundsOption { return func(c *roundsConfig) { c.adapt = on } }

// WithRoundEvents calls f for every replica that leaves, is late, or
// joins; f must not block.
func WithRoundEvents(f func(RoundEvent)) RoundsOption { return func(c *roundsConfig) { c.events = f } }

// WithReplacements says where a replica that left gets its replacement:
// f is called, in the background, once per replica that leaves, and may
// wait until an executor is available. The replacement opens a session,
// receives the shard of the replica it replaces and joins at the next
// round boundary after it is ready, without stalling the others.
func WithReplacements(f func(ctx context.Context) (Executor, error)) RoundsOption {
	return func(c *roundsConfig) { c.spare = f }
}

// WithRoundClock sets the clock that times rounds (for tests).
func WithRoundClock(now func() time.Time) RoundsOption { return func(c *roundsConfig) { c.now = now } }

// EventKind says what happened to a replica.
type EventKind uint8

// The events of a replica.
const (
	// ReplicaLeft: its executor failed; it is out of the run until a
	// replacement takes its shard.
	ReplicaLeft EventKind = iota + 1
	// ReplicaLate: it missed the round's deadline and was left out of
	// its average; it starts the next round from the global parameters.
	ReplicaLate
	// ReplicaJoined: a replacement joined with the shard of a replica that
	// left.
	ReplicaJoined
)

func (k EventKind) String() string {
	switch k {
	case ReplicaLeft:
		return "left"
	case ReplicaLate:
		return "late"
	case ReplicaJoined:
		return "joined"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// RoundEvent reports a replica leaving, being late, or joining.
type RoundEvent struct {
	Round   int
	Replica int
	Kind    EventKind
	Err     error // why it left
}

func (e RoundEvent) String() string {
	s := fmt.Sprintf("round %d: replica %d %v", e.Round, e.Replica, e.Kind)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// RoundStats describes one round.
type RoundStats struct {
	Round int
	// Loss is the mean of the local steps' losses, weighted by rows, of
	// the replicas in the average.
	Loss float64
	// Rows counts the training rows of the replicas in the average.
	Rows int64
	// Replicas is how many replicas the average took; Late how many
	// missed the deadline; Left and Joined how many left and joined.
	Replicas, Late, Left, Joined int
	// Steps is the local steps each replica was asked for (0 for a
	// replica with no executor).
	Steps []int
	// BytesUp counts the bytes of the deltas the replicas sent, BytesDown
	// those of the updates and parameters sent to them, this round.
	BytesUp, BytesDown int64
	Elapsed            time.Duration
}

// Rounds trains r replicas of a whole model by local SGD (DiLoCo): each
// replica takes h steps on its own shard of the data with the inner
// optimiser, then the replicas' parameter deltas are averaged, weighted
// by the rows each trained on, and the outer optimiser moves the global
// parameters by the average. Each replica starts the next round from
// them. Deltas and updates travel compressed, with error feedback.
//
// This is not one-process training: the result depends on h, on the
// outer optimiser and on the codec (with h = 1, plain SGD inside, outer
// SGD at learning rate 1 and lossless deltas, it equals synchronous
// replicas). Use Replicas where exactness matters.
type Rounds struct {
	cfg    roundsConfig
	spec   SessionSpec
	learn  []int64
	sizes  []int
	total  int
	batch  int
	shared []*tensor.Dense // what the replicas hold at the round's start
	master []float64       // the outer optimiser's parameters
	vel    []float64
	slots  []*roundSlot
	round  int
	mu     sync.Mutex
	closed bool

	bg      context.Context
	cancel  context.CancelFunc
	joinMu  sync.Mutex
	joined  []joiner
	seeking int           // searches under way, guarded by joinMu
	found   chan struct{} // closed and replaced when a search ends
	joinsWG sync.WaitGroup
	closing sync.WaitGroup // sessions of replicas that left, closing
}

type roundSlot struct {
	index   int
	shard   map[int64]*tensor.Dense
	sess    Session
	pos     int64
	sync    bool   // send full anchors before the next round
	pending []byte // the encoded update to apply before the next round
	steps   int
	joining bool
}

type joiner struct {
	slot int
	sess Session
}

// NewRounds opens one session of the whole model g on each executor and
// gives it its shard of data. loss is the scalar loss (a mean over the
// batch), dataIDs the data inputs, each with the batch on axis 0 of its
// node; data holds, for each of them, the whole data set (every row an
// example, the other axes as the node's). Every learnable of g needs its
// initial value (graph.WithValues).
//
// The data set's rows are shuffled with StreamRows(seed, N, 0, N) and
// dealt out: shard i holds rows perm[i], perm[i+r], perm[i+2r], ...
// Replica i draws its mini-batches with StreamRows(seed+1+i, len(shard),
// ...), round after round.
func NewRounds(ctx context.Context, g *graph.Graph, loss int64, dataIDs []int64, data map[int64]*tensor.Dense, executors []Executor, opts ...RoundsOption) (*Rounds, error) {
	cfg := roundsConfig{steps: 50, inner: SGD(0.01, 0.9), outer: DefaultOuter(), codec: compress.Int8, seed: 1, deadline: 3, adapt: true, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := len(executors)
	if r == 0 {
		return nil, fmt.Errorf("%w: no executors", ErrSpec)
	}
	if len(dataIDs) == 0 {
		return nil, fmt.Errorf("%w: no data inputs", ErrSpec)
	}
	rows, batch := -1, -1
	for _, id := range dataIDs {
		n, ok := g.Node(id)
		if !ok || n.Role != graph.RoleInput || len(n.Shape) == 0 {
			return nil, &SpecError{Part: -1, Node: id, Reason: "data input must be an input node with the batch on axis 0"}
		}
		if err := checkShard(-1, n, data[id]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSpec, err)
		}
		if batch >= 0 && n.Shape[0] != batch {
			return nil, &SpecError{Part: -1, Node: id, Reason: fmt.Sprintf("batch %d, other data inputs have %d", n.Shape[0], batch)}
		}
		if rows >= 0 && data[id].Shape()[0] != rows {
			return nil, &SpecError{Part: -1, Node: id, Reason: fmt.Sprintf("data of %d rows, other data inputs have %d", data[id].Shape()[0], rows)}
		}
		batch, rows = n.Shape[0], data[id].Shape()[0]
	}
	if rows/r < batch {
		return nil, fmt.Errorf("%w: %d rows make shards of %d rows for %d replicas, fewer than the batch of %d", ErrSpec, rows, rows/r, r, batch)
	}
	var all []int64
	for _, n := range g.Nodes() {
		if n.Role == graph.RoleOp || n.Role == graph.RoleLearnable {
			all = append(all, n.ID)
		}
	}
	lay, err := NewLayout(g, [][]int64{all}, loss, dataIDs)
	if err != nil {
		return nil, err
	}
	spec := lay.Specs[0]
	spec.Solver = cfg.inner
	spec.MicroBatches = 1
	rs := &Rounds{cfg: cfg, spec: spec, learn: spec.Graph.Learnables(), batch: batch}
	for _, id := range rs.learn {
		n, _ := spec.Graph.Node(id)
		if n.Value == nil {
			return nil, &SpecError{Part: -1, Node: id, Reason: "learnable has no initial value"}
		}
		if n.DType != graph.Float32 && n.DType != graph.Float64 {
			return nil, &SpecError{Part: -1, Node: id, Reason: fmt.Sprintf("learnable of dtype %v", n.DType)}
		}
		v := cloneDense(n.Value)
		rs.shared = append(rs.shared, v)
		rs.sizes = append(rs.sizes, v.Shape().TotalSize())
		rs.master = append(rs.master, floats64(v)...)
	}
	rs.total = len(rs.master)
	rs.vel = make([]float64, rs.total)
	perm := StreamRows(cfg.seed, rows, 0, rows)
	for i := range executors {
		var idx []int
		for j := i; j < rows; j += r {
			idx = append(idx, perm[j])
		}
		sl := &roundSlot{index: i, shard: make(map[int64]*tensor.Dense), sync: true, steps: cfg.steps}
		for _, id := range dataIDs {
			src := data[id]
			sh := append([]int{len(idx)}, src.Shape()[1:]...)
			dst := tensor.New(tensor.WithShape(sh...), tensor.Of(src.Dtype()))
			gatherRows(dst, src, idx)
			sl.shard[id] = dst
		}
		rs.slots = append(rs.slots, sl)
	}
	errs := make([]error, r)
	var wg sync.WaitGroup
	for i, ex := range executors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs.slots[i].sess, errs[i] = rs.open(ctx, ex, rs.slots[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		rs.closeSessions()
		return nil, err
	}
	rs.bg, rs.cancel = context.WithCancel(context.Background())
	rs.found = make(chan struct{})
	return rs, nil
}

func (c *roundsConfig) validate() error {
	if c.steps < 1 || c.steps > MaxLocalSteps {
		return fmt.Errorf("%w: %d local steps per round", ErrSpec, c.steps)
	}
	if err := c.inner.Validate(); err != nil {
		return err
	}
	if err := c.outer.Validate(); err != nil {
		return err
	}
	if c.outer.Kind != SolverSGD && c.outer.Kind != SolverNesterov {
		return fmt.Errorf("%w: the outer optimiser is %v; rounds support sgd and nesterov", ErrSpec, c.outer.Kind)
	}
	if _, err := compress.Encode(c.codec, nil); err != nil {
		return fmt.Errorf("%w: %w", ErrSpec, err)
	}
	if c.deadline < 0 || math.IsNaN(c.deadline) || (c.deadline > 0 && c.deadline < 1) {
		return fmt.Errorf("%w: round deadline factor %v, want 0 or at least 1", ErrSpec, c.deadline)
	}
	return nil
}

// open opens a session of the model on ex and puts sl's shard on it.
func (rs *Rounds) open(ctx context.Context, ex Executor, sl *roundSlot) (Session, error) {
	s, err := ex.Open(ctx, rs.spec)
	if err != nil {
		return nil, err
	}
	for _, id := range rs.spec.DataInputs {
		if err := Keep(ctx, s, ShardName(id), sl.shard[id]); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

type roundResult struct {
	slot      int
	res       LocalResult
	delta     []float64
	up, down  int64
	took      time.Duration
	err       error
	cancelled bool
}

// Round runs one round: every replica with an executor takes its local
// steps and sends its delta, and the outer optimiser moves the global
// parameters. A replica that fails leaves the run (an event says so, and
// a replacement is sought where WithReplacements is given); one that
// misses the deadline is left out of this round. Round fails only when
// no replica finished, with an error matching ErrNoReplicas.
func (rs *Rounds) Round(ctx context.Context) (RoundStats, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return RoundStats{}, ErrClosed
	}
	st := RoundStats{Round: rs.round + 1, Steps: make([]int, len(rs.slots))}
	rs.admit(&st)
	start := rs.cfg.now()
	results := make(chan roundResult)
	cancels := make(map[int]context.CancelFunc)
	for _, sl := range rs.slots {
		if sl.sess == nil {
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		cancels[sl.index] = cancel
		st.Steps[sl.index] = sl.steps
		go func() { results <- rs.run(cctx, sl, start) }()
	}
	var ok, late []roundResult
	var timer *time.Timer
	var expired <-chan time.Time
	done := ctx.Done()
	for pending := len(cancels); pending > 0; {
		select {
		case res := <-results:
			pending--
			cancels[res.slot]()
			st.BytesUp += res.up
			st.BytesDown += res.down
			switch {
			case res.cancelled:
				late = append(late, res)
			case res.err == nil:
				ok = append(ok, res)
			default:
				rs.leave(&st, res)
			}
			if timer == nil && rs.cfg.deadline > 0 && len(ok) > 0 && 2*len(ok) >= len(cancels) && pending > 0 {
				took := make([]time.Duration, len(ok))
				for i, r := range ok {
					took[i] = r.took
				}
				slices.Sort(took)
				wait := max(time.Duration(rs.cfg.deadline*float64(took[(len(took)-1)/2])), MinRoundDeadline) - rs.cfg.now().Sub(start)
				timer = time.NewTimer(max(wait, 0))
				expired = timer.C
			}
		case <-expired:
			// Those that finished are cancelled already: this stops the rest.
			for _, c := range cancels {
				c()
			}
			expired = nil
		case <-done:
			for _, c := range cancels {
				c()
			}
			done, expired = nil, nil
		}
	}
	if timer != nil {
		timer.Stop()
	}
	if err := ctx.Err(); err != nil {
		for _, sl := range rs.slots {
			sl.sync, sl.pending = true, nil
		}
		return st, err
	}
	for _, res := range late {
		sl := rs.slots[res.slot]
		sl.sync, sl.pending = true, nil
		st.Late++
		rs.emit(RoundEvent{Round: st.Round, Replica: res.slot, Kind: ReplicaLate})
	}
	if len(ok) == 0 {
		return st, fmt.Errorf("%w (round %d)", ErrNoReplicas, st.Round)
	}
	rs.round++
	if err := rs.outerStep(ok, &st); err != nil {
		return st, err
	}
	rs.adaptSteps(ok)
	st.Elapsed = rs.cfg.now().Sub(start)
	return st, nil
}

// run is one replica's round: catch up with the global parameters, take
// the local steps, read the delta.
func (rs *Rounds) run(ctx context.Context, sl *roundSlot, start time.Time) (out roundResult) {
	out.slot = sl.index
	defer func() {
		out.took = rs.cfg.now().Sub(start)
		// Cancelled at the deadline: late, whatever it answered. A late
		// replica's delta is dropped; its parameters are reset before its
		// next round.
		out.cancelled = ctx.Err() != nil
	}()
	s := sl.sess
	if sl.sync {
		for i, id := range rs.learn {
			if out.err = s.Put(ctx, AnchorName(id), rs.shared[i]); out.err != nil {
				return out
			}
			out.down += int64(tensorBytes(rs.shared[i]))
		}
		sl.sync, sl.pending = false, nil
	}
	req := LocalRequest{Steps: sl.steps, Seed: rs.cfg.seed + 1 + uint64(sl.index), Start: sl.pos, Update: sl.pending, Delta: rs.cfg.codec}
	out.down += int64(len(sl.pending))
	sl.pending = nil
	out.res, out.err = LocalSteps(ctx, s, &rs.spec, req)
	if out.err == nil && (out.res.Steps != req.Steps || out.res.Rows != int64(req.Steps)*int64(rs.batch)) {
		// The replica's figures weigh its delta in the average: figures
		// other than those asked for take it out of the run.
		out.err = &RunError{Part: sl.index, MicroBatch: -1, Phase: "local steps",
			Err: fmt.Errorf("%d steps of %d rows asked for, %d steps and %d rows answered", req.Steps, rs.batch, out.res.Steps, out.res.Rows)}
		out.res = LocalResult{}
	}
	sl.pos += out.res.Rows
	if out.err != nil {
		sl.sync = true
		return out
	}
	out.up = int64(len(out.res.Delta))
	var err error
	if out.delta, err = compress.Decode(out.res.Delta, rs.total); err != nil {
		out.err = &RunError{Part: sl.index, MicroBatch: -1, Phase: "delta", Err: err}
	}
	return out
}

func tensorBytes(t *tensor.Dense) int { return t.Shape().TotalSize() * int(t.Dtype().Size()) }

// outerStep averages the deltas of ok, moves the global parameters and
// prepares the update every replica in the average receives.
func (rs *Rounds) outerStep(ok []roundResult, st *RoundStats) error {
	var rows int64
	var loss float64
	for _, r := range ok {
		rows += r.res.Rows
		loss += r.res.Loss * float64(r.res.Rows)
	}
	st.Replicas, st.Rows = len(ok), rows
	if rows > 0 {
		st.Loss = loss / float64(rows)
	}
	avg := make([]float64, rs.total)
	slices.SortFunc(ok, func(a, b roundResult) int { return a.slot - b.slot })
	for _, r := range ok {
		w := float64(r.res.Rows) / float64(rows)
		for j, v := range r.delta {
			avg[j] += w * v
		}
	}
	lr, mu := rs.cfg.outer.LearnRate, rs.cfg.outer.Momentum
	nesterov := rs.cfg.outer.Kind == SolverNesterov
	for j := range rs.master {
		g := -avg[j]
		rs.vel[j] = mu*rs.vel[j] + g
		step := rs.vel[j]
		if nesterov {
			step = g + mu*rs.vel[j]
		}
		rs.master[j] -= lr * step
	}
	u := make([]float64, rs.total)
	off := 0
	for _, t := range rs.shared {
		cur := floats64(t)
		for j, v := range cur {
			u[off+j] = rs.master[off+j] - v
		}
		off += len(cur)
	}
	p, err := compress.Encode(rs.cfg.codec, u)
	if err != nil {
		return &RunError{Part: -1, MicroBatch: -1, Phase: "update", Err: err}
	}
	back, err := compress.Decode(p, rs.total)
	if err != nil {
		return &RunError{Part: -1, MicroBatch: -1, Phase: "update", Err: err}
	}
	off = 0
	for i, t := range rs.shared {
		if rs.shared[i], err = ApplyDelta(t, back[off:off+rs.sizes[i]]); err != nil {
			return err
		}
		off += rs.sizes[i]
	}
	for _, r := range ok {
		if sl := rs.slots[r.slot]; !sl.sync {
			sl.pending = p
		}
	}
	return nil
}

// adaptSteps sets each replica's steps for the next round from its speed
// in this one: the fastest takes h.
func (rs *Rounds) adaptSteps(ok []roundResult) {
	if !rs.cfg.adapt {
		return
	}
	speed := make(map[int]float64)
	fastest := 0.0
	for _, r := range ok {
		if r.took <= 0 || r.res.Steps == 0 {
			continue
		}
		v := float64(r.res.Steps) / r.took.Seconds()
		speed[r.slot] = v
		fastest = max(fastest, v)
	}
	if fastest == 0 {
		return
	}
	for slot, v := range speed {
		rs.slots[slot].steps = max(1, min(rs.cfg.steps, int(math.Round(float64(rs.cfg.steps)*v/fastest))))
	}
}

// leave takes the failed replica of res out of the run and seeks its
// replacement.
func (rs *Rounds) leave(st *RoundStats, res roundResult) {
	sl := rs.slots[res.slot]
	if s := sl.sess; s != nil {
		// A provider that vanished may take its close timeout to answer:
		// the round does not wait for it.
		rs.closing.Add(1)
		go func() {
			defer rs.closing.Done()
			s.Close()
		}()
	}
	sl.sess, sl.pending, sl.sync, sl.steps = nil, nil, true, rs.cfg.steps
	st.Left++
	rs.emit(RoundEvent{Round: st.Round, Replica: res.slot, Kind: ReplicaLeft, Err: res.err})
	rs.seek(sl)
}

// seek looks for a replacement of sl's replica in the background, where
// WithReplacements gave where to look and no search is under way.
func (rs *Rounds) seek(sl *roundSlot) {
	if rs.cfg.spare == nil || sl.joining {
		return
	}
	sl.joining = true
	rs.joinsWG.Add(1)
	rs.joinMu.Lock()
	rs.seeking++
	rs.joinMu.Unlock()
	go func() {
		defer rs.joinsWG.Done()
		ex, err := rs.cfg.spare(rs.bg)
		var s Session
		if err == nil {
			s, err = rs.open(rs.bg, ex, sl)
		}
		rs.joinMu.Lock()
		defer rs.joinMu.Unlock()
		if err != nil {
			s = nil
		}
		rs.joined = append(rs.joined, joiner{slot: sl.index, sess: s})
		rs.seeking--
		close(rs.found)
		rs.found = make(chan struct{})
	}()
}

// admit lets the replacements that are ready join, and seeks again for
// replicas whose last search failed.
func (rs *Rounds) admit(st *RoundStats) {
	rs.joinMu.Lock()
	js := rs.joined
	rs.joined = nil
	rs.joinMu.Unlock()
	for _, j := range js {
		sl := rs.slots[j.slot]
		sl.joining = false
		if j.sess == nil {
			continue
		}
		sl.sess, sl.sync, sl.pending, sl.steps = j.sess, true, nil, rs.cfg.steps
		st.Joined++
		rs.emit(RoundEvent{Round: st.Round, Replica: j.slot, Kind: ReplicaJoined})
	}
	// A search that found nothing starts again, once per round.
	for _, sl := range rs.slots {
		if sl.sess == nil {
			rs.seek(sl)
		}
	}
}

func (rs *Rounds) emit(e RoundEvent) {
	if rs.cfg.events != nil {
		rs.cfg.events(e)
	}
}

// AwaitReplacements waits until every replacement sought so far is ready
// to join at the next round (or has failed to), or until ctx is done.
func (rs *Rounds) AwaitReplacements(ctx context.Context) error {
	for {
		rs.joinMu.Lock()
		n, found := rs.seeking, rs.found
		rs.joinMu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-found:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Active returns how many replicas have an executor.
func (rs *Rounds) Active() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, sl := range rs.slots {
		if sl.sess != nil {
			n++
		}
	}
	return n
}

// Params returns the global parameters by id, in their dtypes: the outer
// optimiser's values.
func (rs *Rounds) Params(ctx context.Context) (map[int64]*tensor.Dense, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil, ErrClosed
	}
	out := make(map[int64]*tensor.Dense, len(rs.learn))
	off := 0
	for i, id := range rs.learn {
		t := rs.shared[i]
		vals := rs.master[off : off+rs.sizes[i]]
		off += rs.sizes[i]
		switch t.Dtype() {
		case tensor.Float32:
			f := make([]float32, len(vals))
			for j, v := range vals {
				f[j] = float32(v)
			}
			out[id] = tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(f))
		default:
			out[id] = tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(append([]float64{}, vals...)))
		}
	}
	return out, nil
}

// Shared returns, by id, the parameters every replica in the last round's
// average holds at the start of the next (the global parameters as the
// codec carried them).
func (rs *Rounds) Shared() map[int64]*tensor.Dense {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make(map[int64]*tensor.Dense, len(rs.learn))
	for i, id := range rs.learn {
		out[id] = cloneDense(rs.shared[i])
	}
	return out
}

// Sessions returns each replica's session (nil for one with no executor).
func (rs *Rounds) Sessions() []Session {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]Session, len(rs.slots))
	for i, sl := range rs.slots {
		out[i] = sl.sess
	}
	return out
}

// Close closes every session and stops seeking replacements.
func (rs *Rounds) Close() error {
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		return nil
	}
	rs.closed = true
	rs.mu.Unlock()
	rs.cancel()
	rs.joinsWG.Wait()
	rs.closing.Wait()
	for _, j := range rs.joined {
		if j.sess != nil {
			j.sess.Close()
		}
	}
	return rs.closeSessions()
}

// closeSessions closes every replica's session; the slots are emptied
// under rs.mu, for Active and Sessions.
func (rs *Rounds) closeSessions() error {
	rs.mu.Lock()
	var ss []Session
	for _, sl := range rs.slots {
		if sl.sess != nil {
			ss = append(ss, sl.sess)
			sl.sess = nil
		}
	}
	rs.mu.Unlock()
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

package exec

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"gorgonia.org/tensor"
)

// RingSession is a Session that can sum its accumulated gradients with
// those of other sessions directly, without the requester: the sessions of
// one part in every replica form a ring, and each AllReduce round passes
// segments of the gradients around it (a reduce-scatter, then an
// all-gather), so that every member moves about 2·(r−1)/r of the
// gradients' bytes each way whatever the number of replicas r, and the
// requester none. The remote session of package transport is one; the
// in-process CPU session is not (its replicas share the requester's
// memory already).
type RingSession interface {
	Session
	// RingEndpoint names where the other members of a ring reach this
	// session. Replicas passes it, uninterpreted, to the member before
	// this one in the ring.
	RingEndpoint() string
	// JoinRing makes the session a member of ring spec, and checks that
	// the next member (spec.Next) answers for it.
	JoinRing(ctx context.Context, spec RingSpec) error
	// AllReduce runs one round of the ring in mode (every member must be
	// called for the same round, a number larger than its last, and the
	// same mode):
	//   - RingSum replaces the accumulated gradients of the ring's names
	//     with Σ_i Weights[i]·g_i over the members;
	//   - RingStep, for a ring joined with Shard, is the step itself: the
	//     sum as above, then each member applies the update to the part of
	//     the parameters whose sum it holds, and the members gather the
	//     updated parameters; the session's step is then over (no Step
	//     follows);
	//   - RingGatherState gathers the solver state that each member of a
	//     Shard ring keeps up to date for its part of the parameters, so
	//     that every member holds all of it (before it is read).
	// It returns once the session holds the whole result.
	AllReduce(ctx context.Context, round uint64, mode RingMode) (RingStats, error)
}

// RingMode is what a ring round does (RingSession.AllReduce).
type RingMode int

const (
	RingSum RingMode = iota
	RingStep
	RingGatherState
)

// ShardStepper is a Session whose step can be sharded across replicas
// (the provider's side of a Shard ring): StepSharded ends the step, as
// Step does, but f applies the update. f gets the gradient accumulators
// and the parameters of names (GradName), in names' order, and update(k,
// lo, hi), which applies the step's update to elements [lo, hi) of
// parameter k from its accumulated gradient (see Solver.UpdateRange); f
// must fill every element of the parameters that it does not update (from
// the replicas that did). The solver state of elements f does not update
// is left as it was. The CPU session and exec/plan's sessions on the host
// (the native executor's) are.
type ShardStepper interface {
	// Shardable says whether this session can shard its update: its
	// solver does not clip by norm, and its tensors are where f can
	// reach them.
	Shardable() bool
	StepSharded(ctx context.Context, names []string, f func(grads, params []*tensor.Dense, update func(k, lo, hi int) error) error) error
	// AccessState is AccessGrads for the solver state of the parameters
	// of names (GradName): states[j][k] is slot j of parameter k, which f
	// may change in place. The slots are the solver's (Solver.Slots).
	AccessState(ctx context.Context, names []string, f func(states [][]*tensor.Dense) error) error
}

// GradAccessor is a Session that lends its accumulated gradients in
// place, for a reduction that runs beside it (the provider's side of a
// ring): AccessGrads calls f with the accumulators of names (GradName),
// the deferred work of the step done, in names' order; f may read and
// change them and must not keep them after it returns. The session's
// other calls wait meanwhile. The CPU session and exec/plan's sessions
// are (the latter on the host only: elsewhere they return ErrNotLent).
type GradAccessor interface {
	AccessGrads(ctx context.Context, names []string, f func(grads []*tensor.Dense) error) error
}

// ErrNotLent is what AccessGrads returns from a session that keeps its
// tensors where the caller cannot reach them in place (a GPU's memory):
// the caller reads and puts copies instead.
var ErrNotLent = errors.New("exec: the session cannot lend its tensors in place")

// RingSpec is one member's place in a ring of RingSessions.
type RingSpec struct {
	// Rank is the member's place, 0 to len(Weights)-1.
	Rank int
	// Weights weigh each member's gradients in the sum (its share of the
	// mini-batch's rows), in rank order.
	Weights []float64
	// Names are the gradients summed (GradName), in the order every
	// member flattens them into one vector; they must share one dtype.
	Names []string
	// Key is the ring's secret, which the members present to each other.
	Key []byte
	// Next is the RingEndpoint of the member after this one.
	Next string
	// Shard shards the update: the ring's steps are RingStep rounds, and
	// each member keeps the solver state of its part of the parameters
	// only, until a RingGatherState round.
	Shard bool
}

// RingStats counts what one member moved in an AllReduce round.
type RingStats struct {
	BytesSent, BytesReceived int64
}

// Validate checks the spec's fields against each other.
func (s *RingSpec) Validate() error {
	r := len(s.Weights)
	switch {
	case r < 2:
		return fmt.Errorf("%w: a ring of %d members", ErrSpec, r)
	case s.Rank < 0 || s.Rank >= r:
		return fmt.Errorf("%w: rank %d in a ring of %d", ErrSpec, s.Rank, r)
	case len(s.Names) == 0:
		return fmt.Errorf("%w: a ring with no gradients to sum", ErrSpec)
	case len(s.Key) < 16:
		return fmt.Errorf("%w: a ring key of %d bytes (at least 16)", ErrSpec, len(s.Key))
	case s.Next == "":
		return fmt.Errorf("%w: a ring with no next member", ErrSpec)
	}
	for i, w := range s.Weights {
		if !(w > 0) || w > 1 {
			return fmt.Errorf("%w: ring weight %d is %v", ErrSpec, i, w)
		}
	}
	return nil
}

// Reduction says where NewReplicas sums the replicas' gradients.
type Reduction int

const (
	// ReduceAuto sums a part's gradients in a ring between its replicas'
	// executors when every one of them is a RingSession and the ring
	// forms (JoinRing succeeds), and through this process otherwise.
	ReduceAuto Reduction = iota
	// ReduceRequester always sums through this process.
	ReduceRequester
	// ReduceRing sums in a ring and fails when one cannot form.
	ReduceRing
)

// String names the reduction as bench/scale's -reduce flag does.
func (r Reduction) String() string {
	switch r {
	case ReduceAuto:
		return "auto"
	case ReduceRequester:
		return "requester"
	case ReduceRing:
		return "ring"
	}
	return fmt.Sprintf("Reduction(%d)", int(r))
}

// ParseReduction is the inverse of Reduction.String.
func ParseReduction(s string) (Reduction, error) {
	for _, r := range []Reduction{ReduceAuto, ReduceRequester, ReduceRing} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w: reduction %q (auto, requester or ring)", ErrSpec, s)
}

// WithReduction sets where NewReplicas sums the gradients; the default is
// ReduceAuto.
func WithReduction(r Reduction) PipelineOption {
	return func(c *pipelineConfig) { c.reduction = r }
}

// WithShardedUpdate says whether replicas that sum in rings also shard
// the update (RingSpec.Shard): every replica then applies the update to
// 1/r of the parameters, those whose sum it holds, and the replicas
// gather the updated parameters instead of the summed gradients, which
// moves as many bytes and does 1/r of the update's work. The model is the
// same. The default is true; a solver that clips by norm never shards.
func WithShardedUpdate(on bool) PipelineOption {
	return func(c *pipelineConfig) { c.noShard = !on }
}

// ringPart is one part's ring: its members, one per replica, and whether
// it shards the update.
type ringPart struct {
	members []RingSession
	shard   bool
}

// formRings joins, for every part that has learnable parameters, its
// replicas' sessions into a ring when the reduction asks for one and they
// can. A part whose ring does not form is summed through this process
// (ReduceAuto) or fails the call (ReduceRing); why is kept in
// rs.ringWhy.
func (rs *Replicas) formRings(ctx context.Context) error {
	rs.rings = make([]*ringPart, len(rs.learn))
	rs.ringWhy = nil
	if rs.cfg.reduction == ReduceRequester || len(rs.pipes) < 2 {
		return nil
	}
	var whys []error
	for j, ids := range rs.learn {
		if len(ids) == 0 {
			continue
		}
		rp, err := rs.formRing(ctx, j, ids)
		if err != nil {
			if rs.cfg.reduction == ReduceRing {
				return err
			}
			whys = append(whys, err)
			continue
		}
		rs.rings[j] = rp
	}
	rs.ringWhy = errors.Join(whys...)
	return nil
}

// formRing joins part j's sessions into a ring.
func (rs *Replicas) formRing(ctx context.Context, part int, ids []int64) (*ringPart, error) {
	r := len(rs.pipes)
	members := make([]RingSession, r)
	for i, p := range rs.pipes {
		m, ok := p.sessions[part].(RingSession)
		if !ok {
			return nil, fmt.Errorf("%w: part %d of replica %d runs on an executor that cannot join a ring (%T)", ErrSpec, part, i, p.sessions[part])
		}
		members[i] = m
	}
	names := make([]string, len(ids))
	for k, id := range ids {
		names[k] = GradName(id)
	}
	weights := make([]float64, r)
	for i := range weights {
		weights[i] = float64(rs.rows[i]) / float64(rs.batch)
	}
	shard := !rs.cfg.noShard && !(rs.cfg.solver.ClipNorm > 0)
	err := rs.joinRing(ctx, part, members, names, weights, shard)
	if err != nil && shard {
		// A member that cannot shard (its executor, or its provider's
		// version) can still sum.
		shard = false
		err = rs.joinRing(ctx, part, members, names, weights, false)
	}
	if err != nil {
		return nil, err
	}
	return &ringPart{members: members, shard: shard}, nil
}

// joinRing places members in a fresh ring.
func (rs *Replicas) joinRing(ctx context.Context, part int, members []RingSession, names []string, weights []float64, shard bool) error {
	r := len(members)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	errs := make([]error, r)
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func(i int, m RingSession) {
			defer wg.Done()
			spec := RingSpec{Rank: i, Weights: weights, Names: names, Key: key, Next: members[(i+1)%r].RingEndpoint(), Shard: shard}
			if err := m.JoinRing(ctx, spec); err != nil {
				errs[i] = fmt.Errorf("part %d, replica %d: ring: %w", part, i, err)
			}
		}(i, m)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reduceRing sums part j's gradients in its ring: every member is asked
// for the round as soon as its replica's backward has ended (ready), and
// the call returns when every member holds the sum.
func (rs *Replicas) reduceRing(ctx context.Context, part int, ready []chan struct{}) error {
	rp := rs.rings[part]
	mode := RingSum
	if rp.shard {
		mode = RingStep
	}
	return rs.ringRound(ctx, part, ready, mode)
}

// gatherState runs a RingGatherState round on every ring that shards the
// update, so that every replica holds the whole solver state.
func (rs *Replicas) gatherState(ctx context.Context) error {
	if len(rs.cfg.solver.slots()) == 0 {
		return nil // no state to gather
	}
	var errs []error
	for j, rp := range rs.rings {
		if rp == nil || !rp.shard {
			continue
		}
		rs.round++
		errs = append(errs, rs.ringRound(ctx, j, nil, RingGatherState))
	}
	return errors.Join(errs...)
}

// SyncState makes every replica hold the whole solver state, which
// replicas that shard the update (WithShardedUpdate) keep in pieces
// between steps; read the state from a replica's sessions only after it.
// Checkpoints and rebalancing call it.
func (rs *Replicas) SyncState(ctx context.Context) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return ErrClosed
	}
	return rs.gatherState(ctx)
}

// ringRound runs one round of part's ring in mode: each member is asked
// as soon as ready[i] is closed (nil: at once).
func (rs *Replicas) ringRound(ctx context.Context, part int, ready []chan struct{}, mode RingMode) error {
	rp := rs.rings[part]
	round := rs.round
	errs := make([]error, len(rp.members))
	stats := make([]RingStats, len(rp.members))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, m := range rp.members {
		wg.Add(1)
		go func(i int, m RingSession) {
			defer wg.Done()
			if ready != nil {
				select {
				case <-ready[i]:
				case <-ctx.Done():
					errs[i] = ctx.Err()
					return
				}
			}
			if stats[i], errs[i] = m.AllReduce(ctx, round, mode); errs[i] != nil {
				// The others wait on this member: stop them.
				cancel()
			}
		}(i, m)
	}
	wg.Wait()
	var sent int64
	for _, st := range stats {
		sent += st.BytesSent
	}
	rs.ringMu.Lock()
	rs.stats.RingBytes += sent
	rs.ringMu.Unlock()
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("part %d, replica %d: ring round: %w", part, i, err)
		}
	}
	return errors.Join(errs...)
}

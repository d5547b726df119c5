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
	// AllReduce replaces the session's accumulated gradients of the
	// ring's names with Σ_i Weights[i]·g_i over the ring's members, and
	// returns once the session holds all of it. Every member must be
	// called for the same round, a number larger than its last.
	AllReduce(ctx context.Context, round uint64) (RingStats, error)
}

// GradAccessor is a Session that lends its accumulated gradients in
// place, for a reduction that runs beside it (the provider's side of a
// ring): AccessGrads calls f with the accumulators of names (GradName),
// the deferred work of the step done, in names' order; f may read and
// change them and must not keep them after it returns. The session's
// other calls wait meanwhile. The in-process CPU session is one.
type GradAccessor interface {
	AccessGrads(ctx context.Context, names []string, f func(grads []*tensor.Dense) error) error
}

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

// ringPart is one part's ring: its members, one per replica.
type ringPart struct {
	members []RingSession
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
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	errs := make([]error, r)
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func(i int, m RingSession) {
			defer wg.Done()
			spec := RingSpec{Rank: i, Weights: weights, Names: names, Key: key, Next: members[(i+1)%r].RingEndpoint()}
			if err := m.JoinRing(ctx, spec); err != nil {
				errs[i] = fmt.Errorf("part %d, replica %d: ring: %w", part, i, err)
			}
		}(i, m)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &ringPart{members: members}, nil
}

// reduceRing sums part j's gradients in its ring: every member is asked
// for the round as soon as its replica's backward has ended (ready), and
// the call returns when every member holds the sum.
func (rs *Replicas) reduceRing(ctx context.Context, part int, ready []chan struct{}) error {
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
			select {
			case <-ready[i]:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			if stats[i], errs[i] = m.AllReduce(ctx, round); errs[i] != nil {
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
			return fmt.Errorf("part %d, replica %d: all-reduce: %w", part, i, err)
		}
	}
	return errors.Join(errs...)
}

package guard

import (
	"context"
	"fmt"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// runFresh rebuilds the part on m and runs e there: an arbiter, a checker.
func (s *session) runFresh(ctx context.Context, m *member, e *entry) (result, error) {
	sess, err := s.rebuild(ctx, m)
	if err != nil {
		return result{}, err
	}
	out, err := s.invoke(ctx, sess, e)
	if err != nil {
		s.closeLater(sess)
		return result{}, err
	}
	return result{m: m, s: sess, out: out}, nil
}

// check re-runs e, which the only replica answered, on a checker and
// compares. When no checker can be had the answer goes unchecked, and an
// EventCheck with the error says so.
func (s *session) check(ctx context.Context, e *entry, res []result) (map[string]*tensor.Dense, error) {
	m, err := s.g.take(ctx, s.busy(), true)
	if err != nil {
		s.event(Event{Kind: EventCheck, Err: err})
		return res[0].out, nil
	}
	r, err := s.runFresh(ctx, m, e)
	if err != nil {
		s.event(Event{Kind: EventCheck, Provider: m.name, Err: err})
		s.g.give(m)
		return res[0].out, nil
	}
	s.event(Event{Kind: EventCheck, Provider: m.name})
	return s.vote(ctx, e, append(res, r))
}

func (s *session) mismatch(e *entry, m *member, d *diff) *MismatchError {
	mb := -1
	if e.kind == callForward || e.kind == callBackward {
		mb = e.mb
	}
	me := &MismatchError{Part: s.spec.Part, Call: e.kind.String(), MicroBatch: mb, Provider: m.name}
	if d != nil {
		me.Key, me.Index, me.Got, me.Want, me.Reason = d.key, d.index, d.got, d.want, d.reason
	}
	return me
}

func (s *session) compare(got, want map[string]*tensor.Dense) *diff {
	return compareMaps(got, want, s.g.cfg.tol64, s.g.cfg.tol32)
}

// groups clusters the answers that agree with each other.
func (s *session) groups(res []result) [][]int {
	var gs [][]int
	for j, r := range res {
		placed := false
		for k, g := range gs {
			if s.compare(r.out, res[g[0]].out) == nil {
				gs[k] = append(g, j)
				placed = true
				break
			}
		}
		if !placed {
			gs = append(gs, []int{j})
		}
	}
	return gs
}

func (s *session) replicaIndex(sess exec.Session) int {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for i, r := range s.reps {
		if r != nil && r.s == sess {
			return i
		}
	}
	return -1
}

// vote finds the answer a strict majority of res agrees on, calling in
// arbiters (rebuilt from the snapshot and the log) while there is none.
// Executors outside the majority are excluded; a replica among them is
// replaced by an arbiter that agreed, or by a spare rebuilt for it.
func (s *session) vote(ctx context.Context, e *entry, res []result) (map[string]*tensor.Dense, error) {
	arbiters := 0
	var win []int
	for {
		gs := s.groups(res)
		for _, g := range gs {
			if 2*len(g) > len(res) {
				win = g
			}
		}
		if win == nil {
			// The requester trusts its own machine: a tie it is part of
			// goes its way.
			for _, g := range gs {
				for _, j := range g {
					if s.g.isLocal(res[j].m) {
						win = g
					}
				}
			}
		}
		if win != nil {
			break
		}
		first := s.mismatch(e, res[gs[1][0]].m, s.compare(res[gs[1][0]].out, res[gs[0][0]].out))
		if arbiters > s.g.cfg.maxRepl {
			s.dropExtras(res)
			return nil, first
		}
		arbiters++
		m, err := s.g.take(ctx, s.busy(res...), true)
		if err != nil {
			s.dropExtras(res)
			return nil, fmt.Errorf("%w: no arbiter: %w", first, err)
		}
		r, err := s.runFresh(ctx, m, e)
		if err != nil {
			if !isFault(ctx, err) {
				s.dropExtras(res)
				return nil, err
			}
			s.event(Event{Kind: EventFault, Provider: m.name, Err: err})
			s.g.give(m)
			continue
		}
		s.event(Event{Kind: EventCheck, Provider: m.name})
		res = append(res, r)
	}
	winner := res[win[0]]
	inWin := make(map[int]bool, len(win))
	var adopt []result // agreeing executors that are not replicas yet
	for _, j := range win {
		inWin[j] = true
		if s.replicaIndex(res[j].s) < 0 {
			adopt = append(adopt, res[j])
		}
	}
	var failed error
	for j, r := range res {
		if inWin[j] {
			continue
		}
		merr := s.mismatch(e, r.m, s.compare(r.out, winner.out))
		s.g.exclude(r.m)
		s.event(Event{Kind: EventExcluded, Provider: r.m.name, Err: merr})
		idx := s.replicaIndex(r.s)
		s.closeLater(r.s)
		if idx < 0 {
			continue
		}
		if len(adopt) > 0 {
			s.setRep(idx, &replica{m: adopt[0].m, s: adopt[0].s})
			s.event(Event{Kind: EventReplaced, Provider: r.m.name, Replacement: adopt[0].m.name})
			adopt = adopt[1:]
			continue
		}
		if err := s.replaceLiar(ctx, idx, e, winner.out, merr); err != nil {
			failed = err
		}
	}
	s.dropExtras(adopt)
	s.compact()
	if failed != nil && len(s.reps) == 0 {
		return nil, failed
	}
	return winner.out, nil
}

// replaceLiar rebuilds replica idx on a spare, runs e there and checks the
// answer against want; a spare that disagrees too is excluded. When no
// spare is left the part goes on with one replica fewer.
func (s *session) replaceLiar(ctx context.Context, idx int, e *entry, want map[string]*tensor.Dense, why error) error {
	for range s.g.cfg.maxRepl + 1 {
		out, err := s.place(ctx, idx, nil, e, why)
		if err != nil {
			s.setRep(idx, nil)
			s.event(Event{Kind: EventFault, Err: fmt.Errorf("part goes on with fewer replicas: %w", err)})
			return err
		}
		d := s.compare(out, want)
		if d == nil {
			return nil
		}
		r := s.rep(idx)
		why = s.mismatch(e, r.m, d)
		s.g.exclude(r.m)
		s.event(Event{Kind: EventExcluded, Provider: r.m.name, Err: why})
		s.closeLater(r.s)
	}
	s.setRep(idx, nil)
	return why
}

// dropExtras closes the sessions of results that are not replicas and
// hands their executors back.
func (s *session) dropExtras(res []result) {
	for _, r := range res {
		if r.s == nil || s.replicaIndex(r.s) >= 0 {
			continue
		}
		s.closeLater(r.s)
		s.g.give(r.m)
	}
}

func (s *session) compact() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	out := s.reps[:0]
	for _, r := range s.reps {
		if r != nil {
			out = append(out, r)
		}
	}
	s.reps = out
}

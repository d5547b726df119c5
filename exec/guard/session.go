package guard

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

type callKind uint8

const (
	callOpen callKind = iota
	callForward
	callBackward
	callStep
	callPut
	callGet
)

var callNames = [...]string{"open", "forward", "backward", "step", "put", "get"}

func (k callKind) String() string { return callNames[k] }

// entry is one call: those that change a part's state are kept in the
// log until the next snapshot.
type entry struct {
	kind  callKind
	mb    int
	in    map[int64]*tensor.Dense // Forward feeds, Backward gradients: copies
	name  string                  // Put
	t     *tensor.Dense           // Put: a copy
	names []string                // Get
}

type replica struct {
	m *member
	s exec.Session
}

// result is what one executor answered to one call.
type result struct {
	m   *member
	s   exec.Session
	out map[string]*tensor.Dense
	err error
}

// session is a guarded part: r replicas, the last snapshot, the log of
// calls since, and the resident tensors Put outside parameters.
type session struct {
	g         *Guard
	spec      exec.SessionSpec
	snapNames []string

	mu        sync.Mutex // one call at a time, so the log is in call order
	rmu       sync.Mutex // guards reps while replicas are replaced concurrently
	reps      []*replica
	residents []entry // Puts of names outside the snapshot, latest per name
	snap      map[string]*tensor.Dense
	log       []entry
	steps     int
	sinceSnap int
	closed    bool
	bg        sync.WaitGroup // sessions being closed in the background
	spot      *rand.Rand     // spot-check draws, under mu
}

func open(ctx context.Context, g *Guard, spec exec.SessionSpec, given []*member) (exec.Session, error) {
	s := &session{g: g, spec: spec, spot: g.spotSource(spec.Part)}
	for _, id := range spec.Graph.Learnables() {
		s.snapNames = append(s.snapNames, exec.ParamName(id))
	}
	solver, err := exec.NewSolver(spec.Solver, 0)
	if err != nil {
		return nil, &exec.SpecError{Part: spec.Part, Node: -1, Reason: err.Error()}
	}
	for _, id := range spec.Graph.Learnables() {
		for _, slot := range solver.Slots() {
			s.snapNames = append(s.snapNames, exec.StateName(id, slot))
		}
	}
	if len(spec.Graph.Learnables()) > 0 {
		s.snapNames = append(s.snapNames, exec.SolverStepName)
	}
	r := g.cfg.redundancy
	s.reps = make([]*replica, r)
	errs := make([]error, r)
	var wg sync.WaitGroup
	for i := range r {
		var m *member
		if i < len(given) {
			m = given[i]
		}
		wg.Add(1)
		go func(i int, m *member) {
			defer wg.Done()
			_, errs[i] = s.place(ctx, i, m, &entry{kind: callOpen}, nil)
		}(i, m)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *session) event(ev Event) {
	if f := s.g.cfg.events; f != nil {
		ev.Part, ev.Step = s.spec.Part, s.steps
		f(ev)
	}
}

// busy returns the members this part uses now.
func (s *session) busy(extra ...result) map[*member]bool {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	b := make(map[*member]bool, len(s.reps)+len(extra))
	for _, r := range s.reps {
		if r != nil {
			b[r.m] = true
		}
	}
	for _, r := range extra {
		b[r.m] = true
	}
	return b
}

func (s *session) setRep(i int, r *replica) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.reps[i] = r
}

func (s *session) rep(i int) *replica {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.reps[i]
}

// isFault says whether err is a failure of the executor (it died, hung,
// lost the session or the connection) rather than of the call. The
// caller's context is still live here, so a deadline or a cancellation
// came from the executor's side: the call timeout, or a connection that
// was closed under the call.
func isFault(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	return errors.Is(err, exec.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, exec.ErrClosed)
}

// callCtx bounds one call to an executor.
func (s *session) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d := s.g.cfg.callTimeout; d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

func key(id int64) string { return strconv.FormatInt(id, 10) }

// invoke runs e on sess.
func (s *session) invoke(ctx context.Context, sess exec.Session, e *entry) (map[string]*tensor.Dense, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	var ids map[int64]*tensor.Dense
	var err error
	switch e.kind {
	case callForward:
		ids, err = sess.Forward(ctx, e.mb, e.in)
	case callBackward:
		ids, err = sess.Backward(ctx, e.mb, e.in)
	case callStep:
		err = sess.Step(ctx)
	case callPut:
		err = sess.Put(ctx, e.name, e.t)
	case callGet:
		return sess.Get(ctx, e.names...)
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]*tensor.Dense, len(ids))
	for id, t := range ids {
		out[key(id)] = t
	}
	return out, nil
}

// rebuild opens the part on m and brings it to the state of the other
// replicas: the resident tensors, the last snapshot, then the log replayed
// in order. Replayed calls get the same inputs as the first time, so the
// state is the same to the bit on a deterministic executor.
func (s *session) rebuild(ctx context.Context, m *member) (exec.Session, error) {
	octx, cancel := s.callCtx(ctx)
	sess, err := m.ex.Open(octx, s.spec)
	cancel()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (exec.Session, error) {
		s.closeLater(sess)
		return nil, err
	}
	for i := range s.residents {
		if _, err := s.invoke(ctx, sess, &s.residents[i]); err != nil {
			return fail(err)
		}
	}
	if s.snap != nil {
		for _, name := range s.snapNames {
			if _, err := s.invoke(ctx, sess, &entry{kind: callPut, name: name, t: s.snap[name]}); err != nil {
				return fail(err)
			}
		}
	}
	for i := range s.log {
		if _, err := s.invoke(ctx, sess, &s.log[i]); err != nil {
			return fail(err)
		}
	}
	return sess, nil
}

func (s *session) closeLater(sess exec.Session) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		sess.Close()
	}()
}

// place puts a session for replica i on an executor, starting with m (nil:
// take one from the guard), rebuilding it and running e there; it tries
// other executors while the failures are faults, at most
// WithMaxReplacements of them.
func (s *session) place(ctx context.Context, i int, m *member, e *entry, last error) (map[string]*tensor.Dense, error) {
	attempts := 0
	old := s.rep(i)
	leaving := ""
	if old != nil {
		leaving = old.m.name
	} else if m != nil {
		leaving = m.name // the executor given for the replica, at Open
	}
	for {
		if m == nil {
			if attempts >= s.g.cfg.maxRepl && last != nil {
				return nil, &FailedError{Part: s.spec.Part, Call: e.kind.String(), Attempts: attempts, Last: last}
			}
			if err := s.pause(ctx, attempts); err != nil {
				return nil, err
			}
			// The executor this replica leaves may come back: it is
			// busy for the other replicas only.
			busy := s.busy()
			if old != nil {
				delete(busy, old.m)
			}
			var err error
			m, err = s.g.take(ctx, busy, false)
			if err != nil {
				if last != nil {
					err = fmt.Errorf("%w (last failure: %w)", err, last)
				}
				return nil, &FailedError{Part: s.spec.Part, Call: e.kind.String(), Attempts: attempts, Last: err}
			}
			attempts++
		}
		sess, err := s.rebuild(ctx, m)
		var out map[string]*tensor.Dense
		if err == nil && e.kind != callOpen {
			out, err = s.invoke(ctx, sess, e)
			if err != nil && !isFault(ctx, err) {
				s.closeLater(sess)
				return nil, err
			}
		}
		if err == nil {
			s.setRep(i, &replica{m: m, s: sess})
			if old != nil || (leaving != "" && leaving != m.name) {
				s.event(Event{Kind: EventReplaced, Provider: leaving, Replacement: m.name})
			}
			return out, nil
		}
		if sess != nil {
			s.closeLater(sess)
		}
		if !isFault(ctx, err) {
			return nil, err
		}
		s.event(Event{Kind: EventFault, Provider: m.name, Err: err})
		s.g.give(m)
		m, last = nil, err
	}
}

// pause waits before replacement attempt n+1: nothing before the first
// two, then the backoff, doubled each time up to 5 s.
func (s *session) pause(ctx context.Context, n int) error {
	d := s.g.cfg.backoff
	if n < 1 || d == 0 {
		return nil
	}
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	d = min(d, 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// onReplica runs e on replica i; when the executor fails, the part is
// rebuilt elsewhere and e runs there. A call whose outcome is unknown is
// never simply retried on the same session.
func (s *session) onReplica(ctx context.Context, i int, e *entry) result {
	r := s.rep(i)
	out, err := s.invoke(ctx, r.s, e)
	if !isFault(ctx, err) {
		return result{m: r.m, s: r.s, out: out, err: err}
	}
	s.event(Event{Kind: EventFault, Provider: r.m.name, Err: err})
	s.closeLater(r.s)
	s.g.give(r.m)
	out, err = s.place(ctx, i, nil, e, err)
	if err != nil {
		return result{err: err}
	}
	r = s.rep(i)
	return result{m: r.m, s: r.s, out: out}
}

// run carries out e on every replica, compares their answers when there
// are several (or a spot check draws this call), and returns the agreed
// answer.
func (s *session) run(ctx context.Context, e *entry) (map[string]*tensor.Dense, error) {
	n := len(s.reps)
	res := make([]result, n)
	if n == 1 {
		res[0] = s.onReplica(ctx, 0, e)
	} else {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				res[i] = s.onReplica(ctx, i, e)
			}(i)
		}
		wg.Wait()
	}
	for _, r := range res {
		if r.err != nil {
			return nil, r.err
		}
	}
	if e.kind == callStep || e.kind == callPut {
		return nil, nil
	}
	if n == 1 {
		if (e.kind == callForward || e.kind == callBackward) && s.draw() {
			return s.check(ctx, e, res)
		}
		return res[0].out, nil
	}
	return s.vote(ctx, e, res)
}

// draw says whether to spot-check a call.
func (s *session) draw() bool {
	return s.g.cfg.spotP > 0 && s.spot.Float64() < s.g.cfg.spotP
}

func (s *session) checkOpen() error {
	if s.closed {
		return fmt.Errorf("%w: part %d", exec.ErrClosed, s.spec.Part)
	}
	return nil
}

func cloneDense(t *tensor.Dense) *tensor.Dense {
	if t == nil {
		return nil
	}
	return materialize(t).Clone().(*tensor.Dense)
}

func cloneMap(m map[int64]*tensor.Dense) map[int64]*tensor.Dense {
	out := make(map[int64]*tensor.Dense, len(m))
	for id, t := range m {
		out[id] = cloneDense(t)
	}
	return out
}

func toIDs(m map[string]*tensor.Dense) map[int64]*tensor.Dense {
	out := make(map[int64]*tensor.Dense, len(m))
	for k, t := range m {
		id, _ := strconv.ParseInt(k, 10, 64)
		out[id] = t
	}
	return out
}

// Forward implements exec.Session.
func (s *session) Forward(ctx context.Context, mb int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	return s.pass(ctx, callForward, mb, feeds)
}

// Backward implements exec.Session.
func (s *session) Backward(ctx context.Context, mb int, gradOutputs map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	return s.pass(ctx, callBackward, mb, gradOutputs)
}

func (s *session) pass(ctx context.Context, k callKind, mb int, in map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	for id, t := range in {
		if t == nil {
			return nil, &exec.FeedError{Part: s.spec.Part, Node: id, MicroBatch: mb, Reason: "nil tensor"}
		}
	}
	e := entry{kind: k, mb: mb, in: cloneMap(in)}
	out, err := s.run(ctx, &e)
	if err != nil {
		return nil, err
	}
	s.log = append(s.log, e)
	return toIDs(out), nil
}

// Step implements exec.Session. Every WithSnapshotEvery Steps it also
// takes a snapshot.
func (s *session) Step(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	e := entry{kind: callStep}
	if _, err := s.run(ctx, &e); err != nil {
		return err
	}
	s.log = append(s.log, e)
	s.steps++
	s.sinceSnap++
	if s.sinceSnap >= s.g.cfg.snapEvery {
		return s.snapshot(ctx)
	}
	return nil
}

// snapshot copies the part's parameters, optimiser state and update count
// to the requester (compared across replicas) and empties the log.
func (s *session) snapshot(ctx context.Context) error {
	if len(s.snapNames) > 0 {
		out, err := s.run(ctx, &entry{kind: callGet, names: s.snapNames})
		if err != nil {
			return err
		}
		s.snap = out
	}
	s.log = nil
	s.sinceSnap = 0
	s.event(Event{Kind: EventSnapshot})
	return nil
}

// inSnapshot says whether a resident name is covered by snapshots: a
// parameter, its optimiser state, the update count, or an accumulated
// gradient (which the Step after it consumes).
func inSnapshot(name string) bool {
	_, grad := exec.ParseGradName(name)
	return strings.HasPrefix(name, "param/") || name == exec.SolverStepName || grad
}

// Put implements exec.Session. Parameters and optimiser state Put between
// two snapshots are replayed like calls; other tensors (data shards) are
// kept on the requester for the life of the session, since a snapshot
// does not cover them.
func (s *session) Put(ctx context.Context, name string, t *tensor.Dense) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if t == nil {
		return &exec.FeedError{Part: s.spec.Part, Node: -1, Name: name, MicroBatch: -1, Reason: "nil tensor"}
	}
	e := entry{kind: callPut, name: name, t: cloneDense(t)}
	if _, err := s.run(ctx, &e); err != nil {
		return err
	}
	if inSnapshot(name) {
		s.log = append(s.log, e)
		return nil
	}
	for i := range s.residents {
		if s.residents[i].name == name {
			s.residents = append(s.residents[:i:i], s.residents[i+1:]...)
			break
		}
	}
	s.residents = append(s.residents, e)
	return nil
}

// Get implements exec.Session. With several replicas the values are
// compared like Forward's outputs.
func (s *session) Get(ctx context.Context, names ...string) (map[string]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	return s.run(ctx, &entry{kind: callGet, names: names})
}

// Close implements exec.Session: it closes the part on every replica.
// Executors that cannot be reached any more are not an error.
func (s *session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, r := range s.reps {
		if r == nil {
			continue
		}
		if err := r.s.Close(); err != nil && !isFault(context.Background(), err) {
			errs = append(errs, err)
		}
	}
	s.bg.Wait()
	s.snap, s.log, s.residents = nil, nil, nil
	return errors.Join(errs...)
}

var _ exec.Session = (*session)(nil)

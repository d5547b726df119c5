// Package guardtest holds executors that fail on purpose, to test the
// guard (and anything else that must survive executors that die, hang or
// lie): each wraps a working executor and misbehaves after a given number
// of calls.
package guardtest

import (
	"context"
	"fmt"
	"math/rand"
	"sync"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// Lie says how a lying executor alters the results of Forward (outputs
// and loss) and Backward (input gradients).
type Lie uint8

// The lies.
const (
	// Noise adds Gaussian noise of standard deviation 1e-3 to every
	// element.
	Noise Lie = iota + 1
	// FlipSign negates every element.
	FlipSign
	// Stale returns the previous call's results (of the same kind and
	// micro-batch) instead of this call's.
	Stale
	// BadStep answers Forward and Backward honestly but adds noise to
	// the parameters after every Step: a wrong update that only later
	// results show.
	BadStep
)

var lieNames = [...]string{"", "noise", "flip-sign", "stale", "bad-step"}

func (l Lie) String() string { return lieNames[l] }

// counter counts the Forward and Backward calls of an executor's
// sessions; misbehaviour starts after the first n.
type counter struct {
	mu    sync.Mutex
	n     int
	calls int
}

// next counts a call and says whether it is past the first n.
func (c *counter) next() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.calls > c.n
}

func (c *counter) past() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls > c.n
}

// Liar returns an executor that runs e honestly for the first after
// Forward and Backward calls (counted over all its sessions) and then
// alters every result as lie says. name is its String.
func Liar(name string, e exec.Executor, lie Lie, after int, seed int64) exec.Executor {
	return &liar{Executor: e, name: name, lie: lie, c: &counter{n: after}, rng: rand.New(rand.NewSource(seed))}
}

type liar struct {
	exec.Executor
	name string
	lie  Lie
	c    *counter
	mu   sync.Mutex
	rng  *rand.Rand
}

func (l *liar) String() string { return l.name }

func (l *liar) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := l.Executor.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &liarSession{Session: s, l: l, spec: spec, prev: make(map[string]map[int64]*tensor.Dense)}, nil
}

type liarSession struct {
	exec.Session
	l    *liar
	spec exec.SessionSpec
	prev map[string]map[int64]*tensor.Dense
}

func (s *liarSession) Step(ctx context.Context) error {
	if err := s.Session.Step(ctx); err != nil || s.l.lie != BadStep || !s.l.c.past() {
		return err
	}
	var names []string
	for _, id := range s.spec.Graph.Learnables() {
		names = append(names, exec.ParamName(id))
	}
	ps, err := s.Session.Get(ctx, names...)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := s.Session.Put(ctx, name, s.noise(map[int64]*tensor.Dense{0: ps[name]})[0]); err != nil {
			return err
		}
	}
	return nil
}

func (s *liarSession) alter(what string, mb int, out map[int64]*tensor.Dense, err error) (map[int64]*tensor.Dense, error) {
	if err != nil {
		return out, err
	}
	k := fmt.Sprint(what, mb)
	last := s.prev[k]
	s.prev[k] = out
	if !s.l.c.next() {
		return out, nil
	}
	switch s.l.lie {
	case Stale:
		if last != nil {
			return last, nil
		}
		return s.flip(out), nil
	case FlipSign:
		return s.flip(out), nil
	case BadStep:
		return out, nil
	default:
		return s.noise(out), nil
	}
}

func (s *liarSession) noise(out map[int64]*tensor.Dense) map[int64]*tensor.Dense {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	alt := make(map[int64]*tensor.Dense, len(out))
	for id, t := range out {
		c := t.Clone().(*tensor.Dense)
		switch c.Dtype() {
		case tensor.Float64:
			d := c.Float64s()
			for i := range d {
				d[i] += 1e-3 * s.l.rng.NormFloat64()
			}
		case tensor.Float32:
			d := c.Float32s()
			for i := range d {
				d[i] += float32(1e-3 * s.l.rng.NormFloat64())
			}
		}
		alt[id] = c
	}
	return alt
}

func (s *liarSession) flip(out map[int64]*tensor.Dense) map[int64]*tensor.Dense {
	alt := make(map[int64]*tensor.Dense, len(out))
	for id, t := range out {
		c := t.Clone().(*tensor.Dense)
		switch c.Dtype() {
		case tensor.Float64:
			d := c.Float64s()
			for i := range d {
				d[i] = -d[i]
			}
		case tensor.Float32:
			d := c.Float32s()
			for i := range d {
				d[i] = -d[i]
			}
		}
		alt[id] = c
	}
	return alt
}

func (s *liarSession) Forward(ctx context.Context, mb int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	out, err := s.Session.Forward(ctx, mb, feeds)
	return s.alter("forward", mb, out, err)
}

func (s *liarSession) Backward(ctx context.Context, mb int, grads map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	out, err := s.Session.Backward(ctx, mb, grads)
	return s.alter("backward", mb, out, err)
}

// Dying returns an executor that works for the first after Forward,
// Backward and Step calls (over all its sessions) and then fails every call,
// Open included, with an error matching exec.ErrUnavailable, as a
// provider whose process died.
func Dying(name string, e exec.Executor, after int) exec.Executor {
	return &broken{Executor: e, name: name, c: &counter{n: after}}
}

// Hanging returns an executor that works for the first after Forward,
// Backward and Step calls and then blocks every call until its context ends, as a
// provider that stopped answering without closing its connection.
func Hanging(name string, e exec.Executor, after int) exec.Executor {
	return &broken{Executor: e, name: name, c: &counter{n: after}, hang: true}
}

type broken struct {
	exec.Executor
	name string
	c    *counter
	hang bool
}

func (b *broken) String() string { return b.name }

func (b *broken) fail(ctx context.Context) error {
	if b.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return fmt.Errorf("guardtest: %s: %w", b.name, exec.ErrUnavailable)
}

func (b *broken) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	if b.c.past() {
		return nil, b.fail(ctx)
	}
	s, err := b.Executor.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &brokenSession{Session: s, b: b}, nil
}

type brokenSession struct {
	exec.Session
	b *broken
}

func (s *brokenSession) Forward(ctx context.Context, mb int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	if s.b.c.next() {
		return nil, s.b.fail(ctx)
	}
	return s.Session.Forward(ctx, mb, feeds)
}

func (s *brokenSession) Backward(ctx context.Context, mb int, grads map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	if s.b.c.next() {
		return nil, s.b.fail(ctx)
	}
	return s.Session.Backward(ctx, mb, grads)
}

func (s *brokenSession) Step(ctx context.Context) error {
	if s.b.c.next() {
		return s.b.fail(ctx)
	}
	return s.Session.Step(ctx)
}

func (s *brokenSession) Put(ctx context.Context, name string, t *tensor.Dense) error {
	if s.b.c.past() {
		return s.b.fail(ctx)
	}
	return s.Session.Put(ctx, name, t)
}

func (s *brokenSession) Get(ctx context.Context, names ...string) (map[string]*tensor.Dense, error) {
	if s.b.c.past() {
		return nil, s.b.fail(ctx)
	}
	return s.Session.Get(ctx, names...)
}

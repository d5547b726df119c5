package guard

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"github.com/rookery-ml/rookery/exec"
)

// DefaultSnapshotEvery is the number of Steps between two snapshots of a
// part when WithSnapshotEvery is not given. doc.go says how it was chosen.
const DefaultSnapshotEvery = 10

// DefaultCallTimeout is the bound WithCallTimeout sets when not given: a
// backstop a little past the provider's own bound on a call
// (transport.DefaultCallTimeout, 10 minutes), so that no call waits for
// ever on a provider that went silent. Set a tighter one to notice a
// stuck provider sooner.
const DefaultCallTimeout = 11 * time.Minute

// DefaultMaxReplacements bounds the replacements tried for one failed call
// when WithMaxReplacements is not given.
const DefaultMaxReplacements = 3

// Option configures New.
type Option func(*config)

type config struct {
	spares       []exec.Executor
	spareFunc    func(ctx context.Context) (exec.Executor, error)
	snapEvery    int
	callTimeout  time.Duration
	maxRepl      int
	backoff      time.Duration
	redundancy   int
	spotP        float64
	spotSeed     int64
	local        bool
	events       func(Event)
	tol64, tol32 Tolerance
}

// WithSpares gives executors that replace failed or excluded ones, and
// serve as arbiters and spot checkers. They are used in order.
func WithSpares(execs ...exec.Executor) Option {
	return func(c *config) { c.spares = append(c.spares, execs...) }
}

// WithSpareFunc supplies a fresh executor whenever the spares given with
// WithSpares are used up (for instance one leased from a seed node). It
// returns an error when it has none.
func WithSpareFunc(f func(ctx context.Context) (exec.Executor, error)) Option {
	return func(c *config) { c.spareFunc = f }
}

// WithSnapshotEvery snapshots each part's parameters and optimiser state
// every n Steps (default DefaultSnapshotEvery). A replacement replays at
// most n Steps' worth of calls.
func WithSnapshotEvery(n int) Option { return func(c *config) { c.snapEvery = n } }

// WithCallTimeout bounds every call to an executor (default
// DefaultCallTimeout; 0: no bound beyond the caller's context). A call
// that runs past it counts as a failure of the executor: this is how a
// stuck provider, or one whose connection went silent, is detected.
func WithCallTimeout(d time.Duration) Option { return func(c *config) { c.callTimeout = d } }

// WithMaxReplacements bounds the executors tried in a row for one call of
// a part before the call fails with *FailedError (default
// DefaultMaxReplacements).
func WithMaxReplacements(n int) Option { return func(c *config) { c.maxRepl = n } }

// WithBackoff sets the pause before the second replacement tried for one
// call, doubled before each further one up to 5 s (default
// DefaultBackoff; 0: none). It gives a connection that was cut time to
// come back when the only executor left is the one that failed.
func WithBackoff(d time.Duration) Option { return func(c *config) { c.backoff = d } }

// DefaultBackoff is the pause WithBackoff sets when not given.
const DefaultBackoff = 100 * time.Millisecond

// WithRedundancy runs every part on r executors and compares their
// results (default 1: no redundancy).
func WithRedundancy(r int) Option { return func(c *config) { c.redundancy = r } }

// WithSpotCheck re-runs, with probability p, a Forward or Backward of a
// part on a checker rebuilt from the last snapshot, and compares. seed
// seeds the draws: each part draws from its own source, seeded with seed
// and the part's index, so a run checks the same calls every time.
func WithSpotCheck(p float64, seed int64) Option {
	return func(c *config) { c.spotP, c.spotSeed = p, seed }
}

// WithLocal lets the guard run an arbiter, a checker or, when nothing
// else is left, a replacement on this machine (exec.NewCPU) once the
// spares are used up.
func WithLocal() Option { return func(c *config) { c.local = true } }

// WithEvents calls f for every replacement, exclusion, check and
// snapshot. f runs on the goroutine of the call that caused the event,
// with the part's lock held, and may run for several parts (and several
// replicas of one part) at once: it must be safe for concurrent use and
// must not block or call into the session.
func WithEvents(f func(Event)) Option { return func(c *config) { c.events = f } }

// WithTolerance sets how far float64 and float32 results may differ and
// still agree (defaults DefaultFloat64 and DefaultFloat32).
func WithTolerance(float64Tol, float32Tol Tolerance) Option {
	return func(c *config) { c.tol64, c.tol32 = float64Tol, float32Tol }
}

// EventKind says what happened.
type EventKind uint8

// The events a guard reports.
const (
	// EventSnapshot: a part's state was copied to the requester.
	EventSnapshot EventKind = iota + 1
	// EventFault: a call failed on an executor (Err says how).
	EventFault
	// EventReplaced: a part was rebuilt on Replacement in place of
	// Provider.
	EventReplaced
	// EventExcluded: Provider disagreed with the agreed result (Err is a
	// *MismatchError) and is never used again.
	EventExcluded
	// EventCheck: a spot check or an arbiter re-ran a call on Provider.
	EventCheck
)

var eventNames = [...]string{"", "snapshot", "fault", "replaced", "excluded", "check"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is something the guard did for a part.
type Event struct {
	Kind        EventKind
	Part        int
	Provider    string // the executor the event is about
	Replacement string // EventReplaced: the executor that took over
	Step        int    // the part's Steps so far
	Err         error
}

func (e Event) String() string {
	s := fmt.Sprintf("part %d step %d: %v %s", e.Part, e.Step, e.Kind, e.Provider)
	if e.Replacement != "" {
		s += " -> " + e.Replacement
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Guard keeps the parts of a model running on executors that may die or
// lie. It holds the pool of spares that all its parts share.
type Guard struct {
	cfg config

	mu       sync.Mutex
	pool     []*member // free executors, taken from the front
	excluded map[*member]bool
	nextAnon int
	local    *member
}

// member is one executor the guard knows, with the name events use.
type member struct {
	ex   exec.Executor
	name string
}

// Wrap returns a new guard made with opts and, for each executor, the
// executor that runs parts on it under that guard (Guard.Executor).
func Wrap(executors []exec.Executor, opts ...Option) ([]exec.Executor, *Guard, error) {
	g, err := New(opts...)
	if err != nil {
		return nil, nil, err
	}
	out := make([]exec.Executor, len(executors))
	for i, e := range executors {
		out[i] = g.Executor(e)
	}
	return out, g, nil
}

// New returns a guard.
func New(opts ...Option) (*Guard, error) {
	cfg := config{snapEvery: DefaultSnapshotEvery, maxRepl: DefaultMaxReplacements, redundancy: 1, backoff: DefaultBackoff, callTimeout: DefaultCallTimeout,
		tol64: DefaultFloat64, tol32: DefaultFloat32}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.snapEvery < 1:
		return nil, fmt.Errorf("%w: snapshot every %d steps", ErrConfig, cfg.snapEvery)
	case cfg.maxRepl < 0:
		return nil, fmt.Errorf("%w: %d replacements", ErrConfig, cfg.maxRepl)
	case cfg.redundancy < 1:
		return nil, fmt.Errorf("%w: redundancy %d", ErrConfig, cfg.redundancy)
	case cfg.spotP < 0 || cfg.spotP > 1:
		return nil, fmt.Errorf("%w: spot-check probability %g", ErrConfig, cfg.spotP)
	case cfg.callTimeout < 0:
		return nil, fmt.Errorf("%w: call timeout %v", ErrConfig, cfg.callTimeout)
	case cfg.backoff < 0:
		return nil, fmt.Errorf("%w: backoff %v", ErrConfig, cfg.backoff)
	}
	g := &Guard{cfg: cfg, excluded: make(map[*member]bool)}
	for _, e := range cfg.spares {
		g.pool = append(g.pool, g.newMember(e))
	}
	return g, nil
}

// Named gives an executor the name that events and errors use for it.
// Without it the guard uses the executor's String method, or its Addr
// method (a transport client's provider address), or a number.
func Named(name string, e exec.Executor) exec.Executor { return &named{Executor: e, name: name} }

type named struct {
	exec.Executor
	name string
}

func (n *named) String() string { return n.name }

func (g *Guard) newMember(e exec.Executor) *member {
	m := &member{ex: e}
	switch v := e.(type) {
	case fmt.Stringer:
		m.name = v.String()
	case interface{ Addr() string }:
		m.name = v.Addr()
	default:
		g.nextAnon++
		m.name = fmt.Sprintf("executor#%d", g.nextAnon)
	}
	return m
}

// Executor returns an executor whose sessions run each part on the given
// executors (the first r, for redundancy r) and, when fewer are given, on
// spares.
func (g *Guard) Executor(replicas ...exec.Executor) exec.Executor {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := make([]*member, len(replicas))
	for i, e := range replicas {
		ms[i] = g.newMember(e)
	}
	return &guardedExecutor{g: g, members: ms}
}

// Excluded names the executors excluded for lying, in no order.
func (g *Guard) Excluded() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for m := range g.excluded {
		out = append(out, m.name)
	}
	return out
}

// take returns a free executor that is not in busy, or an error matching
// ErrNoSpare.
func (g *Guard) take(ctx context.Context, busy map[*member]bool, allowLocal bool) (*member, error) {
	g.mu.Lock()
	for i, m := range g.pool {
		if busy[m] || g.excluded[m] {
			continue
		}
		g.pool = append(g.pool[:i:i], g.pool[i+1:]...)
		g.mu.Unlock()
		return m, nil
	}
	f := g.cfg.spareFunc
	g.mu.Unlock()
	if f != nil {
		e, err := f(ctx)
		if err == nil {
			g.mu.Lock()
			m := g.newMember(e)
			g.mu.Unlock()
			return m, nil
		}
		if !allowLocal || !g.cfg.local {
			return nil, fmt.Errorf("%w: %w", ErrNoSpare, err)
		}
	}
	if allowLocal && g.cfg.local {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.local == nil {
			g.local = &member{ex: exec.NewCPU(), name: "requester"}
		}
		if !busy[g.local] {
			return g.local, nil
		}
	}
	return nil, ErrNoSpare
}

// isLocal says whether m is this machine.
func (g *Guard) isLocal(m *member) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.local != nil && m == g.local
}

// give puts m back at the end of the pool: a spare that was not needed,
// or an executor whose call failed (it may answer again; the pool tries
// the others first).
func (g *Guard) give(m *member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.excluded[m] || m == g.local {
		return
	}
	for _, x := range g.pool {
		if x == m {
			return
		}
	}
	g.pool = append(g.pool, m)
}

// exclude marks m as a liar: it is never used again.
func (g *Guard) exclude(m *member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.excluded[m] = true
	for i, x := range g.pool {
		if x == m {
			g.pool = append(g.pool[:i:i], g.pool[i+1:]...)
			break
		}
	}
}

// spotSource returns part's source of spot-check draws.
func (g *Guard) spotSource(part int) *rand.Rand {
	return rand.New(rand.NewSource(g.cfg.spotSeed*1_000_003 + int64(part)))
}

type guardedExecutor struct {
	g       *Guard
	members []*member
}

// Open opens the part on every replica. An executor that fails to open it
// is replaced like one that fails later.
func (e *guardedExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return open(ctx, e.g, spec, e.members)
}

package native

import (
	"context"
	"errors"
	"log/slog"
	"runtime"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/plan"
)

// Option configures the native executor.
type Option func(*config)

type config struct {
	threads         int
	maxMicroBatches int
	fallback        exec.Executor
	noFallback      bool
	log             *slog.Logger
	report          func(Placement)
}

// WithThreads sets how many goroutines a session's kernels run on at
// once (default GOMAXPROCS). A provider that lends part of its cores
// sets it to those.
func WithThreads(n int) Option { return func(c *config) { c.threads = n } }

// WithMaxMicroBatches bounds the micro-batch count a spec may ask for
// (default exec.DefaultMicroBatches); Open refuses a larger one with an
// *exec.MicroBatchLimitError.
func WithMaxMicroBatches(n int) Option { return func(c *config) { c.maxMicroBatches = n } }

// WithFallback sets the executor that opens the parts plan.Lower cannot
// lower (default: the tape-machine executor, exec.NewCPU).
func WithFallback(e exec.Executor) Option { return func(c *config) { c.fallback = e } }

// WithoutFallback makes Open refuse a part it cannot lower, with a
// *plan.UnsupportedOpError (plan.ErrUnsupported), instead of opening it
// on the tape machine.
func WithoutFallback() Option { return func(c *config) { c.noFallback = true } }

// WithLogger sets where a part that falls back to the tape machine is
// logged, with the reason (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithReport calls f for every part the executor opens, saying which
// executor runs it and, for a fallback, why. Parts may open at the same
// time, so f may be called from several goroutines at once.
func WithReport(f func(Placement)) Option { return func(c *config) { c.report = f } }

// Placement says where a part runs.
type Placement struct {
	Part     int
	Executor string // "native" or "tape"
	Reason   error  // why the part is on the tape machine; nil on "native"
}

// Names of the executors in a Placement.
const (
	Native = "native"
	Tape   = "tape"
)

// New returns the native executor: it runs each part's plan (package
// exec/plan) in this process on Rookery's own kernels, and a part that
// plan.Lower cannot lower on the tape-machine executor, logging why.
func New(opts ...Option) exec.Executor {
	c := config{threads: runtime.GOMAXPROCS(0), maxMicroBatches: exec.DefaultMicroBatches}
	for _, o := range opts {
		o(&c)
	}
	if c.fallback == nil {
		c.fallback = exec.NewCPU(exec.WithMaxMicroBatches(c.maxMicroBatches))
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return &executor{cfg: c, plans: &plan.Executor{Dev: newDevice(c.threads), MaxMicroBatches: c.maxMicroBatches,
		Lower: []plan.LowerOption{plan.WithHostKernels()}}}
}

type executor struct {
	cfg   config
	plans *plan.Executor
}

// Open implements exec.Executor.
func (e *executor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := e.plans.Open(ctx, spec)
	if err == nil {
		if e.cfg.report != nil {
			e.cfg.report(Placement{Part: spec.Part, Executor: Native})
		}
		return s, nil
	}
	if !errors.Is(err, plan.ErrUnsupported) || e.cfg.noFallback {
		return nil, err
	}
	e.cfg.log.Info("part runs on the tape machine: the native executor cannot lower it", "part", spec.Part, "why", err.Error())
	if e.cfg.report != nil {
		e.cfg.report(Placement{Part: spec.Part, Executor: Tape, Reason: err})
	}
	return e.cfg.fallback.Open(ctx, spec)
}

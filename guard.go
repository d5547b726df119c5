package rookery

import (
	"fmt"
	"slices"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
)

// The options below protect a training run against providers that die,
// hang or lie (see package exec/guard). Any of them makes NewTrainer wrap
// every part's executor with one guard.Guard; without them the trainer
// runs the executors as given.

// WithRedundancy runs every part on r executors, the part's own and r−1
// spares, and compares their outputs and gradients; an executor that
// disagrees with the majority (or, with r = 2, with an arbiter) is named
// in an event, excluded and replaced.
func WithRedundancy(r int) Option {
	return WithGuardOptions(guard.WithRedundancy(r))
}

// WithSpares gives executors that take over a part whose executor fails
// or lies, and serve as arbiters and spot checkers.
// With NewLocalTrainer, a spare replaces a replica whose executor fails.
func WithSpares(execs ...exec.Executor) Option {
	return func(c *config) {
		c.guardOpts = append(c.guardOpts, guard.WithSpares(execs...))
		c.spares = append(c.spares, execs...)
		c.spareOpts++
	}
}

// WithSnapshotEvery copies each part's parameters and optimiser state to
// this process every n steps (default guard.DefaultSnapshotEvery).
func WithSnapshotEvery(n int) Option {
	return WithGuardOptions(guard.WithSnapshotEvery(n))
}

// WithSpotCheck re-runs, with probability p, a call of a part on a spare
// or, when none is left, on this machine, and compares. The draws are
// seeded, so a run checks the same calls every time.
func WithSpotCheck(p float64) Option {
	return WithGuardOptions(guard.WithSpotCheck(p, 1), guard.WithLocal())
}

// WithCallTimeout bounds every call to an executor; one that takes longer
// counts as failed and its part moves to a spare.
func WithCallTimeout(d time.Duration) Option {
	return WithGuardOptions(guard.WithCallTimeout(d))
}

// WithEvents calls f for every snapshot, failure, replacement, check and
// exclusion (see guard.WithEvents).
func WithEvents(f func(guard.Event)) Option {
	return func(c *config) {
		c.events = f
		WithGuardOptions(guard.WithEvents(f))(c)
	}
}

// WithGuardOptions passes options to guard.New.
func WithGuardOptions(opts ...guard.Option) Option {
	return func(c *config) { c.guardOpts = append(c.guardOpts, opts...) }
}

// Guard returns the guard that protects the trainer's parts, or nil when
// no protection was asked for.
func (t *Trainer) Guard() *guard.Guard { return t.guard }

// guarded returns the executors the parts run on: those configured, each
// wrapped by one guard when any option above asked for protection.
func (c *config) guarded() ([]exec.Executor, *guard.Guard, error) {
	if len(c.guardOpts) == 0 {
		return c.executors, nil, nil
	}
	opts := c.guardOpts
	if c.ledger != nil {
		// Last, so that it wins; it passes the events on to WithEvents'.
		opts = append(slices.Clone(opts), guard.WithEvents(c.ledger.guardFaults(append(slices.Clone(c.executors), c.spares...), c.events)))
	}
	execs, gd, err := guard.Wrap(c.executors, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return execs, gd, nil
}

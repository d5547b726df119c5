package rookery

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport"
)

// SeedTimeout bounds how long WithSeed waits for the seed node and the
// providers it names.
const SeedTimeout = 30 * time.Second

// WithSeed trains on n providers found through the seed node at addr,
// one part each, instead of on executors given with WithExecutors. The
// providers' measured speeds (Capabilities.Gflops) become the partition
// capacities, so a faster provider gets a larger part; when any provider
// reports no speed, all parts get equal shares.
//
// The seed node and the providers are contacted when NewTrainer applies
// the option, within SeedTimeout. If that fails, NewTrainer returns the
// error (matching transport.ErrNotEnough when the seed knows fewer than n
// matching providers, transport.ErrUnavailable when something cannot be
// reached). Each provider's connection is closed when the trainer closes
// the session it opened there.
//
// A seed node that signs leases hands one out with each provider; the
// trainer presents it on every call to that provider. opts apply to the
// seed node and to every provider: give transport.WithToken or TLS
// credentials there when they require them.
func WithSeed(addr string, n int, opts ...transport.DialOption) Option {
	return WithSeedNeed(addr, transport.Need{N: n}, opts...)
}

// WithSeedNeed is WithSeed with further needs of each provider (memory,
// GPU, speed).
func WithSeedNeed(addr string, need transport.Need, opts ...transport.DialOption) Option {
	return func(c *config) {
		execs, caps, err := leaseFromSeed(addr, need, opts)
		if err != nil {
			c.err = err
			return
		}
		c.executors = execs
		if caps != nil {
			c.splitOpts = append(c.splitOpts, partition.WithCapacities(caps))
		}
	}
}

func leaseFromSeed(addr string, need transport.Need, opts []transport.DialOption) ([]exec.Executor, []float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), SeedTimeout)
	defer cancel()
	entries, err := transport.FindProviders(ctx, addr, need, opts...)
	if err != nil {
		return nil, nil, err
	}
	execs := make([]exec.Executor, 0, len(entries))
	caps := make([]float64, 0, len(entries))
	for _, e := range entries {
		copts := opts
		if e.Lease != "" {
			copts = append(slices.Clone(opts), transport.WithLease(e.Lease))
		}
		c, err := transport.Connect(ctx, e.Address, copts...)
		if err != nil {
			for _, x := range execs {
				x.(*leased).c.Close()
			}
			return nil, nil, fmt.Errorf("rookery: provider %s from seed %s: %w", e.Address, addr, err)
		}
		execs = append(execs, &leased{c: c})
		caps = append(caps, c.Capabilities().GetGflops())
	}
	for _, g := range caps {
		if !(g > 0) {
			caps = nil
			break
		}
	}
	return execs, caps, nil
}

// leased is a provider connection that the trainer owns: it is closed
// when the last session opened on it is closed (or its Open fails).
type leased struct {
	c *transport.Client

	mu   sync.Mutex
	open int
}

func (l *leased) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := l.c.Open(ctx, spec)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if l.open == 0 {
			l.c.Close()
		}
		return nil, err
	}
	l.open++
	return &leasedSession{Session: s, l: l}, nil
}

func (l *leased) done() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.open == 0 {
		l.c.Close()
	}
}

type leasedSession struct {
	exec.Session
	l    *leased
	once sync.Once
}

func (s *leasedSession) Close() error {
	err := s.Session.Close()
	s.once.Do(s.l.done)
	return err
}

var _ exec.Session = (*leasedSession)(nil)

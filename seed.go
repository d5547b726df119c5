package rookery

import (
	"context"
	"slices"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// SeedNodeTimeout bounds how long NewTrainer waits for the seed node
// given with WithSeedNode and for the providers it names.
const SeedNodeTimeout = 30 * time.Second

// WithSeedNode trains on n providers leased from the seed node at addr
// (seednode.Lease), placed as WithExecutors places executors. Their
// measured speeds set the parts' sizes and the replicas' rows
// (exec.ReplicaShares); equal shares when any reports none. NewTrainer
// leases within SeedNodeTimeout and returns the lease's error (matching
// seednode.ErrNotEnough or transport.ErrUnavailable), presents each
// provider's lease on every call, and closes a provider's connection
// with the session it opened there. opts apply to the seed node and to
// every provider (transport.WithToken, TLS credentials,
// transport.WithRequesterKey for the key the leases are bound to, which
// also signs the receipts and faults the trainer sends to the seed
// node's ledger: see WithLedger).
func WithSeedNode(addr string, n int, opts ...transport.DialOption) Option {
	return WithSeedNodeNeed(addr, seednode.Need{N: n}, opts...)
}

// WithSeedNodeSpares leases k providers from the seed node given with
// WithSeedNode beyond the n it trains on, and gives them to the trainer
// as spares (WithSpares): a part whose provider fails moves to one of
// them. The spares are the last of those seednode.Lease returns: the
// providers reached only through a relay (peer-to-peer), then the
// slowest; the trainer holds their connections until it closes.
func WithSeedNodeSpares(k int) Option { return func(c *config) { c.seedSpares = k } }

// WithSeedNodeNeed is WithSeedNode with further needs of each provider
// (memory, GPU, speed).
func WithSeedNodeNeed(addr string, need seednode.Need, opts ...transport.DialOption) Option {
	return func(c *config) {
		if !c.ledgerSet {
			c.ledgerAddr, c.ledgerOpts = addr, opts
		}
		capsAt := len(c.splitOpts) // where the capacities go among the partition options
		// leaseN leases n providers that meet the need, with the ledger's
		// receipt options when there is one.
		leaseN := func(ctx context.Context, n int) ([]exec.Executor, []float64, func(), error) {
			ctx, cancel := context.WithTimeout(ctx, SeedNodeTimeout)
			defer cancel()
			want := need
			want.N = n
			lopts := opts
			if c.ledger != nil {
				lopts = append(slices.Clone(opts), c.ledger.dialOptions()...)
			}
			return seednode.Lease(ctx, addr, want, lopts...)
		}
		c.more = func(ctx context.Context, n int) ([]exec.Executor, func(), error) {
			execs, _, release, err := leaseN(ctx, n)
			return execs, release, err
		}
		c.executors, c.lease = nil, func(ctx context.Context) (func(), error) {
			execs, caps, release, err := leaseN(ctx, need.N+c.seedSpares)
			if err != nil {
				return nil, err
			}
			if c.seedSpares > 0 && len(execs) > need.N {
				// The slowest serve as spares; the trainer holds them until
				// it closes, since no session keeps their connections.
				WithSpares(execs[need.N:]...)(c)
				execs = execs[:need.N]
				if caps != nil {
					caps = caps[:need.N]
				}
				c.holdLease = true
			}
			c.executors, c.speeds = execs, caps
			// No speeds (caps nil), or n not r×k (NewTrainer says so): no shares.
			if part, rows, err := exec.ReplicaShares(caps, max(c.replicas, 1)); err == nil {
				c.splitOpts = slices.Insert(c.splitOpts, capsAt, partition.WithCapacities(part))
				// first, so that weights given with WithReplicas win
				c.pipeOpts = slices.Insert(c.pipeOpts, 0, exec.WithRowWeights(rows...))
			}
			return release, nil
		}
	}
}

package rookery

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// WithLocalSteps sets, for NewLocalTrainer, the h local steps each
// replica takes per round and the outer optimiser that moves the global
// parameters by the replicas' mean delta (exec.DefaultOuter is DiLoCo's:
// Nesterov, learning rate 0.7, momentum 0.9). WithSolver sets the inner
// optimiser.
func WithLocalSteps(h int, outer exec.SolverConfig) Option {
	return WithRoundOptions(exec.WithRoundSteps(h), exec.WithOuterSolver(outer))
}

// WithRoundOptions passes options to exec.NewRounds: the codec of the
// deltas, the deadline, events, the seed.
func WithRoundOptions(opts ...exec.RoundsOption) Option {
	return func(c *config) { c.roundOpts = append(c.roundOpts, opts...) }
}

// LocalTrainer trains replicas of a whole model by local SGD rounds
// (exec.Rounds, as DiLoCo): each replica takes h steps on its own shard of
// the data, then their parameter deltas are averaged and an outer
// optimiser moves the global parameters. A round exchanges the model once
// each way, compressed, where Trainer with WithReplicas exchanges every
// gradient on every step: the way to train over home links. It is not
// one-process training: the trained model depends on h, the outer
// optimiser and the codec.
type LocalTrainer struct {
	learn   gorgonia.Nodes
	ir      *graph.Graph
	rounds  *exec.Rounds
	release func()
	ledger  *ledgerQueue
}

// NewLocalTrainer reads g like NewTrainer, shards data (for every input,
// the whole data set with the examples on axis 0; each input node's
// first axis is the batch of one local step) over the replicas and opens
// one session of the whole model per replica: on the executors of
// WithExecutors or WithSeedNode, or on WithReplicas(r) in-process CPU
// executors. A replica whose executor fails is replaced by a spare
// (WithSpares, WithSeedNodeSpares) at the next round boundary. Options
// of pipelines, parts and guards do not apply and give ErrConfig.
func NewLocalTrainer(ctx context.Context, g *gorgonia.ExprGraph, loss *gorgonia.Node, learnables gorgonia.Nodes, data map[*gorgonia.Node]*tensor.Dense, opts ...Option) (*LocalTrainer, error) {
	cfg := config{solver: exec.SGD(0.01, 0.9)}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case g == nil || loss == nil:
		return nil, fmt.Errorf("%w: nil graph or loss", ErrConfig)
	case len(data) == 0:
		return nil, fmt.Errorf("%w: no data", ErrConfig)
	case cfg.parts > 1 || cfg.plan != nil || cfg.micro > 1 || cfg.auto != nil || cfg.checkpoint != nil:
		return nil, fmt.Errorf("%w: local rounds train a whole model per replica: parts, plans, micro-batches, layouts and checkpoints do not apply", ErrConfig)
	case len(cfg.guardOpts) != cfg.spareOpts:
		return nil, fmt.Errorf("%w: of the guard's options, local rounds take spares only", ErrConfig)
	}
	cfg.ledger = cfg.newLedger()
	release := func() {}
	if cfg.lease != nil {
		var err error
		if release, err = cfg.lease(ctx); err != nil {
			cfg.ledger.Close()
			return nil, err
		}
	}
	ok := false
	defer func() {
		if !ok {
			release()
			cfg.ledger.Close()
		}
	}()
	if cfg.ledger != nil {
		cfg.ledger.attach(append(slices.Clone(cfg.executors), cfg.spares...))
	}
	execs := cfg.executors
	for len(cfg.executors) == 0 && len(execs) < max(cfg.replicas, 1) {
		execs = append(execs, exec.NewCPU())
	}
	if cfg.replicas > 0 && cfg.replicas != len(execs) {
		return nil, fmt.Errorf("%w: %d replicas on %d executors", ErrConfig, cfg.replicas, len(execs))
	}
	ir, err := graph.FromGorgonia(g, graph.Learnables(learnables...), graph.WithValues())
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]*tensor.Dense, len(data))
	var ids []int64
	for n, t := range data {
		byID[int64(n.ID())] = t
		ids = append(ids, int64(n.ID()))
	}
	var mu sync.Mutex
	spares := cfg.spares
	ropts := append([]exec.RoundsOption{exec.WithInnerSolver(cfg.solver)}, cfg.roundOpts...)
	if len(spares) > 0 {
		ropts = append(ropts, exec.WithReplacements(func(ctx context.Context) (exec.Executor, error) {
			mu.Lock()
			defer mu.Unlock()
			if len(spares) == 0 {
				return nil, fmt.Errorf("%w: no spare left", ErrConfig)
			}
			ex := spares[0]
			spares = spares[1:]
			return ex, nil
		}))
	}
	rs, err := exec.NewRounds(ctx, ir, int64(loss.ID()), ids, byID, execs, ropts...)
	if err != nil {
		return nil, err
	}
	ok = true
	return &LocalTrainer{learn: append(gorgonia.Nodes{}, learnables...), ir: ir, rounds: rs, release: release, ledger: cfg.ledger}, nil
}

// Round runs one round (exec.Rounds.Round).
func (t *LocalTrainer) Round(ctx context.Context) (exec.RoundStats, error) {
	return t.rounds.Round(ctx)
}

// Rounds returns the driver of the rounds.
func (t *LocalTrainer) Rounds() *exec.Rounds { return t.rounds }

// Pull writes the global parameters into the caller's graph, as
// Trainer.Pull does.
func (t *LocalTrainer) Pull(ctx context.Context) error {
	params, err := t.rounds.Params(ctx)
	if err != nil {
		return err
	}
	return exec.Bind(t.learn, params)
}

// Close closes the replicas' sessions, gives back a seed node's lease
// and sends the sessions' receipts to the ledger within
// LedgerFlushTimeout.
func (t *LocalTrainer) Close() error {
	err := t.rounds.Close()
	if r := t.release; r != nil {
		t.release = nil
		r()
	}
	t.ledger.Close()
	return err
}

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
	"github.com/rookery-ml/rookery/transport/seednode"
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
	mu       sync.Mutex // guards what replacement uses
	spares   []exec.Executor
	more     func(ctx context.Context, n int) ([]exec.Executor, func(), error)
	handed   []string // the addresses of the providers the run has had
	left     int      // replicas that left
	releases []func()

	learn  gorgonia.Nodes
	ir     *graph.Graph
	rounds *exec.Rounds
	ledger *ledgerQueue
}

// NewLocalTrainer reads g like NewTrainer, shards data (for every input,
// the whole data set with the examples on axis 0; each input node's
// first axis is the batch of one local step) over the replicas and opens
// one session of the whole model per replica: on the executors of
// WithExecutors or WithSeedNode, or on WithReplicas(r) in-process CPU
// executors. A replica whose executor fails is replaced at the next
// round boundary by a spare (WithSpares, WithSeedNodeSpares) or, when
// none is left, by a provider leased then from the seed node of
// WithSeedNode that the run has not used before. Options
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
		execs = append(execs, inProcess(max(cfg.replicas, 1)))
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
	t := &LocalTrainer{learn: append(gorgonia.Nodes{}, learnables...), ir: ir, ledger: cfg.ledger,
		spares: cfg.spares, more: cfg.more, handed: addrs(execs)}
	ropts := append([]exec.RoundsOption{exec.WithInnerSolver(cfg.solver)}, cfg.roundOpts...)
	if len(cfg.spares) > 0 || cfg.more != nil {
		ropts = append(ropts, exec.WithReplacements(t.replacement))
	}
	rs, err := exec.NewRounds(ctx, ir, int64(loss.ID()), ids, byID, execs, ropts...)
	if err != nil {
		return nil, err
	}
	ok = true
	t.rounds, t.releases = rs, []func(){release}
	return t, nil
}

// replacement gives the executor that replaces a replica that left: the
// next spare, else a provider leased from the seed node of WithSeedNode
// that the trainer has not had before. exec.Rounds calls it again at
// the next round when it fails.
func (t *LocalTrainer) replacement(ctx context.Context) (_ exec.Executor, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Each call follows a replica leaving or a replacement that failed to
	// open; a search that hands nothing out leaves no one more out of the
	// run, and the next one counts the same replica again.
	t.left++
	defer func() {
		if err != nil {
			t.left--
		}
	}()
	if len(t.spares) > 0 {
		ex := t.spares[0]
		t.spares = t.spares[1:]
		if a := addrOf(ex); a != "" {
			t.handed = append(t.handed, a)
		}
		return ex, nil
	}
	if t.more == nil {
		return nil, fmt.Errorf("%w: no spare left", ErrConfig)
	}
	// The providers in use and one more; Lease skips those that do not
	// answer, as the one that left may not.
	execs, release, err := t.more(ctx, max(len(t.handed)-t.left, 0)+1)
	if err != nil {
		return nil, err
	}
	// The connections stay open until Close: the replacement's session
	// is opened on one after this returns.
	t.releases = append(t.releases, release)
	for _, ex := range execs {
		a := addrOf(ex)
		if a == "" || slices.Contains(t.handed, a) {
			continue
		}
		t.handed = append(t.handed, a)
		if t.ledger != nil {
			t.ledger.attach([]exec.Executor{ex})
		}
		return ex, nil
	}
	return nil, fmt.Errorf("%w: the seed node has no provider this run has not used", seednode.ErrNotEnough)
}

// addrOf is a remote executor's address, "" for another executor.
func addrOf(e exec.Executor) string {
	if a, ok := e.(interface{ Addr() string }); ok {
		return a.Addr()
	}
	return ""
}

func addrs(execs []exec.Executor) []string {
	var out []string
	for _, e := range execs {
		if a := addrOf(e); a != "" {
			out = append(out, a)
		}
	}
	return out
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
	t.mu.Lock()
	rs := t.releases
	t.releases = nil
	t.mu.Unlock()
	for _, r := range rs {
		r()
	}
	t.ledger.Close()
	return err
}

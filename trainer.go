package rookery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/checkpoint"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport"
)

// ErrConfig marks options or arguments to NewTrainer that cannot work
// together.
var ErrConfig = errors.New("rookery: invalid configuration")

// Option configures NewTrainer.
type Option func(*config)

type config struct {
	executors  []exec.Executor
	parts      int
	replicas   int
	solver     exec.SolverConfig
	plan       *partition.Plan
	pipeOpts   []exec.PipelineOption // micro-batches, row weights, eval mode
	splitOpts  []partition.Option
	guardOpts  []guard.Option
	checkpoint io.Reader
	auto       []partition.LayoutOption // WithAutoLayout; nil when not asked
	speeds     []float64                // Gflops of leased providers
	micro      int
	reduction  exec.Reduction // WithReduction
	layout     *partition.Layout
	// lease leases the executors from a seed node (WithSeedNode), and
	// seedSpares more as spares; holdLease keeps the lease until the
	// trainer closes, for spares that no session holds.
	lease func(ctx context.Context) (release func(), err error)
	// more leases n more providers from the same seed node, for a local
	// trainer's replacements; nil without WithSeedNode.
	more       func(ctx context.Context, n int) ([]exec.Executor, func(), error)
	seedSpares int
	holdLease  bool
	// spares are those of WithSpares and WithSeedNodeSpares, which put
	// spareOpts of the guardOpts; roundOpts configure NewLocalTrainer.
	spares    []exec.Executor
	spareOpts int
	roundOpts []exec.RoundsOption
	// the ledger (ledger.go): where receipts and faults go, set by
	// WithLedger (ledgerSet) or WithSeedNode; events are those of
	// WithEvents, which the ledger's handler passes on
	ledgerAddr string
	ledgerOpts []transport.DialOption
	ledgerSet  bool
	ledgerErrs func(error)
	job        string
	submit     submitFunc
	events     func(guard.Event)
	ledger     *ledgerQueue
}

// WithExecutors trains on these executors, one part each; with
// WithReplicas(r), executor i*k+j runs part j of replica i. Without it
// the trainer makes one in-process executor per part: the native CPU
// executor (exec/native), which runs parts it cannot lower on the tape
// machine and logs so.
func WithExecutors(executors ...exec.Executor) Option {
	return func(c *config) { c.executors, c.lease = append([]exec.Executor{}, executors...), nil }
}

// WithParts cuts the model into k parts (default: executors / replicas).
func WithParts(k int) Option { return func(c *config) { c.parts = k } }

// WithMicroBatches splits every mini-batch into m micro-batches (default
// 1); the batch size must be a multiple of m.
func WithMicroBatches(m int) Option {
	return func(c *config) { c.pipeOpts, c.micro = append(c.pipeOpts, exec.WithMicroBatches(m)), m }
}

// WithAutoLayout lets the trainer choose the number of parts k and of
// replicas r for the executors it has (partition.ChooseLayout, with the
// speeds of providers leased with WithSeedNode or, for providers given
// with WithExecutors, the speeds they reported, and opts) when neither
// WithParts, WithReplicas nor WithPlan says; Layout tells what it chose.
// Where the replicas can sum their gradients in rings between the
// providers (WithReduction), the layout prices both the ring
// (partition.WithRing with DefaultRingBytesPerFLOP; opts may override it)
// and the requester's sum, and the trainer sums where it predicts cheaper.
func WithAutoLayout(opts ...partition.LayoutOption) Option {
	return func(c *config) { c.auto = append(append(c.auto, partition.WithFixed(0, 0)), opts...) }
}

// WithSolver sets the optimiser (default exec.SGD(0.01, 0.9)).
func WithSolver(cfg exec.SolverConfig) Option { return func(c *config) { c.solver = cfg } }

// WithPlan trains with this partition instead of computing one with
// partition.Split. The plan must be of the graph given to NewTrainer.
func WithPlan(p *partition.Plan) Option { return func(c *config) { c.plan = p } }

// WithPartitionOptions passes options to partition.Split (capacities,
// imbalance, seed).
func WithPartitionOptions(opts ...partition.Option) Option {
	return func(c *config) { c.splitOpts = append(c.splitOpts, opts...) }
}

// WithReplicas trains r data-parallel replicas of the k-part pipeline
// (exec.Replicas): every mini-batch is split by rows across them, their
// gradients are summed before every update, and the trained model is the
// same. Replica i takes rows in proportion to weights[i] when given, else
// to the speeds of providers leased with WithSeedNode, else equally.
func WithReplicas(r int, weights ...float64) Option {
	return func(c *config) {
		if c.replicas = r; len(weights) > 0 {
			c.pipeOpts = append(c.pipeOpts, exec.WithRowWeights(weights...))
		}
	}
}

// WithReduction says where replicas' gradients are summed
// (exec.WithReduction): by default (exec.ReduceAuto) in a ring between
// the providers of each part when they can reach each other, so that the
// requester moves none of the gradients, and through this process
// otherwise (in-process executors, guarded parts). Replicas.RingError
// says why a ring did not form.
func WithReduction(r exec.Reduction) Option {
	return func(c *config) {
		c.reduction = r
		c.pipeOpts = append(c.pipeOpts, exec.WithReduction(r))
	}
}

// reportedGflops returns the speed every executor's provider reported
// (its start-up benchmark), or nil unless every executor is a provider
// that reported one.
func reportedGflops(execs []exec.Executor) []float64 {
	var out []float64
	for _, e := range execs {
		c, ok := e.(*transport.Client)
		if !ok || c.Capabilities() == nil || !(c.Capabilities().Gflops > 0) {
			return nil
		}
		out = append(out, c.Capabilities().Gflops)
	}
	return out
}

// rings says whether the replicas will sum their gradients in rings:
// every executor is a provider reached directly (a *transport.Client; a
// guarded part's wrapper cannot join a ring) and the reduction allows it.
// The automatic layout then prices the reduction as a ring.
func (c *config) rings() bool {
	if c.reduction == exec.ReduceRequester || len(c.guardOpts) > 0 || len(c.executors) == 0 {
		return false
	}
	for _, e := range c.executors {
		if _, ok := e.(*transport.Client); !ok {
			return false
		}
	}
	return true
}

// WithRebalance moves rows between replicas every n steps when their
// observed speeds call for it (exec.WithRebalance); the model is the same.
func WithRebalance(n int, threshold float64) Option {
	return func(c *config) { c.pipeOpts = append(c.pipeOpts, exec.WithRebalance(n, threshold)) }
}

// WithEvalMode runs BatchNorm on its running statistics and Dropout as
// the identity while training (see exec.SessionSpec.EvalMode).
func WithEvalMode() Option {
	return func(c *config) { c.pipeOpts = append(c.pipeOpts, exec.WithEvalMode()) }
}

// Trainer trains a Gorgonia model across executors. It reads the caller's
// graph once, in NewTrainer; the caller's graph is written again only by
// Pull.
type Trainer struct {
	learn  gorgonia.Nodes
	ir     *graph.Graph
	plan   *partition.Plan
	pipe   *exec.Replicas
	guard  *guard.Guard
	solver exec.SolverConfig
	steps  int
	// release gives back the seed node's lease when the trainer holds it
	// (WithSeedNodeSpares); nil otherwise. Close calls it once.
	release func()
	layout  *partition.Layout
	ledger  *ledgerQueue // nil without WithLedger or WithSeedNode
	// placed are the executors the parts started on, executor i*k+j
	// running part j of replica i (exec.Grid).
	placed []exec.Executor
}

// NewTrainer reads g (with the current values of learnables), cuts it
// into parts, opens one session per part and returns the trainer. loss is
// the scalar loss, a mean over the batch; inputs are the nodes fed on
// every step, each with the batch on axis 0. ctx bounds the network calls
// made here: leasing providers (WithSeedNode), opening the sessions and
// restoring a checkpoint.
func NewTrainer(ctx context.Context, g *gorgonia.ExprGraph, loss *gorgonia.Node, learnables, inputs gorgonia.Nodes, opts ...Option) (*Trainer, error) {
	cfg := config{solver: exec.SGD(0.01, 0.9)}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.ledger = cfg.newLedger()
	kept := false
	defer func() {
		if !kept {
			cfg.ledger.Close()
		}
	}()
	release := func() {}
	if cfg.lease != nil {
		var err error
		if release, err = cfg.lease(ctx); err != nil {
			return nil, err
		}
	}
	// The sessions hold the connections they need; with spares, the
	// trainer holds the lease until it closes.
	defer func() { release() }()
	if cfg.ledger != nil {
		cfg.ledger.attach(append(slices.Clone(cfg.executors), cfg.spares...))
	}
	if g == nil || loss == nil {
		return nil, fmt.Errorf("%w: nil graph or loss", ErrConfig)
	}
	if len(inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ErrConfig)
	}
	ir, err := graph.FromGorgonia(g, graph.Learnables(learnables...), graph.WithValues())
	if err != nil {
		return nil, err
	}
	var ckpt *checkpoint.State
	if cfg.checkpoint != nil {
		if ckpt, err = checkpoint.Read(cfg.checkpoint); err != nil {
			return nil, err
		}
		if err := ckpt.Apply(ir); err != nil {
			return nil, err
		}
	}
	plan, err := cfg.partition(ir)
	if err != nil {
		return nil, err
	}
	execs, gd, err := cfg.guarded()
	if err != nil {
		return nil, err
	}
	popts := append([]exec.PipelineOption{exec.WithSolver(cfg.solver)}, cfg.pipeOpts...)
	pipe, err := exec.NewReplicas(ctx, ir, int64(loss.ID()), exec.NodeIDs(inputs), plan.PartNodes(), exec.Grid(execs, plan.K()), popts...)
	if err != nil {
		return nil, err
	}
	t := &Trainer{learn: append(gorgonia.Nodes{}, learnables...), ir: ir, plan: plan, pipe: pipe, guard: gd, solver: cfg.solver, layout: cfg.layout, ledger: cfg.ledger,
		placed: slices.Clone(cfg.executors)}
	kept = true
	if ckpt != nil {
		if err := ckpt.Restore(ctx, pipe.Pipelines()...); err != nil {
			kept = false
			pipe.Close()
			return nil, err
		}
		t.steps = ckpt.Steps
	}
	if cfg.holdLease {
		t.release, release = release, func() {}
	}
	return t, nil
}

// partition resolves the parts and replicas asked for into a plan
// (partition.Arrange), and makes an in-process CPU executor per part and
// replica when none were given.
func (c *config) partition(ir *graph.Graph) (*partition.Plan, error) {
	var auto []partition.LayoutOption
	if c.auto != nil {
		speeds := c.speeds
		if len(speeds) == 0 {
			speeds = reportedGflops(c.executors)
		}
		auto = append(c.auto, partition.WithGflops(speeds...), partition.WithLayoutMicroBatches(max(c.micro, 1)))
		if c.rings() {
			auto = append([]partition.LayoutOption{partition.WithRing(partition.DefaultRingBytesPerFLOP)}, auto...)
		}
		if len(speeds) > 0 {
			// Speeds from providers' start-up benchmarks, which the update's
			// cost is calibrated against.
			auto = append([]partition.LayoutOption{partition.WithUpdateCost(partition.DefaultUpdateFLOPsPerByte)}, auto...)
		}
	}
	a, err := partition.Arrange(ir, partition.Request{Parts: c.parts, Replicas: c.replicas, Plan: c.plan, Auto: auto,
		Executors: len(c.executors), Split: c.splitOpts})
	if errors.Is(err, partition.ErrRequest) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	} else if err != nil {
		return nil, err
	}
	if a.Layout != nil {
		c.layout, c.executors = a.Layout, exec.Pick(c.executors, a.Pick)
		c.pipeOpts = append(c.pipeOpts, exec.WithRowWeights(a.RowWeights...))
		if c.reduction == exec.ReduceAuto && !a.Layout.Chosen().Ring {
			// The layout found the requester's sum the cheaper.
			c.pipeOpts = append(c.pipeOpts, exec.WithReduction(exec.ReduceRequester))
		}
	}
	for i, none := 0, len(c.executors) == 0; none && i < a.K*a.R; i++ {
		c.executors = append(c.executors, inProcess(a.K*a.R))
	}
	return a.Plan, nil
}

// Placement says where each part started, one line per executor, parts
// in order within each replica: "part 1: provider ADDR (direct)" for a
// provider reached over the network, with how its connection goes
// (transport.Client.Path: "direct" or "relayed" peer-to-peer, "tcp"),
// "part 2: in process" for an executor of this process. A part that
// failed over to a spare (WithSpares) runs elsewhere now.
func (t *Trainer) Placement() []string {
	k := max(t.plan.K(), 1)
	var out []string
	for i, e := range t.placed {
		line := fmt.Sprintf("part %d", i%k+1)
		if len(t.placed) > k {
			line = fmt.Sprintf("replica %d part %d", i/k+1, i%k+1)
		}
		switch v := e.(type) {
		case interface {
			Addr() string
			Path() string
		}:
			line += fmt.Sprintf(": provider %s (%s)", v.Addr(), v.Path())
		case interface{ Addr() string }:
			line += ": provider " + v.Addr()
		default:
			line += ": in process"
		}
		out = append(out, line)
	}
	return out
}

// Layout returns the candidates WithAutoLayout weighed and its pick, or
// nil when the trainer did not choose.
func (t *Trainer) Layout() *partition.Layout { return t.layout }

// Plan returns the partition the trainer runs.
func (t *Trainer) Plan() *partition.Plan { return t.plan }

// Pipeline returns the pipeline that drives the parts (of replica 0).
func (t *Trainer) Pipeline() *exec.Pipeline { return t.pipe.Pipelines()[0] }

// Replicas returns the replicas of the pipeline (one without WithReplicas).
func (t *Trainer) Replicas() *exec.Replicas { return t.pipe }

// Graph returns the IR the trainer read from the caller's graph.
func (t *Trainer) Graph() *graph.Graph { return t.ir }

// Step trains on one mini-batch: feeds holds a value for every input
// given to NewTrainer. It returns the mini-batch loss before the update.
func (t *Trainer) Step(ctx context.Context, feeds map[*gorgonia.Node]*tensor.Dense) (float64, error) {
	f, err := exec.FeedsByID(feeds)
	if err != nil {
		return 0, err
	}
	l, err := t.pipe.Step(ctx, f)
	if err == nil {
		t.steps++
	}
	return l, err
}

// Evaluate returns the loss of one mini-batch under the current
// parameters, without training.
func (t *Trainer) Evaluate(ctx context.Context, feeds map[*gorgonia.Node]*tensor.Dense) (float64, error) {
	f, err := exec.FeedsByID(feeds)
	if err != nil {
		return 0, err
	}
	return t.pipe.Evaluate(ctx, f)
}

// Pull writes the trained values of the learnable nodes into the caller's
// graph: into the tensors already bound to them where their shape and
// dtype match (so a machine the caller already made sees them), else by
// binding new ones.
func (t *Trainer) Pull(ctx context.Context) error {
	params, err := t.pipe.Params(ctx)
	if err != nil {
		return err
	}
	return exec.Bind(t.learn, params)
}

// Close closes the sessions on every executor and sends their receipts
// to the ledger (WithLedger, WithSeedNode) within LedgerFlushTimeout.
func (t *Trainer) Close() error {
	err := t.pipe.Close()
	if r := t.release; r != nil {
		t.release = nil
		r()
	}
	t.ledger.Close()
	return err
}

// Model is a trained model read by Load (exec.Model): a graph with its
// parameter values, which predicts in this process without any executor.
type Model = exec.Model

// Load reads a model written by Trainer.Save.
func Load(r io.Reader) (*Model, error) { return exec.ReadModel(r) }

// Save writes the trained model: the graph IR with the current parameter
// values, in the rookery.v1 protobuf encoding. Load reads it back.
func (t *Trainer) Save(ctx context.Context, w io.Writer) error {
	return checkpoint.WriteModel(ctx, t.Pipeline(), t.ir, w)
}

// ErrCheckpoint marks a checkpoint that cannot be read or does not fit
// the graph given to NewTrainer (checkpoint.ErrInvalid).
var ErrCheckpoint = checkpoint.ErrInvalid

// CheckpointError says what is wrong with a checkpoint.
type CheckpointError = checkpoint.Error

// WithCheckpoint resumes the training run that Trainer.Checkpoint wrote
// to r: the parameters, the optimiser state and the step count replace
// the graph's initial values. The graph given to NewTrainer must be the
// one the checkpoint was written from (the same nodes, in the same order);
// the number of parts and the executors may differ.
func WithCheckpoint(r io.Reader) Option { return func(c *config) { c.checkpoint = r } }

// Steps returns the number of Steps taken, counting those before the
// checkpoint the trainer resumed from.
func (t *Trainer) Steps() int { return t.steps }

// Checkpoint writes the whole state of the training run (package
// checkpoint): the graph with the current parameters, every part's
// optimiser state and the number of steps. A trainer made with
// WithCheckpoint from it continues the run as if it had not stopped.
func (t *Trainer) Checkpoint(ctx context.Context, w io.Writer) error {
	// Replicas that shard the update keep the solver state in pieces.
	if err := t.pipe.SyncState(ctx); err != nil {
		return err
	}
	s, err := checkpoint.Capture(ctx, t.Pipeline(), t.ir, t.solver, t.steps)
	if err != nil {
		return err
	}
	_, err = s.WriteTo(w)
	return err
}

// inProcess returns the executor the trainer makes for a part when it is
// given none: the native CPU executor (exec/native, Rookery's own
// kernels, with the tape machine for parts it cannot lower, logged), its
// threads a share of GOMAXPROCS among the n executors that run at once.
func inProcess(n int) exec.Executor {
	return native.New(native.WithThreads(max(1, runtime.GOMAXPROCS(0)/max(n, 1))))
}

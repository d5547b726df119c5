package exec

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// PipelineOption configures NewPipeline.
type PipelineOption func(*pipelineConfig)

type pipelineConfig struct {
	micro    int
	solver   SolverConfig
	evalMode bool
	weights  []float64 // NewReplicas: each replica's share of the rows
	// NewReplicas: re-split the rows every rebalance steps when the
	// observed speeds differ by more than threshold; now reads the clock
	// of a replica.
	rebalance int
	threshold float64
	now       func(replica int) time.Time
	// exportGrads sets SessionSpec.ExportGrads (NewReplicas, r > 1)
	exportGrads bool
	// reduction says where NewReplicas sums the gradients, noShard that
	// its rings do not shard the update
	reduction Reduction
	noShard   bool
}

// WithMicroBatches splits every mini-batch into m micro-batches (default
// 1). The batch size must be a multiple of m.
func WithMicroBatches(m int) PipelineOption { return func(c *pipelineConfig) { c.micro = m } }

// WithSolver sets the optimiser every part applies (default SGD(0.01, 0.9)).
func WithSolver(cfg SolverConfig) PipelineOption { return func(c *pipelineConfig) { c.solver = cfg } }

// WithEvalMode runs BatchNorm and Dropout in inference mode (see
// SessionSpec.EvalMode).
func WithEvalMode() PipelineOption { return func(c *pipelineConfig) { c.evalMode = true } }

// Pipeline trains a partitioned graph over a set of executors, one part
// each, with the GPipe schedule.
type Pipeline struct {
	mu       sync.Mutex
	g        *graph.Graph // the whole graph, full batch
	layout   *Layout
	sched    *Schedule
	sessions []Session
	data     []int64
	batch    int
	micro    int
	closed   bool
	// broken is the error that stopped a step half-way: some parts may
	// hold gradients of that step, so the pipeline takes no more steps.
	broken error
}

// ErrBroken marks a pipeline that a failed step left unusable; close it
// and open a new one (its parameters are those before the failed step,
// unless the failure came during the parts' Step).
var ErrBroken = errors.New("exec: pipeline broken by a failed step")

// NewPipeline opens one session per part on executors[p] and returns the
// pipeline that drives them. g is the whole graph; loss its scalar loss,
// the mean over the batch; data the ids of the inputs fed on every step,
// each with the batch on axis 0; parts the node ids of each part (for a
// partition.Plan: its Parts' Nodes, in order).
func NewPipeline(ctx context.Context, g *graph.Graph, loss int64, data []int64, parts [][]int64, executors []Executor, opts ...PipelineOption) (*Pipeline, error) {
	cfg := pipelineConfig{micro: 1, solver: SGD(0.01, 0.9)}
	for _, o := range opts {
		o(&cfg)
	}
	if len(executors) != len(parts) {
		return nil, fmt.Errorf("%w: %d executors for %d parts", ErrSpec, len(executors), len(parts))
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: no data inputs", ErrSpec)
	}
	if err := cfg.solver.Validate(); err != nil {
		return nil, err
	}
	batch := -1
	for _, id := range data {
		n, ok := g.Node(id)
		if !ok || n.Role != graph.RoleInput || len(n.Shape) == 0 {
			return nil, &SpecError{Part: -1, Node: id, Reason: "data input must be an input node with the batch on axis 0"}
		}
		if batch >= 0 && n.Shape[0] != batch {
			return nil, &SpecError{Part: -1, Node: id, Reason: fmt.Sprintf("batch %d, other data inputs have %d", n.Shape[0], batch)}
		}
		batch = n.Shape[0]
	}
	if cfg.micro < 1 || batch%cfg.micro != 0 {
		return nil, fmt.Errorf("%w: batch %d does not split into %d micro-batches", ErrSpec, batch, cfg.micro)
	}
	mg, err := Rebatch(g, data, batch, batch/cfg.micro)
	if err != nil {
		return nil, err
	}
	lay, err := NewLayout(mg, parts, loss, data)
	if err != nil {
		return nil, err
	}
	sched, err := GPipe(lay.Succ, cfg.micro)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{g: g, layout: lay, sched: sched, data: append([]int64{}, data...), batch: batch, micro: cfg.micro}
	// Open the parts concurrently: each may build programs or talk to a
	// provider.
	p.sessions = make([]Session, len(lay.Specs))
	errs := make([]error, len(lay.Specs))
	var wg sync.WaitGroup
	for i := range lay.Specs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			spec := lay.Specs[i]
			spec.Solver = cfg.solver
			spec.EvalMode = cfg.evalMode
			spec.MicroBatches = cfg.micro
			spec.ExportGrads = cfg.exportGrads
			p.sessions[i], errs[i] = executors[i].Open(ctx, spec)
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range p.sessions {
			if s != nil {
				s.Close()
			}
		}
		return nil, err
	}
	return p, nil
}

// Layout returns the parts as the pipeline runs them.
func (p *Pipeline) Layout() *Layout { return p.layout }

// Schedule returns the schedule of one step.
func (p *Pipeline) Schedule() *Schedule { return p.sched }

// Sessions returns the sessions, one per part.
func (p *Pipeline) Sessions() []Session { return p.sessions }

// Step trains on one mini-batch: feeds holds a full-batch value for every
// data input. Every micro-batch runs forward and backward through the
// parts as the schedule says, parts working concurrently; then every part
// steps once. It returns the mini-batch loss, the mean of the micro-batch
// losses.
func (p *Pipeline) Step(ctx context.Context, feeds map[int64]*tensor.Dense) (float64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	if p.broken != nil {
		return 0, fmt.Errorf("%w: %w", ErrBroken, p.broken)
	}
	l, err := p.accumulate(ctx, feeds)
	if err != nil {
		return 0, err
	}
	if err := p.stepAll(ctx); err != nil {
		p.broken = err
		return 0, err
	}
	return l, nil
}

// accumulate runs one mini-batch forward and backward, leaving the
// gradients accumulated on the parts, and returns its loss. The caller
// holds p.mu and has checked that p is open and not broken.
func (p *Pipeline) accumulate(ctx context.Context, feeds map[int64]*tensor.Dense) (float64, error) {
	micro, err := p.split(feeds)
	if err != nil {
		return 0, err
	}
	losses, err := p.run(ctx, micro, false)
	if err != nil {
		p.broken = err
		return 0, err
	}
	return mean(losses), nil
}

// Evaluate runs one mini-batch forward only, through the parts as they
// are now, and returns its loss; nothing is accumulated or stepped.
func (p *Pipeline) Evaluate(ctx context.Context, feeds map[int64]*tensor.Dense) (float64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	micro, err := p.split(feeds)
	if err != nil {
		return 0, err
	}
	losses, err := p.run(ctx, micro, true)
	if err != nil {
		return 0, err
	}
	return mean(losses), nil
}

func mean(losses []float64) float64 {
	var sum float64
	for _, l := range losses {
		sum += l
	}
	return sum / float64(len(losses))
}

// split checks the feeds and cuts them into micro-batches along axis 0.
func (p *Pipeline) split(feeds map[int64]*tensor.Dense) ([]map[int64]*tensor.Dense, error) {
	for id := range feeds {
		if !contains(p.data, id) {
			return nil, &FeedError{Part: -1, Node: id, MicroBatch: -1, Reason: "not a data input"}
		}
	}
	out := make([]map[int64]*tensor.Dense, p.micro)
	for m := range out {
		out[m] = make(map[int64]*tensor.Dense, len(p.data))
	}
	for _, id := range p.data {
		n, _ := p.g.Node(id)
		t, ok := feeds[id]
		if !ok {
			return nil, &FeedError{Part: -1, Node: id, MicroBatch: -1, Reason: fmt.Sprintf("missing feed for %q", n.Name)}
		}
		if err := checkTensor(-1, -1, n, t); err != nil {
			return nil, err
		}
		if p.micro == 1 {
			out[0][id] = t
			continue
		}
		if !t.IsNativelyAccessible() || t.RequiresIterator() {
			t = t.Materialize().(*tensor.Dense)
		}
		b := p.batch / p.micro
		per := int(n.Shape.Size()) / p.batch * b
		shape := append([]int{b}, n.Shape[1:]...)
		for m := 0; m < p.micro; m++ {
			mt := tensor.New(tensor.Of(t.Dtype()), tensor.WithShape(shape...))
			switch t.Dtype() {
			case tensor.Float64:
				copy(mt.Float64s(), t.Float64s()[m*per:(m+1)*per])
			case tensor.Float32:
				copy(mt.Float32s(), t.Float32s()[m*per:(m+1)*per])
			default:
				return nil, &FeedError{Part: -1, Node: id, MicroBatch: m, Reason: "only float data can be split into micro-batches"}
			}
			out[m][id] = mt
		}
	}
	return out, nil
}

type edge struct {
	id   int64
	part int // the consuming part
}

// run carries out the schedule: a goroutine per part walks its task list;
// activations and gradients travel on one buffered channel per cut edge.
func (p *Pipeline) run(ctx context.Context, micro []map[int64]*tensor.Dense, forwardOnly bool) ([]float64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lay := p.layout
	fwd := make(map[edge]chan *tensor.Dense)
	bwd := make(map[edge]chan *tensor.Dense)
	for id, cs := range lay.Consumers {
		for _, c := range cs {
			fwd[edge{id, c}] = make(chan *tensor.Dense, p.micro)
			bwd[edge{id, c}] = make(chan *tensor.Dense, p.micro)
		}
	}
	losses := make([]float64, p.micro)
	recv := func(ch chan *tensor.Dense) (*tensor.Dense, error) {
		select {
		case t := <-ch:
			return t, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	var wg sync.WaitGroup
	for part := range p.sessions {
		wg.Add(1)
		go func(part int) {
			defer wg.Done()
			if err := p.runPart(ctx, part, micro, fwd, bwd, recv, losses, forwardOnly); err != nil {
				cancel(err)
			}
		}(part)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return losses, nil
}

func (p *Pipeline) runPart(ctx context.Context, part int, micro []map[int64]*tensor.Dense,
	fwd, bwd map[edge]chan *tensor.Dense, recv func(chan *tensor.Dense) (*tensor.Dense, error), losses []float64, forwardOnly bool) error {
	spec := &p.layout.Specs[part]
	s := p.sessions[part]
	for _, ti := range p.sched.PerPart[part] {
		task := p.sched.Tasks[ti]
		if forwardOnly && task.Kind == Backward {
			break
		}
		m := task.MicroBatch
		switch task.Kind {
		case Forward:
			feeds := make(map[int64]*tensor.Dense, len(spec.Inputs)+len(spec.DataInputs))
			for _, id := range spec.DataInputs {
				feeds[id] = micro[m][id]
			}
			for _, id := range spec.Inputs {
				t, err := recv(fwd[edge{id, part}])
				if err != nil {
					return err
				}
				feeds[id] = t
			}
			outs, err := s.Forward(ctx, m, feeds)
			if err != nil {
				return err
			}
			for _, id := range spec.Outputs {
				t, ok := outs[id]
				if !ok {
					return &FeedError{Part: part, Node: id, MicroBatch: m, Reason: "executor returned no value for the output"}
				}
				for _, c := range p.layout.Consumers[id] {
					fwd[edge{id, c}] <- t
				}
			}
			if spec.HasLoss {
				l, ok := outs[spec.Loss]
				if !ok {
					return &FeedError{Part: part, Node: spec.Loss, MicroBatch: m, Reason: "executor returned no loss"}
				}
				losses[m] = scalarOf(l)
			}
		case Backward:
			grads := make(map[int64]*tensor.Dense, len(spec.Outputs))
			for _, id := range spec.Outputs {
				var sum *tensor.Dense
				for _, c := range p.layout.Consumers[id] {
					t, err := recv(bwd[edge{id, c}])
					if err != nil {
						return err
					}
					if sum == nil {
						sum = t
						continue
					}
					addDense(sum, t)
				}
				grads[id] = sum
			}
			gin, err := s.Backward(ctx, m, grads)
			if err != nil {
				return err
			}
			for _, id := range spec.Inputs {
				t, ok := gin[id]
				if !ok {
					return &FeedError{Part: part, Node: id, MicroBatch: m, Reason: "executor returned no gradient for the input"}
				}
				bwd[edge{id, part}] <- t
			}
		}
	}
	return nil
}

func scalarOf(t *tensor.Dense) float64 {
	switch t.Dtype() {
	case tensor.Float64:
		return t.Float64s()[0]
	case tensor.Float32:
		return float64(t.Float32s()[0])
	}
	return 0
}

// stepAll steps every part concurrently.
func (p *Pipeline) stepAll(ctx context.Context) error {
	errs := make([]error, len(p.sessions))
	var wg sync.WaitGroup
	for i, s := range p.sessions {
		wg.Add(1)
		go func(i int, s Session) {
			defer wg.Done()
			errs[i] = s.Step(ctx)
		}(i, s)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Params returns the current value of every learnable parameter, by id,
// fetched from the part that owns it.
func (p *Pipeline) Params(ctx context.Context) (map[int64]*tensor.Dense, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	out := make(map[int64]*tensor.Dense)
	for i, spec := range p.layout.Specs {
		ids := spec.Graph.Learnables()
		if len(ids) == 0 {
			continue
		}
		names := make([]string, len(ids))
		for j, id := range ids {
			names[j] = ParamName(id)
		}
		got, err := p.sessions[i].Get(ctx, names...)
		if err != nil {
			return nil, err
		}
		for j, id := range ids {
			out[id] = got[names[j]]
		}
	}
	return out, nil
}

// Close closes every session.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, s := range p.sessions {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

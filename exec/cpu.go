package exec

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// CPUOption configures the CPU executor.
type CPUOption func(*cpuConfig)

type cpuConfig struct {
	maxMicroBatches int
}

// WithMaxMicroBatches bounds the micro-batch count a spec may ask for
// (default DefaultMicroBatches); Open refuses a larger one with a
// *MicroBatchLimitError. A session keeps one built program per
// micro-batch index it has seen, with that micro-batch's activations.
func WithMaxMicroBatches(n int) CPUOption {
	return func(c *cpuConfig) { c.maxMicroBatches = n }
}

// NewCPU returns the executor that runs parts in this process on Gorgonia's
// tape machine.
func NewCPU(opts ...CPUOption) Executor {
	cfg := cpuConfig{maxMicroBatches: DefaultMicroBatches}
	for _, o := range opts {
		o(&cfg)
	}
	return &cpuExecutor{cfg: cfg}
}

type cpuExecutor struct{ cfg cpuConfig }

// Open builds the part and returns its session. Build errors (an op that
// Gorgonia cannot differentiate, say) come back here, not from Forward.
func (e *cpuExecutor) Open(ctx context.Context, spec SessionSpec) (Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := CheckMicroBatches(&spec, e.cfg.maxMicroBatches); err != nil {
		return nil, err
	}
	solver, err := NewSolver(spec.Solver, len(spec.Graph.Learnables()))
	if err != nil {
		return nil, &SpecError{Part: spec.Part, Node: -1, Reason: err.Error()}
	}
	s := &cpuSession{
		spec:   spec,
		a:      analyze(&spec),
		solver: solver,
		slots:  NewSlots[slot](spec.Part, spec.MicroBatchCount()),
	}
	s.store = NewStore(&s.spec, cpuParams{s})
	s.params = make([]*tensor.Dense, len(s.a.learn))
	s.acc = make([]*tensor.Dense, len(s.a.learn))
	s.accValid = make([]bool, len(s.a.learn))
	for i, id := range s.a.learn {
		n, _ := spec.Graph.Node(id)
		if n.Value != nil {
			if err := checkTensor(spec.Part, -1, n, n.Value); err != nil {
				return nil, err
			}
			s.params[i] = cloneDense(n.Value)
		}
		dt, _ := n.DType.Tensor()
		s.acc[i] = zerosLike(dt, n.Shape)
	}
	// Build the first program now so that a part that cannot be built
	// fails at Open.
	if _, err := s.slots.Slot(0, s.newSlot); err != nil {
		return nil, err
	}
	h := &cpuHandle{s}
	runtime.AddCleanup(h, func(s *cpuSession) { _ = s.Close() }, s)
	return h, nil
}

// cpuHandle is the Session that Open hands out. A machine waiting at its
// gate (after a Forward, for the Backward) holds the session from a
// goroutine, but never the handle: when the caller drops the handle
// without Close, a cleanup closes the session, which ends that goroutine
// and frees all the session held.
type cpuHandle struct{ *cpuSession }

// slot is the built program of one micro-batch index: its own Gorgonia
// graph and tape machine, buffers for what goes in and out. While the
// index is pending (Slots.IsPending) the forward half is done and the
// machine waits at the gate (or there is no machine).
type slot struct {
	mb    int
	g     *gorgonia.ExprGraph
	nodes map[int64]*gorgonia.Node
	m     gorgonia.VM
	gated bool
	in    map[int64]*tensor.Dense // input buffers, bound to the input nodes
	// cur is what each input node is bound to now: its buffer in in, or a
	// resident tensor bound directly where direct allows (see direct.go)
	cur    map[int64]*tensor.Dense
	direct map[int64]bool
	// scalarIn holds the scalar values bound to scalar inputs (in has
	// their 0-d twins)
	scalarIn map[int64]gorgonia.Value
	bound    bool // parameters bound
	// outIDs are the outputs (and the loss) the gate reads; outVals hold
	// the machine's values of them while it waits there
	outIDs   []int64
	outVals  []gorgonia.Value
	dy       []gorgonia.Value // gradients of seeded outputs, read by the picks
	dyBuf    []*tensor.Dense
	lossSeed gorgonia.Value // the gradient of the loss with respect to itself: 1
	// defA and defDY hold, for each deferred weight, the product's left
	// operand and the gradient of the product for this micro-batch
	defA, defDY []*tensor.Dense
	gradIn      map[int64]*tensor.Dense // gradients of active inputs
	fwd         chan struct{}           // the gate was reached
	resume      chan bool               // true: run the backward half; false: abort
	done        chan error              // the run ended
	running     bool
}

type cpuSession struct {
	mu       sync.Mutex
	spec     SessionSpec
	a        *partAnalysis
	solver   *Solver
	params   []*tensor.Dense
	acc      []*tensor.Dense
	accValid []bool
	nacc     int
	defMB    []int // micro-batches whose deferred gradients wait for Step
	store    *Store
	slots    *Slots[slot]
	closed   bool
}

func (s *cpuSession) part() int { return s.spec.Part }

// newSlot lowers the part into a fresh graph and builds its program.
func (s *cpuSession) newSlot(mb int) (sl *slot, err error) {
	buildErr := func(err error) error { return &RunError{Part: s.part(), MicroBatch: mb, Phase: "build", Err: err} }
	defer func() {
		if r := recover(); r != nil { // Gorgonia panics on some build failures
			sl, err = nil, buildErr(fmt.Errorf("%v", r))
		}
	}()
	g := gorgonia.NewGraph()
	nodes, err := Lower(s.spec.Graph, g)
	if err != nil {
		return nil, buildErr(err)
	}
	sl = &slot{mb: mb, g: g, nodes: nodes, in: make(map[int64]*tensor.Dense),
		cur: make(map[int64]*tensor.Dense), direct: make(map[int64]bool),
		gradIn: make(map[int64]*tensor.Dense),
		fwd:    make(chan struct{}, 1), resume: make(chan bool, 1)}
	gr := s.spec.Graph
	sl.scalarIn = make(map[int64]gorgonia.Value)
	for _, id := range s.store.FeedIDs() {
		// Tensor inputs are bound by Forward, to a resident tensor or to
		// an input buffer made when a Forward first copies into one: a
		// large shard bound directly then costs no second copy.
		if n, _ := gr.Node(id); len(n.Shape) > 0 {
			continue
		}
		// A scalar input keeps a 0-d buffer, which Forward copies into the
		// scalar value bound to the node (Gorgonia wants scalars, not 0-d
		// tensors).
		buf := s.zeroBuf(id)
		v := scalarValue(buf)
		sl.scalarIn[id] = v
		if err := gorgonia.Let(nodes[id], v); err != nil {
			return nil, buildErr(&graph.NodeError{ID: id, Err: err})
		}
		sl.in[id] = buf
		sl.cur[id] = buf
	}
	s.bindParams(sl)

	a := s.a
	var readIDs []int64 // what the gate (or the sink) reads forward
	readIDs = append(readIDs, a.opOutputs...)
	if s.spec.HasLoss {
		readIDs = append(readIDs, s.spec.Loss)
	}
	sl.outIDs = readIDs
	sl.outVals = make([]gorgonia.Value, len(readIDs))
	// The gate keeps references to the values; Forward copies them out,
	// once, while the machine waits at the gate.
	readForward := func(in []gorgonia.Value) error {
		copy(sl.outVals, in)
		return nil
	}
	var seedOut, seedGrad gorgonia.Nodes
	// The gate ends the forward half. A part that computes nothing (it
	// only holds parameters other parts use) has no program at all.
	sl.gated = len(readIDs) > 0
	if !sl.gated {
		return sl, nil
	}
	var gn *gorgonia.Node
	{
		children := make(gorgonia.Nodes, len(readIDs))
		for i, id := range readIDs {
			children[i] = nodes[id]
		}
		gate := newHookOp("gate", children, func(in []gorgonia.Value) error {
			if err := readForward(in); err != nil {
				return err
			}
			sl.fwd <- struct{}{}
			if !<-sl.resume {
				return errAborted
			}
			return nil
		})
		var err error
		gn, err = gorgonia.ApplyOp(gate, children...)
		if err != nil {
			return nil, buildErr(err)
		}
		sl.dy = make([]gorgonia.Value, len(a.seeded))
		sl.dyBuf = make([]*tensor.Dense, len(a.seeded))
		for j, id := range a.seeded {
			sl.dyBuf[j] = s.zeroBuf(id)
			pn, err := gorgonia.ApplyOp(newPickOp(gn, nodes[id], &sl.dy[j]), gn)
			if err != nil {
				return nil, buildErr(err)
			}
			seedOut = append(seedOut, nodes[id])
			seedGrad = append(seedGrad, pn)
		}
	}
	if a.lossSeeded {
		// The loss is seeded with 1, as Grad does, by a pick behind the
		// gate so that no backward work runs in the forward half.
		sl.lossSeed = gorgonia.NewF64(1)
		if n, _ := gr.Node(s.spec.Loss); n.DType == graph.Float32 {
			sl.lossSeed = gorgonia.NewF32(1)
		}
		pn, err := gorgonia.ApplyOp(newPickOp(gn, nodes[s.spec.Loss], &sl.lossSeed), gn)
		if err != nil {
			return nil, buildErr(err)
		}
		seedOut = append(seedOut, nodes[s.spec.Loss])
		seedGrad = append(seedGrad, pn)
	}
	var wrt gorgonia.Nodes
	var wrtBufs []*tensor.Dense
	for _, id := range s.spec.Inputs {
		if a.activeIn[id] {
			wrt = append(wrt, nodes[id])
			buf := s.zeroBuf(id)
			sl.gradIn[id] = buf
			wrtBufs = append(wrtBufs, buf)
		}
	}
	var wrtLearn []int
	isDeferred := make(map[int]bool, len(a.deferred))
	for _, d := range a.deferred {
		isDeferred[d.param] = true
	}
	for i, id := range a.learn {
		if a.activeLearn[i] && !isDeferred[i] {
			wrt = append(wrt, nodes[id])
			wrtLearn = append(wrtLearn, i)
		}
	}
	// For a deferred weight, ask for the gradient of its product instead,
	// and keep the product's left operand.
	sl.defA = make([]*tensor.Dense, len(a.deferred))
	sl.defDY = make([]*tensor.Dense, len(a.deferred))
	for j, d := range a.deferred {
		wrt = append(wrt, nodes[d.matmul])
		sl.defA[j] = s.zeroBuf(d.act)
		sl.defDY[j] = s.zeroBuf(d.matmul)
	}
	nPlain := len(wrt) - len(a.deferred)
	var sinkChildren gorgonia.Nodes
	if len(wrt) > 0 && len(seedOut) > 0 {
		grads, err := gorgonia.Backpropagate(seedOut, seedGrad, wrt)
		if err != nil {
			return nil, buildErr(err)
		}
		sinkChildren = append(sinkChildren, grads...)
	}
	roots := gorgonia.Nodes{gn}
	nGrads := len(sinkChildren)
	if nGrads > 0 {
		for _, d := range a.deferred {
			sinkChildren = append(sinkChildren, nodes[d.act])
		}
		sinkChildren = append(sinkChildren, gn) // and after the gate, whatever the order
		sink := newHookOp("sink", sinkChildren, func(in []gorgonia.Value) error {
			// Runs in the backward half, while Backward waits: the
			// parameters' gradients go straight into the accumulators.
			for i := 0; i < nGrads; i++ {
				switch {
				case i < len(wrtBufs):
					if err := readInto(wrtBufs[i], in[i]); err != nil {
						return err
					}
				case i < nPlain:
					if err := s.accumulate(wrtLearn[i-len(wrtBufs)], in[i]); err != nil {
						return err
					}
				default: // a deferred weight: keep dy and a for Step
					j := i - nPlain
					if err := readInto(sl.defDY[j], in[i]); err != nil {
						return err
					}
					if err := readInto(sl.defA[j], in[nGrads+j]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		sn, err := gorgonia.ApplyOp(sink, sinkChildren...)
		if err != nil {
			return nil, buildErr(err)
		}
		roots = append(roots, sn)
	}
	var vmOpts []gorgonia.VMOpt
	if s.spec.EvalMode {
		vmOpts = append(vmOpts, gorgonia.EvalMode())
	}
	// Compile only what the gate and the sink need: Backpropagate also
	// builds gradients nobody asked for (with respect to the data, say).
	sl.m = gorgonia.NewTapeMachine(g.SubgraphRoots(roots...), vmOpts...)
	// Gorgonia gives the machine a finalizer, which does nothing outside
	// its cuda build tag. The machine's program holds the gate and sink
	// ops, whose callbacks hold the slot and the session, which hold the
	// machine: a cycle, and a cycle with a finalizer is never collected.
	// Without it, a session dropped without Close is freed as well (see
	// cpuHandle).
	runtime.SetFinalizer(sl.m, nil)
	if written, ok := argsWritten(sl.m); ok {
		for _, id := range s.store.FeedIDs() {
			if _, scalar := sl.scalarIn[id]; !scalar && !written[nodes[id].ID()] {
				sl.direct[id] = true
			}
		}
	}
	return sl, nil
}

// zeroBuf returns a new zero tensor shaped as node id.
func (s *cpuSession) zeroBuf(id int64) *tensor.Dense {
	n, _ := s.spec.Graph.Node(id)
	dt, _ := n.DType.Tensor()
	return zerosLike(dt, n.Shape)
}

// bindParams binds the session's parameter tensors to the slot's learnable
// nodes once all are known; the solver then updates them in place.
func (s *cpuSession) bindParams(sl *slot) {
	if sl.bound {
		return
	}
	for _, p := range s.params {
		if p == nil {
			return
		}
	}
	for i, id := range s.a.learn {
		// shapes were checked when the value arrived
		_ = gorgonia.Let(sl.nodes[id], s.params[i])
	}
	sl.bound = true
}

// bindInput binds t to input node id unless it is bound already.
func (sl *slot) bindInput(id int64, t *tensor.Dense) error {
	if sl.cur[id] == t {
		return nil
	}
	if err := gorgonia.Let(sl.nodes[id], t); err != nil {
		return err
	}
	sl.cur[id] = t
	return nil
}

// start runs the slot's machine from the top in a goroutine.
func (sl *slot) start() {
	sl.m.Reset()
	for j := range sl.dy {
		sl.dy[j] = nil
	}
	sl.done = make(chan error, 1)
	sl.running = true
	go func(m gorgonia.VM, done chan<- error) { done <- m.RunAll() }(sl.m, sl.done)
}

// wait waits for the run to end.
func (sl *slot) wait() error {
	err := <-sl.done
	sl.running = false
	// Drop the machine's buffers now rather than at the next run, so that
	// they are garbage while the other micro-batches and the solver run.
	sl.m.Reset()
	return err
}

// abort ends the run of micro-batch mb that waits at the gate, if any;
// the index is no longer pending.
func (s *cpuSession) abort(mb int, sl *slot) {
	if s.slots.IsPending(mb) && sl.running {
		sl.resume <- false
		_ = sl.wait()
	}
	s.slots.SetPending(mb, false)
}

func (s *cpuSession) checkOpen() error {
	if s.closed {
		return fmt.Errorf("%w: part %d", ErrClosed, s.part())
	}
	return nil
}

// Forward implements Session.
func (s *cpuSession) Forward(ctx context.Context, mb int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g := s.spec.Graph
	vals, fromResident, err := s.store.Feeds(mb, feeds)
	if err != nil {
		return nil, err
	}
	sl, err := s.slots.Slot(mb, s.newSlot)
	if err != nil {
		return nil, err
	}
	s.bindParams(sl)
	s.abort(mb, sl)
	for i, id := range s.store.FeedIDs() {
		t := vals[i]
		if fromResident[i] && sl.direct[id] {
			// the session's own copy, which the program never writes
			if err := sl.bindInput(id, t); err != nil {
				return nil, &RunError{Part: s.part(), MicroBatch: mb, Phase: "forward", Err: err}
			}
			continue
		}
		if sl.in[id] == nil {
			sl.in[id] = s.zeroBuf(id)
		}
		if err := sl.bindInput(id, sl.in[id]); err != nil {
			return nil, &RunError{Part: s.part(), MicroBatch: mb, Phase: "forward", Err: err}
		}
		if !t.IsNativelyAccessible() || t.RequiresIterator() {
			t = t.Materialize().(*tensor.Dense)
		}
		copyDense(sl.in[id], t)
		if v, ok := sl.scalarIn[id]; ok {
			setScalar(v, sl.in[id])
		}
	}
	if sl.gated {
		sl.start()
		select {
		case <-sl.fwd:
		case err := <-sl.done:
			sl.running = false
			if err == nil {
				err = fmt.Errorf("machine ended without reaching the gate")
			}
			return nil, &RunError{Part: s.part(), MicroBatch: mb, Phase: "forward", Err: err}
		}
	}
	s.slots.SetPending(mb, true)
	out := make(map[int64]*tensor.Dense, len(sl.outIDs)+len(s.a.learnOuts))
	for i, id := range sl.outIDs {
		n, _ := g.Node(id)
		dt, _ := n.DType.Tensor()
		buf := zerosLike(dt, n.Shape)
		err := readInto(buf, sl.outVals[i])
		sl.outVals[i] = nil
		if err != nil {
			s.abort(mb, sl)
			return nil, &RunError{Part: s.part(), MicroBatch: mb, Phase: "forward", Err: &graph.NodeError{ID: id, Err: err}}
		}
		out[id] = buf
	}
	for _, id := range s.a.learnOuts {
		out[id] = cloneDense(s.params[s.a.learnIdx[id]])
	}
	return out, nil
}

// Backward implements Session.
func (s *cpuSession) Backward(ctx context.Context, mb int, gradOutputs map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sl, err := s.slots.Pending(mb)
	if err != nil {
		return nil, err
	}
	g := s.spec.Graph
	if err := s.spec.CheckGradients(mb, gradOutputs); err != nil {
		return nil, err
	}
	if sl.gated && slices.Contains(s.defMB, mb) {
		// This micro-batch index already holds deferred gradients of
		// this step: fold them in before the run overwrites them.
		if _, err := s.deferredGrads(false, 0); err != nil {
			return nil, &RunError{Part: s.part(), MicroBatch: mb, Phase: "backward", Err: err}
		}
	}
	if sl.gated {
		for j, id := range s.a.seeded {
			t := gradOutputs[id]
			if !t.IsNativelyAccessible() || t.RequiresIterator() {
				t = t.Materialize().(*tensor.Dense)
			}
			copyDense(sl.dyBuf[j], t)
			sl.dy[j] = sl.dyBuf[j]
			if sl.dyBuf[j].Shape().IsScalar() {
				sl.dy[j] = scalarValue(sl.dyBuf[j])
			}
		}
		sl.resume <- true
		err := sl.wait()
		s.slots.SetPending(mb, false)
		if err != nil {
			return nil, &RunError{Part: s.part(), MicroBatch: mb, Phase: "backward", Err: err}
		}
	}
	s.slots.SetPending(mb, false)
	for _, id := range s.a.learnOuts {
		i := s.a.learnIdx[id]
		t := gradOutputs[id]
		if !t.IsNativelyAccessible() || t.RequiresIterator() {
			t = t.Materialize().(*tensor.Dense)
		}
		if !s.accValid[i] {
			copyDense(s.acc[i], t)
			s.accValid[i] = true
			continue
		}
		addDense(s.acc[i], t)
	}
	s.nacc++
	if len(s.a.deferred) > 0 && sl.gated {
		s.defMB = append(s.defMB, mb)
		if s.spec.ExportGrads && s.nacc >= s.spec.MicroBatchCount() {
			// The requester reads the gradients next: finish them now.
			if _, err := s.deferredGrads(false, 0); err != nil {
				return nil, &RunError{Part: s.part(), MicroBatch: mb, Phase: "backward", Err: err}
			}
		}
	}
	out := make(map[int64]*tensor.Dense, len(s.spec.Inputs))
	for _, id := range s.spec.Inputs {
		if buf, ok := sl.gradIn[id]; ok {
			out[id] = cloneDense(buf)
			continue
		}
		n, _ := g.Node(id)
		dt, _ := n.DType.Tensor()
		out[id] = zerosLike(dt, n.Shape)
	}
	return out, nil
}

func contains(s []int64, id int64) bool {
	for _, v := range s {
		if v == id {
			return true
		}
	}
	return false
}

// accumulate adds a gradient computed by the machine to parameter i's
// accumulator (the first one since Step is copied).
func (s *cpuSession) accumulate(i int, v gorgonia.Value) error {
	if !s.accValid[i] {
		if err := readInto(s.acc[i], v); err != nil {
			return err
		}
		s.accValid[i] = true
		return nil
	}
	d, ok := v.(*tensor.Dense)
	if !ok || d.Dtype() != s.acc[i].Dtype() || d.Shape().TotalSize() != s.acc[i].Shape().TotalSize() {
		return fmt.Errorf("exec: gradient %v does not fit parameter %v", v.Shape(), s.acc[i].Shape())
	}
	if !d.IsNativelyAccessible() || d.RequiresIterator() {
		d = d.Materialize().(*tensor.Dense)
	}
	addDense(s.acc[i], d)
	return nil
}

// Step implements Session.
func (s *cpuSession) Step(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.nacc == 0 {
		return &OrderError{Part: s.part(), MicroBatch: -1, Reason: "step with no gradients accumulated"}
	}
	scale := 1 / float64(s.nacc)
	applied, err := s.deferredGrads(true, scale)
	if err != nil {
		return &RunError{Part: s.part(), MicroBatch: -1, Phase: "step", Err: err}
	}
	if len(s.params) > 0 {
		for i := range s.acc {
			if !s.accValid[i] && (applied == nil || !applied[i]) {
				s.acc[i].Zero()
			}
		}
		if err := s.solver.UpdateSkip(s.params, s.acc, scale, applied); err != nil {
			return &RunError{Part: s.part(), MicroBatch: -1, Phase: "step", Err: err}
		}
	}
	for i := range s.accValid {
		s.accValid[i] = false
	}
	s.nacc = 0
	s.defMB = s.defMB[:0]
	return nil
}

// deferredGrads computes the gradient of every deferred weight, aᵀ·dy on
// the micro-batches since the last Step stacked in index order, into its
// accumulator. At a Step (step set), when the solver's step is plain
// gradient descent and the product is the weight's whole gradient, it
// applies the step in the product instead, W ← W − η·scale·aᵀ·dy, and
// marks the weight in applied.
func (s *cpuSession) deferredGrads(step bool, scale float64) (applied []bool, err error) {
	if len(s.defMB) == 0 {
		return nil, nil
	}
	rate, plain := s.solver.PlainRate()
	plain = plain && step
	mbs := append([]int{}, s.defMB...)
	sort.Ints(mbs)
	for j, d := range s.a.deferred {
		as := make([]*tensor.Dense, len(mbs))
		dys := make([]*tensor.Dense, len(mbs))
		for k, mb := range mbs {
			sl := s.slots.Lookup(mb)
			as[k], dys[k] = sl.defA[j], sl.defDY[j]
		}
		beta := 0.0
		if s.accValid[d.param] {
			beta = 1
		}
		if plain && beta == 0 {
			if err := gemmTN(s.params[d.param], stackRows(as), stackRows(dys), -rate*scale, 1); err != nil {
				return nil, err
			}
			if applied == nil {
				applied = make([]bool, len(s.params))
			}
			applied[d.param] = true
			continue
		}
		if err := gemmTN(s.acc[d.param], stackRows(as), stackRows(dys), 1, beta); err != nil {
			return nil, err
		}
		s.accValid[d.param] = true
	}
	s.defMB = s.defMB[:0]
	return applied, nil
}

// Put implements Session.
func (s *cpuSession) Put(ctx context.Context, name string, t *tensor.Dense) error {
	return s.put(name, t, false)
}

// Keep implements Keeper: a tensor that is not a parameter or solver
// state is held as it is, not copied, where its data are contiguous.
func (s *cpuSession) Keep(ctx context.Context, name string, t *tensor.Dense) error {
	return s.put(name, t, true)
}

func (s *cpuSession) put(name string, t *tensor.Dense, keep bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	return s.store.Put(name, t, keep)
}

// Get implements Session.
func (s *cpuSession) Get(ctx context.Context, names ...string) (map[string]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	return s.store.Get(names...)
}

// AccessGrads implements GradAccessor.
func (s *cpuSession) AccessGrads(ctx context.Context, names []string, f func([]*tensor.Dense) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if _, err := s.deferredGrads(false, 0); err != nil {
		return err
	}
	grads := make([]*tensor.Dense, len(names))
	for k, name := range names {
		id, ok := ParseGradName(name)
		i, isParam := s.store.learnIdx[id]
		if !ok || !isParam {
			return &NameError{Part: s.spec.Part, Name: name}
		}
		if !s.accValid[i] {
			s.acc[i].Zero()
			s.accValid[i] = true
		}
		grads[k] = s.acc[i]
	}
	return f(grads)
}

var _ GradAccessor = (*cpuSession)(nil)

// gradIndexes maps gradient names to the indexes of their parameters.
func (s *cpuSession) gradIndexes(names []string) ([]int, error) {
	idx := make([]int, len(names))
	for k, name := range names {
		id, ok := ParseGradName(name)
		i, isParam := s.store.learnIdx[id]
		if !ok || !isParam {
			return nil, &NameError{Part: s.spec.Part, Name: name}
		}
		idx[k] = i
	}
	return idx, nil
}

// Shardable implements ShardStepper.
func (s *cpuSession) Shardable() bool { return s.solver.Shardable() }

// StepSharded implements ShardStepper.
func (s *cpuSession) StepSharded(ctx context.Context, names []string, f func(grads, params []*tensor.Dense, update func(k, lo, hi int) error) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if s.nacc == 0 {
		return &OrderError{Part: s.part(), MicroBatch: -1, Reason: "step with no gradients accumulated"}
	}
	if !s.solver.Shardable() {
		return &SpecError{Part: s.part(), Node: -1, Reason: "the solver clips by norm: its update cannot be sharded"}
	}
	idx, err := s.gradIndexes(names)
	if err != nil {
		return err
	}
	if _, err := s.deferredGrads(false, 0); err != nil {
		return &RunError{Part: s.part(), MicroBatch: -1, Phase: "step", Err: err}
	}
	scale := 1 / float64(s.nacc)
	if err := s.solver.BeginStep(s.params); err != nil {
		return &RunError{Part: s.part(), MicroBatch: -1, Phase: "step", Err: err}
	}
	grads := make([]*tensor.Dense, len(idx))
	params := make([]*tensor.Dense, len(idx))
	for k, i := range idx {
		if !s.accValid[i] {
			s.acc[i].Zero()
			s.accValid[i] = true
		}
		grads[k], params[k] = s.acc[i], s.params[i]
	}
	err = f(grads, params, func(k, lo, hi int) error {
		if k < 0 || k >= len(idx) {
			return fmt.Errorf("%w: parameter %d of %d", ErrSolver, k, len(idx))
		}
		return s.solver.UpdateRange(idx[k], params[k], grads[k], lo, hi, scale)
	})
	// The step is over either way: a failed one leaves the replicas to
	// the caller (the requester fails it).
	for i := range s.accValid {
		s.accValid[i] = false
	}
	s.nacc = 0
	s.defMB = s.defMB[:0]
	if err != nil {
		return &RunError{Part: s.part(), MicroBatch: -1, Phase: "step", Err: err}
	}
	return nil
}

// AccessState implements ShardStepper.
func (s *cpuSession) AccessState(ctx context.Context, names []string, f func([][]*tensor.Dense) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	idx, err := s.gradIndexes(names)
	if err != nil {
		return err
	}
	slots := s.solver.Slots()
	states := make([][]*tensor.Dense, len(slots))
	for j, slot := range slots {
		states[j] = make([]*tensor.Dense, len(idx))
		for k, i := range idx {
			if states[j][k] = s.solver.State(i, slot); states[j][k] == nil {
				// Before the first step the state is zero, as Get says.
				p := s.params[i]
				if err := s.solver.SetState(i, slot, p, zerosLike(p.Dtype(), graph.Shape(p.Shape()))); err != nil {
					return err
				}
				states[j][k] = s.solver.State(i, slot)
			}
		}
	}
	return f(states)
}

var _ ShardStepper = (*cpuSession)(nil)

// cpuParams keeps a CPU session's parameters and solver state in Go
// memory, for its Store.
type cpuParams struct{ s *cpuSession }

func (p cpuParams) Steps() int          { return p.s.solver.Steps() }
func (p cpuParams) SetSteps(n int)      { p.s.solver.SetSteps(n) }
func (p cpuParams) HasParam(i int) bool { return p.s.params[i] != nil }
func (p cpuParams) StateSlots() []string {
	return p.s.solver.Slots()
}

func (p cpuParams) Param(i int) (*tensor.Dense, error) { return cloneDense(p.s.params[i]), nil }

func (p cpuParams) SetParam(i int, t *tensor.Dense) error {
	if p.s.params[i] == nil {
		p.s.params[i] = cloneDense(t)
		return nil
	}
	if !t.IsNativelyAccessible() || t.RequiresIterator() {
		t = t.Materialize().(*tensor.Dense)
	}
	copyDense(p.s.params[i], t)
	return nil
}

func (p cpuParams) State(i int, slot string) (*tensor.Dense, error) {
	if st := p.s.solver.State(i, slot); st != nil {
		return cloneDense(st), nil
	}
	w := p.s.params[i]
	return zerosLike(w.Dtype(), graph.Shape(w.Shape())), nil
}

// SetState reports a state the solver refuses as an unknown name.
func (p cpuParams) SetState(i int, slot string, t *tensor.Dense) error {
	if err := p.s.solver.SetState(i, slot, p.s.params[i], t); err != nil {
		return fmt.Errorf("%w: %w", ErrUnknownName, err)
	}
	return nil
}

// Grad returns the accumulated gradient, with the deferred weights'
// products folded in first.
func (p cpuParams) Grad(i int) (*tensor.Dense, error) {
	if _, err := p.s.deferredGrads(false, 0); err != nil {
		return nil, err
	}
	if !p.s.accValid[i] {
		return zerosLike(p.s.acc[i].Dtype(), graph.Shape(p.s.acc[i].Shape())), nil
	}
	return cloneDense(p.s.acc[i]), nil
}

// SetGrad replaces the accumulated gradient; the deferred products of the
// micro-batches run so far are folded in first, so that they are replaced
// too and not added at Step.
func (p cpuParams) SetGrad(i int, t *tensor.Dense) error {
	if _, err := p.s.deferredGrads(false, 0); err != nil {
		return err
	}
	if !t.IsNativelyAccessible() || t.RequiresIterator() {
		t = t.Materialize().(*tensor.Dense)
	}
	copyDense(p.s.acc[i], t)
	p.s.accValid[i] = true
	return nil
}

// Close implements Session.
func (s *cpuSession) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for mb, sl := range s.slots.All() {
		s.abort(mb, sl)
		if sl.m != nil {
			_ = sl.m.Close()
		}
		// Free the machine and its buffers now, whoever still holds the
		// session.
		sl.m = nil
	}
	s.slots.Reset()
	s.store.Clear()
	return nil
}

// LocalSteps implements LocalStepper, reading the data shards the
// session holds without copying them.
func (s *cpuSession) LocalSteps(ctx context.Context, req LocalRequest) (LocalResult, error) {
	s.mu.Lock()
	if err := s.checkOpen(); err != nil {
		s.mu.Unlock()
		return LocalResult{}, err
	}
	shards := make(map[int64]*tensor.Dense, len(s.spec.DataInputs))
	for _, id := range s.spec.DataInputs {
		if t, ok := s.store.Shard(id); ok {
			shards[id] = t
		}
	}
	s.mu.Unlock()
	return RoundIO(ctx, s, req, func(req LocalRequest) (LocalResult, error) {
		return RunLocalSteps(ctx, s, &s.spec, func(id int64) (*tensor.Dense, error) { return shards[id], nil }, req)
	})
}

package plan

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// Device runs plans: a GPU through the CUDA driver (exec/cuda), this
// process's CPU on Rookery's kernels (exec/native), or, in the tests, a
// reference device that interprets every kernel in Go index for index.
// Pointers are the device's own handles; Alloc's buffers hold
// little-endian elements of the plan's dtype.
type Device interface {
	Alloc(bytes int64) (uint64, error)
	Free(p uint64) error
	Upload(dst uint64, src []byte) error
	Download(dst []byte, src uint64) error
	// Run executes launches of dtype dt; Arg.Buf indexes bufs.
	Run(dt graph.DType, ls []Launch, bufs []uint64) error
	Close() error
}

// HostDevice is a Device whose buffers live in this process's memory.
// Sessions copy tensors into and out of its buffers directly, without
// the little-endian bytes that Upload and Download carry.
type HostDevice interface {
	Device
	// Host32 and Host64 return buffer p's elements, of a float32 and of
	// a float64 plan.
	Host32(p uint64) ([]float32, error)
	Host64(p uint64) ([]float64, error)
}

// Executor opens sessions whose plans run on one device.
type Executor struct {
	Dev Device
	// MaxMicroBatches bounds the micro-batch count a spec may ask for;
	// 0 means exec.DefaultMicroBatches. Open refuses a larger one with an
	// *exec.MicroBatchLimitError. Each index a session has seen keeps its
	// own activations on the device.
	MaxMicroBatches int
	// Lower configures the lowering of each part (WithHostKernels for a
	// device that runs the host-only kernels).
	Lower []LowerOption
}

// Open lowers the part and allocates its session's shared buffers. A part
// with an op the plan cannot lower fails here with an
// *UnsupportedOpError.
func (e *Executor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	limit := e.MaxMicroBatches
	if limit == 0 {
		limit = exec.DefaultMicroBatches
	}
	if err := exec.CheckMicroBatches(&spec, limit); err != nil {
		return nil, err
	}
	plan, err := Lower(&spec, e.Lower...)
	if err != nil {
		return nil, err
	}
	s := &session{dev: e.Dev, spec: spec, plan: plan, slots: exec.NewSlots[mbSlot](spec.Part, spec.MicroBatchCount()), clean: true}
	s.host, _ = e.Dev.(HostDevice)
	c := spec.Solver
	s.folding = len(plan.Fold) > 0 && spec.MicroBatchCount() == 1 && !spec.ExportGrads &&
		(c.Kind == exec.SolverSGD || c.Kind == exec.SolverNesterov) && c.Momentum == 0 && c.WeightDecay == 0 &&
		c.ClipNorm == 0 && c.ClipValue == 0
	s.store = exec.NewStore(&s.spec, deviceParams{s})
	s.shared = make([]uint64, len(plan.Buffers))
	s.paramSet = make([]bool, len(plan.Learn))
	fail := func(err error) (exec.Session, error) {
		s.release()
		return nil, err
	}
	for i, b := range plan.Buffers {
		if b.Class.PerMicroBatch() {
			continue
		}
		p, err := e.Dev.Alloc(int64(b.Elems) * int64(plan.DType.Size()))
		if err != nil {
			return fail(err)
		}
		s.shared[i] = p
		if err := s.zero(i); err != nil {
			return fail(err)
		}
	}
	for b, v := range plan.Consts {
		if err := s.upload(s.shared[b], v); err != nil {
			return fail(err)
		}
	}
	for i, id := range plan.Learn {
		n, _ := spec.Graph.Node(id)
		if n.Value == nil {
			continue
		}
		if err := exec.CheckTensor(spec.Part, -1, n, n.Value); err != nil {
			return fail(err)
		}
		if err := s.upload(s.shared[plan.Params[i]], n.Value); err != nil {
			return fail(err)
		}
		s.paramSet[i] = true
	}
	return s, nil
}

type session struct {
	mu      sync.Mutex
	dev     Device
	host    HostDevice // dev, where its buffers are in this process
	updates []Launch   // the launches of Step, made at the first
	// clean says the accumulators hold nothing since the last Step (or
	// Open) although they were not cleared: the next Backward writes
	// them, and they read as zeros
	clean bool
	// folding says Step may fold weight-gradient products into a plain
	// SGD update (plan.Fold): one micro-batch a step, gradients not
	// exported. pending says the last Backward left those products to
	// Step; pendingBufs is its buffer table. rest are the updates of
	// the parameters not folded, folded the products made updates.
	folding     bool
	pending     bool
	pendingBufs []uint64
	rest        []Launch
	folded      []Launch
	spec        exec.SessionSpec
	plan        *Plan
	shared      []uint64 // device pointers of the shared buffers (0 for per micro-batch ones)
	slots       *exec.Slots[mbSlot]
	paramSet    []bool // the parameter has a value
	nacc        int    // backward passes since Step
	steps       int    // solver updates applied
	store       *exec.Store
	closed      bool
}

// mbSlot holds the inputs and activations of one micro-batch index.
type mbSlot struct {
	bufs []uint64 // the full buffer table: shared and this slot's
}

func (s *session) part() int { return s.spec.Part }

// unfold runs the weight-gradient products the last Backward left to
// Step (plan.Fold) into their accumulators, where something needs the
// gradients (Get, Put, another Forward or Backward) before Step.
func (s *session) unfold() error {
	if !s.pending {
		return nil
	}
	s.pending = false
	ls := make([]Launch, len(s.plan.Fold))
	for i, f := range s.plan.Fold {
		ls[i] = f.Gemm
	}
	return s.dev.Run(s.plan.DType, ls, s.pendingBufs)
}

// foldedStep is Step after a Backward that left its weight-gradient
// products to it: each such product updates its weight in place, W ← W
// − η·scale·product (the plain SGD step, folded), and the other
// parameters take their updates.
func (s *session) foldedStep(cfg exec.SolverConfig, scale float64, runErr func(error) error) error {
	if s.folded == nil {
		folded := map[int]bool{}
		for _, f := range s.plan.Fold {
			l := f.Gemm
			g := *l.Gemm
			g.C, g.Beta = s.plan.Params[f.Param], 1
			l.Gemm = &g
			s.folded = append(s.folded, l)
			folded[f.Param] = true
		}
		for i := range s.plan.Learn {
			if !folded[i] {
				s.rest = append(s.rest, s.updates[i])
			}
		}
	}
	lr := cfg.LearnRate
	if cfg.Schedule != exec.ScheduleConstant {
		lr = cfg.RateAt(s.steps)
	}
	for i := range s.folded {
		s.folded[i].Gemm.Alpha = -lr * scale
	}
	for i := range s.rest {
		setUpdateScalars(&s.rest[i], s.plan, cfg, s.steps, scale)
	}
	s.pending = false
	if err := s.dev.Run(s.plan.DType, s.folded, s.pendingBufs); err != nil {
		return runErr(err)
	}
	if err := s.dev.Run(s.plan.DType, s.rest, s.shared); err != nil {
		return runErr(err)
	}
	s.nacc = 0
	s.clean = true
	return nil
}

func (s *session) zero(b int) error {
	if s.host != nil {
		f32, f64, err := s.hostView(s.shared[b])
		clear(f32)
		clear(f64)
		return err
	}
	return s.dev.Upload(s.shared[b], make([]byte, s.plan.Buffers[b].Elems*s.plan.DType.Size()))
}

// upload copies t, of the plan's dtype, into buffer p.
func (s *session) upload(p uint64, t *tensor.Dense) error {
	if s.host == nil {
		return s.dev.Upload(p, bytesOf(t, s.plan.DType))
	}
	f32, f64, err := s.hostView(p)
	if err != nil {
		return err
	}
	if !t.IsNativelyAccessible() || t.RequiresIterator() {
		t = t.Materialize().(*tensor.Dense)
	}
	var n int
	switch {
	case t.IsScalar():
		switch v := t.ScalarValue().(type) {
		case float32:
			if len(f32) > 0 {
				f32[0], n = v, 1
			}
		case float64:
			if len(f64) > 0 {
				f64[0], n = v, 1
			}
		}
	case t.Dtype() == tensor.Float32 && f32 != nil:
		n = copy(f32, t.Float32s())
	case t.Dtype() == tensor.Float64 && f64 != nil:
		n = copy(f64, t.Float64s())
	}
	if n != t.Shape().TotalSize() {
		return fmt.Errorf("plan: upload of %d %v elements into a %v buffer", t.Shape().TotalSize(), t.Dtype(), s.plan.DType)
	}
	return nil
}

// hostView returns buffer p of a host device: f32 for a float32 plan,
// f64 for a float64 one.
func (s *session) hostView(p uint64) (f32 []float32, f64 []float64, err error) {
	if s.plan.DType == graph.Float64 {
		f64, err = s.host.Host64(p)
		return nil, f64, err
	}
	f32, err = s.host.Host32(p)
	return f32, nil, err
}

func (s *session) release() {
	for _, sl := range s.slots.All() {
		for i, b := range s.plan.Buffers {
			if b.Class.PerMicroBatch() && sl.bufs[i] != 0 {
				_ = s.dev.Free(sl.bufs[i])
			}
		}
	}
	for _, p := range s.shared {
		if p != 0 {
			_ = s.dev.Free(p)
		}
	}
	s.slots.Reset()
	s.shared = nil
}

func (s *session) checkOpen() error {
	if s.closed {
		return fmt.Errorf("%w: part %d", exec.ErrClosed, s.part())
	}
	return nil
}

// newSlot allocates the per micro-batch buffers of micro-batch mb.
func (s *session) newSlot(mb int) (*mbSlot, error) {
	sl := &mbSlot{bufs: append([]uint64{}, s.shared...)}
	for i, b := range s.plan.Buffers {
		if !b.Class.PerMicroBatch() {
			continue
		}
		p, err := s.dev.Alloc(int64(b.Elems) * int64(s.plan.DType.Size()))
		if err != nil {
			for j := range i {
				if s.plan.Buffers[j].Class.PerMicroBatch() {
					_ = s.dev.Free(sl.bufs[j])
				}
			}
			return nil, &exec.RunError{Part: s.part(), MicroBatch: mb, Phase: "forward", Err: err}
		}
		sl.bufs[i] = p
	}
	return sl, nil
}

// Forward implements exec.Session.
func (s *session) Forward(ctx context.Context, mb int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g := s.spec.Graph
	vals, _, err := s.store.Feeds(mb, feeds)
	if err != nil {
		return nil, err
	}
	sl, err := s.slots.Slot(mb, s.newSlot)
	if err != nil {
		return nil, err
	}
	runErr := func(err error) error {
		return &exec.RunError{Part: s.part(), MicroBatch: mb, Phase: "forward", Err: err}
	}
	if err := s.unfold(); err != nil {
		return nil, runErr(err)
	}
	s.slots.SetPending(mb, false)
	for i, id := range s.store.FeedIDs() {
		if err := s.upload(sl.bufs[s.plan.Value[id]], vals[i]); err != nil {
			return nil, runErr(err)
		}
	}
	if err := s.dev.Run(s.plan.DType, s.plan.Forward, sl.bufs); err != nil {
		return nil, runErr(err)
	}
	s.slots.SetPending(mb, true)
	ids := append([]int64{}, s.spec.Outputs...)
	if s.spec.HasLoss && !slices.Contains(ids, s.spec.Loss) {
		ids = append(ids, s.spec.Loss)
	}
	out := make(map[int64]*tensor.Dense, len(ids))
	for _, id := range ids {
		n, _ := g.Node(id)
		t, err := s.read(sl.bufs[s.plan.Value[id]], n.Shape)
		if err != nil {
			return nil, runErr(err)
		}
		out[id] = t
	}
	return out, nil
}

// Backward implements exec.Session.
func (s *session) Backward(ctx context.Context, mb int, gradOutputs map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
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
	runErr := func(err error) error {
		return &exec.RunError{Part: s.part(), MicroBatch: mb, Phase: "backward", Err: err}
	}
	for _, id := range s.spec.Outputs {
		if err := s.upload(sl.bufs[s.plan.GradIn[id]], gradOutputs[id]); err != nil {
			return nil, runErr(err)
		}
	}
	if err := s.unfold(); err != nil {
		return nil, runErr(err)
	}
	ls, fold := s.plan.Backward, false
	if s.clean {
		ls = s.plan.BackwardFirst
		if s.folding {
			ls, fold = s.plan.BackwardFold, true
		}
	}
	s.clean = false
	if err := s.dev.Run(s.plan.DType, ls, sl.bufs); err != nil {
		return nil, runErr(err)
	}
	if fold {
		s.pending, s.pendingBufs = true, sl.bufs
	}
	s.slots.SetPending(mb, false)
	s.nacc++
	out := make(map[int64]*tensor.Dense, len(s.spec.Inputs))
	for _, id := range s.spec.Inputs {
		n, _ := g.Node(id)
		b, ok := s.plan.GradOut[id]
		if !ok {
			dt, _ := n.DType.Tensor()
			out[id] = zeros(dt, n.Shape)
			continue
		}
		t, err := s.read(sl.bufs[b], n.Shape)
		if err != nil {
			return nil, runErr(err)
		}
		out[id] = t
	}
	return out, nil
}

// Step implements exec.Session.
func (s *session) Step(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.nacc == 0 {
		return &exec.OrderError{Part: s.part(), MicroBatch: -1, Reason: "step with no gradients accumulated"}
	}
	runErr := func(err error) error { return &exec.RunError{Part: s.part(), MicroBatch: -1, Phase: "step", Err: err} }
	cfg := s.spec.Solver
	s.steps++
	scale := 1 / float64(s.nacc)
	// One run: every parameter's update. The accumulators are not
	// cleared: the next Backward writes them (BackwardFirst), and until
	// then they read as zeros (clean). The launches are made at the first
	// Step; later ones set the scalars that change from step to step.
	if s.updates == nil {
		for i := range s.plan.Learn {
			s.updates = append(s.updates, UpdateLaunch(s.plan, cfg, s.steps, i, scale))
		}
	}
	if s.pending && s.nacc == 1 {
		return s.foldedStep(cfg, scale, runErr)
	}
	if err := s.unfold(); err != nil {
		return runErr(err)
	}
	for i := range s.plan.Learn {
		sc := scale
		if cfg.ClipNorm > 0 {
			ss, err := s.sumSquares(s.plan.Accums[i])
			if err != nil {
				return runErr(err)
			}
			if n := math.Sqrt(ss) * math.Abs(sc); n > cfg.ClipNorm {
				sc *= cfg.ClipNorm / n
			}
		}
		setUpdateScalars(&s.updates[i], s.plan, cfg, s.steps, sc)
	}
	if err := s.dev.Run(s.plan.DType, s.updates, s.shared); err != nil {
		return runErr(err)
	}
	s.clean = true
	s.nacc = 0
	return nil
}

// sumSquares returns Σ g² over buffer b, computed on the device.
func (s *session) sumSquares(b int) (float64, error) {
	n := s.plan.Buffers[b].Elems
	tmp, err := s.dev.Alloc(int64(s.plan.DType.Size()))
	if err != nil {
		return 0, err
	}
	defer s.dev.Free(tmp)
	bufs := append(append([]uint64{}, s.shared...), tmp)
	l := &lowerer{dt: s.plan.DType}
	l.reduce(-1, RSumSquares, false, 1, [4]int{1, 1, 1, 1}, [4]int{1, 1, 1, n}, [4]int{0, 0, 0, 1}, b, len(bufs)-1)
	if err := s.dev.Run(s.plan.DType, l.cur, bufs); err != nil {
		return 0, err
	}
	t, err := s.read(tmp, nil)
	if err != nil {
		return 0, err
	}
	return scalarOf(t), nil
}

// UpdateLaunch is the solver update of parameter i at update t (counted
// from 1) with the accumulated gradient scaled by scale.
func UpdateLaunch(p *Plan, cfg exec.SolverConfig, t, i int, scale float64) Launch {
	op, mu := SSGD, cfg.Momentum
	switch cfg.Kind {
	case exec.SolverSGD, exec.SolverNesterov:
		if cfg.Momentum != 0 {
			op = SMomentum
			if cfg.Kind == exec.SolverNesterov {
				op = SNesterov
			}
		}
	case exec.SolverAdam, exec.SolverAdamW:
		op = SAdam
	case exec.SolverRMSProp:
		op, mu = SRMSProp, cfg.Rho
	}
	wd := cfg.WeightDecay
	if cfg.Kind == exec.SolverAdamW {
		wd = 0
	}
	pb, gb := p.Params[i], p.Accums[i]
	s0, s1 := gb, gb
	if st := p.States[i]; len(st) > 0 {
		s0, s1 = st[0], st[0]
		if len(st) > 1 {
			s1 = st[1]
		}
	}
	l := &lowerer{dt: p.DType}
	n := p.Buffers[pb].Elems
	l.emit(p.Learn[i], "update", n, ival(op), ival(n), sval(0), sval(0), sval(wd), sval(1), sval(mu),
		sval(cfg.Beta1), sval(cfg.Beta2), sval(1), sval(1), sval(cfg.Eps), sval(cfg.ClipValue), ptr(pb), ptr(gb), ptr(s0), ptr(s1))
	u := l.cur[0]
	setUpdateScalars(&u, p, cfg, t, scale)
	return u
}

// setUpdateScalars sets the arguments of an update launch that change
// from step to step: the learning rate at update t, the gradient's
// scale, AdamW's decay and Adam's bias corrections.
func setUpdateScalars(u *Launch, p *Plan, cfg exec.SolverConfig, t int, scale float64) {
	lr := cfg.LearnRate
	if cfg.Schedule != exec.ScheduleConstant {
		lr = cfg.RateAt(t)
	}
	decay := 1.0
	var c1, c2 float64 = 1, 1
	if cfg.Kind == exec.SolverAdam || cfg.Kind == exec.SolverAdamW {
		c1 = 1 - math.Pow(cfg.Beta1, float64(t))
		c2 = 1 - math.Pow(cfg.Beta2, float64(t))
		if cfg.Kind == exec.SolverAdamW && cfg.WeightDecay != 0 {
			decay = float64(roundTo(p.DType, 1-roundTo(p.DType, lr)*roundTo(p.DType, cfg.WeightDecay)))
		}
	}
	u.Args[2].Scalar, u.Args[3].Scalar, u.Args[5].Scalar = lr, scale, decay
	u.Args[9].Scalar, u.Args[10].Scalar = c1, c2
}

// roundTo rounds v to the plan's dtype, as the CPU solver's arithmetic in
// that dtype does.
func roundTo(dt graph.DType, v float64) float64 {
	if dt == graph.Float32 {
		return float64(float32(v))
	}
	return v
}

// Put implements exec.Session.
func (s *session) Put(ctx context.Context, name string, t *tensor.Dense) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	return s.store.Put(name, t, false)
}

// Get implements exec.Session.
func (s *session) Get(ctx context.Context, names ...string) (map[string]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	return s.store.Get(names...)
}

// deviceParams keeps a session's parameters and solver state in its
// shared device buffers, for its Store.
type deviceParams struct{ s *session }

func (p deviceParams) Steps() int           { return p.s.steps }
func (p deviceParams) SetSteps(n int)       { p.s.steps = n }
func (p deviceParams) HasParam(i int) bool  { return p.s.paramSet[i] }
func (p deviceParams) StateSlots() []string { return SolverSlots(p.s.spec.Solver) }

func (p deviceParams) Param(i int) (*tensor.Dense, error) { return p.read(i, p.s.plan.Params[i]) }

func (p deviceParams) SetParam(i int, t *tensor.Dense) error {
	if err := p.s.upload(p.s.shared[p.s.plan.Params[i]], t); err != nil {
		return err
	}
	p.s.paramSet[i] = true
	return nil
}

func (p deviceParams) State(i int, slot string) (*tensor.Dense, error) {
	return p.read(i, p.s.plan.States[i][slices.Index(p.StateSlots(), slot)])
}

func (p deviceParams) SetState(i int, slot string, t *tensor.Dense) error {
	b := p.s.plan.States[i][slices.Index(p.StateSlots(), slot)]
	return p.s.upload(p.s.shared[b], t)
}

// Grad downloads parameter i's accumulator.
func (p deviceParams) Grad(i int) (*tensor.Dense, error) {
	if err := p.s.unfold(); err != nil {
		return nil, err
	}
	if p.s.clean {
		n, _ := p.s.spec.Graph.Node(p.s.plan.Learn[i])
		dt, _ := p.s.plan.DType.Tensor()
		return zeros(dt, n.Shape), nil
	}
	return p.read(i, p.s.plan.Accums[i])
}

// SetGrad uploads t into parameter i's accumulator. Where the
// accumulators are clean (not cleared since Step), it clears them all
// first: the next Backward adds to them.
func (p deviceParams) SetGrad(i int, t *tensor.Dense) error {
	if err := p.s.unfold(); err != nil {
		return err
	}
	if p.s.clean {
		var ls []Launch
		for _, b := range p.s.plan.Accums {
			l := &lowerer{dt: p.s.plan.DType}
			n := p.s.plan.Buffers[b].Elems
			l.emit(-1, "fill", n, ival(n), sval(0), ptr(b))
			ls = append(ls, l.cur...)
		}
		if err := p.s.dev.Run(p.s.plan.DType, ls, p.s.shared); err != nil {
			return err
		}
		p.s.clean = false
	}
	return p.s.upload(p.s.shared[p.s.plan.Accums[i]], t)
}

// read downloads buffer b, shaped as parameter i.
func (p deviceParams) read(i, b int) (*tensor.Dense, error) {
	n, _ := p.s.spec.Graph.Node(p.s.plan.Learn[i])
	return p.s.read(p.s.shared[b], n.Shape)
}

// Close implements exec.Session.
func (s *session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.release()
	s.store.Clear()
	return nil
}

// read downloads a tensor of the plan's dtype and the given shape.
func (s *session) read(p uint64, shape graph.Shape) (*tensor.Dense, error) {
	n := int(shape.Size())
	dt, _ := s.plan.DType.Tensor()
	var t *tensor.Dense
	if len(shape) == 0 {
		t = zeros(dt, nil)
	} else {
		t = tensor.New(tensor.Of(dt), tensor.WithShape(shape...))
	}
	if s.host != nil {
		f32, f64, err := s.hostView(p)
		switch {
		case err != nil:
			return nil, err
		case len(shape) == 0 && f32 != nil:
			t.Set(0, f32[0])
		case len(shape) == 0:
			t.Set(0, f64[0])
		case f32 != nil:
			copy(t.Float32s(), f32[:n])
		default:
			copy(t.Float64s(), f64[:n])
		}
		return t, nil
	}
	buf := make([]byte, n*s.plan.DType.Size())
	if err := s.dev.Download(buf, p); err != nil {
		return nil, err
	}
	switch d := t.Data().(type) {
	case []float32:
		for i := range d {
			d[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
	case []float64:
		for i := range d {
			d[i] = math.Float64frombits(binary.LittleEndian.Uint64(buf[8*i:]))
		}
	case float32:
		t.Set(0, math.Float32frombits(binary.LittleEndian.Uint32(buf)))
	case float64:
		t.Set(0, math.Float64frombits(binary.LittleEndian.Uint64(buf)))
	}
	return t, nil
}

// bytesOf returns the little-endian bytes of a float tensor.
func bytesOf(t *tensor.Dense, dt graph.DType) []byte {
	if !t.IsNativelyAccessible() || t.RequiresIterator() {
		t = t.Materialize().(*tensor.Dense)
	}
	out := make([]byte, t.Shape().TotalSize()*dt.Size())
	switch d := t.Data().(type) {
	case []float32:
		for i, v := range d {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case []float64:
		for i, v := range d {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(v))
		}
	case float32:
		binary.LittleEndian.PutUint32(out, math.Float32bits(d))
	case float64:
		binary.LittleEndian.PutUint64(out, math.Float64bits(d))
	}
	return out
}

func scalarOf(t *tensor.Dense) float64 {
	switch d := t.Data().(type) {
	case float32:
		return float64(d)
	case float64:
		return d
	case []float32:
		return float64(d[0])
	case []float64:
		return d[0]
	}
	return math.NaN()
}

func zeros(dt tensor.Dtype, shape graph.Shape) *tensor.Dense {
	if len(shape) == 0 {
		if dt == tensor.Float32 {
			return tensor.New(tensor.FromScalar(float32(0)))
		}
		return tensor.New(tensor.FromScalar(float64(0)))
	}
	return tensor.New(tensor.Of(dt), tensor.WithShape(shape...))
}

// learnIndexes maps gradient names (exec.GradName) to the indexes of
// their parameters in the plan.
func (s *session) learnIndexes(names []string) ([]int, error) {
	idx := make([]int, len(names))
	for k, name := range names {
		id, ok := exec.ParseGradName(name)
		i := slices.Index(s.plan.Learn, id)
		if !ok || i < 0 {
			return nil, &exec.NameError{Part: s.part(), Name: name}
		}
		idx[k] = i
	}
	return idx, nil
}

// hostTensors returns, for each parameter index in idx, its buffer
// buf(i) of a host device as a 1-D tensor of the parameter's size,
// sharing the buffer's memory.
func (s *session) hostTensors(idx []int, buf func(i int) int) ([]*tensor.Dense, error) {
	out := make([]*tensor.Dense, len(idx))
	for k, i := range idx {
		n, _ := s.spec.Graph.Node(s.plan.Learn[i])
		size := int(n.Shape.Size())
		f32, f64, err := s.hostView(s.shared[buf(i)])
		switch {
		case err != nil:
			return nil, err
		case f32 != nil:
			out[k] = tensor.New(tensor.WithShape(size), tensor.WithBacking(f32[:size]))
		default:
			out[k] = tensor.New(tensor.WithShape(size), tensor.WithBacking(f64[:size]))
		}
	}
	return out, nil
}

// lend checks that the session can lend its buffers in place (it is open
// and on a host device) and returns the parameter indexes of names; s.mu
// is held.
func (s *session) lend(names []string) ([]int, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if s.host == nil {
		return nil, exec.ErrNotLent
	}
	return s.learnIndexes(names)
}

// clearAccums makes clean accumulators (read as zeros, not cleared since
// Step) hold zeros, for a caller that reads or writes them in place.
func (s *session) clearAccums() error {
	if !s.clean {
		return nil
	}
	for _, b := range s.plan.Accums {
		if err := s.zero(b); err != nil {
			return err
		}
	}
	s.clean = false
	return nil
}

// AccessGrads implements exec.GradAccessor: on a host device, the
// accumulators themselves, as 1-D tensors; elsewhere exec.ErrNotLent.
func (s *session) AccessGrads(ctx context.Context, names []string, f func([]*tensor.Dense) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.lend(names)
	if err != nil {
		return err
	}
	if err := s.unfold(); err != nil {
		return err
	}
	if err := s.clearAccums(); err != nil {
		return err
	}
	grads, err := s.hostTensors(idx, func(i int) int { return s.plan.Accums[i] })
	if err != nil {
		return err
	}
	return f(grads)
}

// Shardable implements exec.ShardStepper: on a host device, with a
// solver that does not clip by norm.
func (s *session) Shardable() bool { return s.host != nil && !(s.spec.Solver.ClipNorm > 0) }

// StepSharded implements exec.ShardStepper: the update of each range f
// asks for is exec.UpdateSlice on the buffers' elements.
func (s *session) StepSharded(ctx context.Context, names []string, f func(grads, params []*tensor.Dense, update func(k, lo, hi int) error) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if s.nacc == 0 {
		return &exec.OrderError{Part: s.part(), MicroBatch: -1, Reason: "step with no gradients accumulated"}
	}
	if !s.Shardable() {
		return &exec.SpecError{Part: s.part(), Node: -1, Reason: "the session cannot shard its update"}
	}
	idx, err := s.learnIndexes(names)
	if err != nil {
		return err
	}
	runErr := func(err error) error { return &exec.RunError{Part: s.part(), MicroBatch: -1, Phase: "step", Err: err} }
	if err := s.unfold(); err != nil {
		return runErr(err)
	}
	if err := s.clearAccums(); err != nil {
		return runErr(err)
	}
	grads, err := s.hostTensors(idx, func(i int) int { return s.plan.Accums[i] })
	if err != nil {
		return runErr(err)
	}
	params, err := s.hostTensors(idx, func(i int) int { return s.plan.Params[i] })
	if err != nil {
		return runErr(err)
	}
	cfg := s.spec.Solver
	s.steps++
	scale := 1 / float64(s.nacc)
	var buf32 []float32
	var buf64 []float64
	err = f(grads, params, func(k, lo, hi int) error {
		if k < 0 || k >= len(idx) || lo < 0 || hi > params[k].Shape().TotalSize() || lo > hi {
			return fmt.Errorf("%w: elements [%d, %d) of parameter %d", exec.ErrSolver, lo, hi, k)
		}
		i := idx[k]
		switch s.plan.DType {
		case graph.Float32:
			st := make([][]float32, len(s.plan.States[i]))
			for j, b := range s.plan.States[i] {
				v, err := s.host.Host32(s.shared[b])
				if err != nil {
					return err
				}
				st[j] = v[lo:hi]
			}
			exec.UpdateSlice(cfg, s.steps, params[k].Float32s()[lo:hi], grads[k].Float32s()[lo:hi], st, scale, &buf32)
		default:
			st := make([][]float64, len(s.plan.States[i]))
			for j, b := range s.plan.States[i] {
				v, err := s.host.Host64(s.shared[b])
				if err != nil {
					return err
				}
				st[j] = v[lo:hi]
			}
			exec.UpdateSlice(cfg, s.steps, params[k].Float64s()[lo:hi], grads[k].Float64s()[lo:hi], st, scale, &buf64)
		}
		return nil
	})
	// The step is over either way: the accumulators read as zeros again.
	s.clean = true
	s.nacc = 0
	if err != nil {
		return runErr(err)
	}
	return nil
}

// AccessState implements exec.ShardStepper: the solver state buffers of
// a host device, states[slot][parameter].
func (s *session) AccessState(ctx context.Context, names []string, f func([][]*tensor.Dense) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.lend(names)
	if err != nil {
		return err
	}
	slots := SolverSlots(s.spec.Solver)
	states := make([][]*tensor.Dense, len(slots))
	for j := range slots {
		if states[j], err = s.hostTensors(idx, func(i int) int { return s.plan.States[i][j] }); err != nil {
			return err
		}
	}
	return f(states)
}

var (
	_ exec.GradAccessor = (*session)(nil)
	_ exec.ShardStepper = (*session)(nil)
)

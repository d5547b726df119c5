package exec

import (
	"fmt"
	"math"

	"github.com/rookery-ml/rookery/internal/gemm"
	"gorgonia.org/tensor"
)

// SolverKind names an optimiser.
type SolverKind uint8

// The optimisers a session can apply.
const (
	SolverInvalid SolverKind = iota
	// SolverSGD is stochastic gradient descent with (heavy-ball) momentum:
	// v ← μ·v + g; p ← p − η·v. Momentum 0 is plain SGD.
	SolverSGD
	// SolverAdam is Adam with bias correction:
	// m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
	// p ← p − η·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε).
	SolverAdam
	// SolverRMSProp is RMSProp: c ← ρ·c + (1−ρ)·g²; p ← p − η·g/(√c + ε).
	SolverRMSProp
	// SolverNesterov is SGD with Nesterov momentum (as PyTorch's
	// nesterov=True): v ← μ·v + g; p ← p − η·(g + μ·v).
	SolverNesterov
	// SolverAdamW is Adam with decoupled weight decay (Loshchilov and
	// Hutter): p ← p − η·λ·p, then the Adam update with g. WeightDecay is
	// λ here, and is not added to the gradient.
	SolverAdamW
)

var solverNames = [...]string{"invalid", "sgd", "adam", "rmsprop", "nesterov", "adamw"}

// ScheduleKind names a learning-rate schedule.
type ScheduleKind uint8

// The learning-rate schedules. Update t (counted from 1 by the solver, so
// the schedule follows Steps) uses LearnRate × a multiplier.
const (
	// ScheduleConstant keeps LearnRate.
	ScheduleConstant ScheduleKind = iota
	// ScheduleStep multiplies the rate by StepGamma every StepEvery
	// updates: η·γ^⌊(t−1)/StepEvery⌋.
	ScheduleStep
	// ScheduleCosine anneals from LearnRate to MinLearnRate over
	// CosineSteps updates and then stays there:
	// η_min + (η − η_min)·(1 + cos(π·min(t−1, T)/T))/2.
	ScheduleCosine
)

var scheduleNames = [...]string{"constant", "step", "cosine"}

func (k ScheduleKind) String() string {
	if int(k) < len(scheduleNames) {
		return scheduleNames[k]
	}
	return fmt.Sprintf("schedule(%d)", uint8(k))
}

func (k SolverKind) String() string {
	if int(k) < len(solverNames) {
		return solverNames[k]
	}
	return fmt.Sprintf("solver(%d)", uint8(k))
}

// SolverConfig is an optimiser and its hyper-parameters. It is plain data
// so that it can travel to a remote executor. Build one with SGD,
// Nesterov, Adam, AdamW or RMSProp and adjust fields as needed; the zero
// values of the schedule and clipping fields leave them off.
type SolverConfig struct {
	Kind        SolverKind
	LearnRate   float64 // η
	Momentum    float64 // μ, SGD
	Beta1       float64 // β1, Adam
	Beta2       float64 // β2, Adam
	Rho         float64 // ρ, RMSProp
	Eps         float64 // ε, Adam and RMSProp
	WeightDecay float64 // L2 penalty λ: g ← g + λ·p before the update (0: none); AdamW: decoupled decay

	// Learning-rate schedule (zero values: the constant LearnRate).
	Schedule     ScheduleKind
	StepEvery    int     // ScheduleStep: updates between decays
	StepGamma    float64 // ScheduleStep: factor per decay, in (0, 1]
	CosineSteps  int     // ScheduleCosine: updates to reach MinLearnRate
	MinLearnRate float64 // ScheduleCosine: final rate, in [0, LearnRate]

	// Gradient clipping (zero values: none), applied to the mean gradient
	// before weight decay. ClipNorm rescales each parameter's gradient so
	// that its L2 norm is at most ClipNorm (per parameter tensor, as
	// Keras' clipnorm: a part sees only its own parameters, so a global
	// norm would need a reduction across parts). ClipValue clamps every
	// element to [−ClipValue, ClipValue].
	ClipNorm  float64
	ClipValue float64
}

// Nesterov returns SGD with Nesterov momentum.
func Nesterov(learnRate, momentum float64) SolverConfig {
	return SolverConfig{Kind: SolverNesterov, LearnRate: learnRate, Momentum: momentum}
}

// AdamW returns Adam with decoupled weight decay λ, β1 = 0.9, β2 = 0.999,
// ε = 1e-8.
func AdamW(learnRate, weightDecay float64) SolverConfig {
	c := Adam(learnRate)
	c.Kind, c.WeightDecay = SolverAdamW, weightDecay
	return c
}

// RateAt returns the learning rate of update t (counted from 1).
func (c SolverConfig) RateAt(t int) float64 {
	switch c.Schedule {
	case ScheduleStep:
		return c.LearnRate * math.Pow(c.StepGamma, float64((t-1)/c.StepEvery))
	case ScheduleCosine:
		p := math.Min(float64(t-1), float64(c.CosineSteps)) / float64(c.CosineSteps)
		return c.MinLearnRate + (c.LearnRate-c.MinLearnRate)*(1+math.Cos(math.Pi*p))/2
	}
	return c.LearnRate
}

// SGD returns stochastic gradient descent with momentum.
func SGD(learnRate, momentum float64) SolverConfig {
	return SolverConfig{Kind: SolverSGD, LearnRate: learnRate, Momentum: momentum}
}

// Adam returns Adam with β1 = 0.9, β2 = 0.999, ε = 1e-8.
func Adam(learnRate float64) SolverConfig {
	return SolverConfig{Kind: SolverAdam, LearnRate: learnRate, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

// RMSProp returns RMSProp with ρ = 0.9, ε = 1e-8.
func RMSProp(learnRate float64) SolverConfig {
	return SolverConfig{Kind: SolverRMSProp, LearnRate: learnRate, Rho: 0.9, Eps: 1e-8}
}

// Validate reports whether the configuration can be applied.
func (c SolverConfig) Validate() error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrSolver, c.Kind, fmt.Sprintf(f, a...))
	}
	if !(c.LearnRate > 0) || math.IsInf(c.LearnRate, 0) {
		return bad("learning rate %v must be positive", c.LearnRate)
	}
	if c.WeightDecay < 0 {
		return bad("weight decay %v must not be negative", c.WeightDecay)
	}
	if !(c.ClipNorm >= 0) || math.IsInf(c.ClipNorm, 0) || !(c.ClipValue >= 0) || math.IsInf(c.ClipValue, 0) {
		return bad("clip norm %v and clip value %v must be finite and not negative", c.ClipNorm, c.ClipValue)
	}
	switch c.Schedule {
	case ScheduleConstant:
	case ScheduleStep:
		if c.StepEvery < 1 || !(c.StepGamma > 0 && c.StepGamma <= 1) {
			return bad("step schedule every %d updates by %v: want at least 1 update and a factor in (0, 1]", c.StepEvery, c.StepGamma)
		}
	case ScheduleCosine:
		if c.CosineSteps < 1 || !(c.MinLearnRate >= 0 && c.MinLearnRate <= c.LearnRate) {
			return bad("cosine schedule over %d updates down to %v: want at least 1 update and a final rate in [0, %v]", c.CosineSteps, c.MinLearnRate, c.LearnRate)
		}
	default:
		return bad("unknown schedule %v", c.Schedule)
	}
	in01 := func(v float64) bool { return v >= 0 && v < 1 }
	switch c.Kind {
	case SolverSGD, SolverNesterov:
		if !in01(c.Momentum) {
			return bad("momentum %v must be in [0, 1)", c.Momentum)
		}
	case SolverAdam, SolverAdamW:
		if !in01(c.Beta1) || !in01(c.Beta2) {
			return bad("betas %v, %v must be in [0, 1)", c.Beta1, c.Beta2)
		}
		if !(c.Eps > 0) {
			return bad("epsilon %v must be positive", c.Eps)
		}
	case SolverRMSProp:
		if !in01(c.Rho) {
			return bad("rho %v must be in [0, 1)", c.Rho)
		}
		if !(c.Eps > 0) {
			return bad("epsilon %v must be positive", c.Eps)
		}
	default:
		return fmt.Errorf("%w: unknown kind %v", ErrSolver, c.Kind)
	}
	return nil
}

// slots names the per-parameter state a solver kind keeps.
func (c SolverConfig) slots() []string {
	switch c.Kind {
	case SolverSGD, SolverNesterov:
		if c.Momentum == 0 {
			return nil
		}
		return []string{"velocity"}
	case SolverAdam, SolverAdamW:
		return []string{"m", "v"}
	case SolverRMSProp:
		return []string{"cache"}
	}
	return nil
}

// Solver applies a SolverConfig to a fixed list of parameters. The pipeline
// runs one per session; a program that trains in one process can use the
// same Solver, which gives the very same numbers.
type Solver struct {
	cfg   SolverConfig
	t     int               // updates applied
	state [][]*tensor.Dense // [param][slot], allocated on first use
	buf64 []float64         // clamped gradients (ClipValue)
	buf32 []float32
}

// NewSolver returns a solver for n parameters.
func NewSolver(cfg SolverConfig, n int) (*Solver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Solver{cfg: cfg, state: make([][]*tensor.Dense, n)}, nil
}

// Config returns the solver's configuration.
func (s *Solver) Config() SolverConfig { return s.cfg }

// Steps is the number of updates applied so far.
func (s *Solver) Steps() int { return s.t }

// SetSteps sets the update count (Adam's bias correction depends on it),
// for restoring a solver from a snapshot.
func (s *Solver) SetSteps(t int) { s.t = t }

// Slots names the state the solver keeps for each parameter.
func (s *Solver) Slots() []string { return s.cfg.slots() }

// State returns parameter i's state for slot, or nil before the first
// update. The tensor is the solver's own.
func (s *Solver) State(i int, slot string) *tensor.Dense {
	for j, name := range s.cfg.slots() {
		if name == slot && s.state[i] != nil {
			return s.state[i][j]
		}
	}
	return nil
}

// SetState replaces parameter i's state for slot with a copy of t, which
// must be shaped like the parameter.
func (s *Solver) SetState(i int, slot string, like, t *tensor.Dense) error {
	for j, name := range s.cfg.slots() {
		if name != slot {
			continue
		}
		if !like.Shape().Eq(t.Shape()) || like.Dtype() != t.Dtype() {
			return fmt.Errorf("%w: state %s is %v %v, want %v %v", ErrSolver, slot, t.Dtype(), t.Shape(), like.Dtype(), like.Shape())
		}
		s.ensure(i, like)
		copyDense(s.state[i][j], t)
		return nil
	}
	return fmt.Errorf("%w: %s keeps no state %q", ErrSolver, s.cfg.Kind, slot)
}

func (s *Solver) ensure(i int, like *tensor.Dense) {
	if s.state[i] != nil {
		return
	}
	slots := s.cfg.slots()
	s.state[i] = make([]*tensor.Dense, len(slots))
	for j := range slots {
		s.state[i][j] = tensor.New(tensor.Of(like.Dtype()), tensor.WithShape(like.Shape().Clone()...))
	}
}

// PlainRate reports whether the solver's next update is plain gradient
// descent, p ← p − η·scale·g with nothing else (SGD or Nesterov without
// momentum, no weight decay, no clipping), and the learning rate η it
// would use. A caller that computes g by a matrix product can then fold
// the update into the product (p ← p + α·aᵀ·b with α = −η·scale) and skip
// the parameter in UpdateSkip: the parameter is read and written once,
// not three times.
func (s *Solver) PlainRate() (float64, bool) {
	c := s.cfg
	if (c.Kind != SolverSGD && c.Kind != SolverNesterov) || c.Momentum != 0 || c.WeightDecay != 0 || c.ClipNorm > 0 || c.ClipValue > 0 {
		return 0, false
	}
	if c.Schedule != ScheduleConstant {
		return c.RateAt(s.t + 1), true
	}
	return c.LearnRate, true
}

// Update applies one step to params, using scale·grads[i] as the gradient
// of params[i]. Parameters are updated in place.
func (s *Solver) Update(params, grads []*tensor.Dense, scale float64) error {
	return s.UpdateSkip(params, grads, scale, nil)
}

// UpdateSkip is Update, except that it leaves params[i] alone where
// skip[i] is set (skip may be nil): the caller has applied this step to
// it already (see PlainRate). The step still counts once.
func (s *Solver) UpdateSkip(params, grads []*tensor.Dense, scale float64, skip []bool) error {
	if len(params) != len(s.state) || len(grads) != len(params) {
		return fmt.Errorf("%w: %d parameters and %d gradients for a solver of %d", ErrSolver, len(params), len(grads), len(s.state))
	}
	for i, p := range params {
		g := grads[i]
		if p.Dtype() != g.Dtype() || p.Shape().TotalSize() != g.Shape().TotalSize() {
			return fmt.Errorf("%w: parameter %d is %v %v, gradient %v %v", ErrSolver, i, p.Dtype(), p.Shape(), g.Dtype(), g.Shape())
		}
		if p.Dtype() != tensor.Float64 && p.Dtype() != tensor.Float32 {
			return fmt.Errorf("%w: parameter %d has dtype %v", ErrSolver, i, p.Dtype())
		}
	}
	s.t++
	for i, p := range params {
		if i < len(skip) && skip[i] {
			continue
		}
		s.ensure(i, p)
		st := s.state[i]
		switch p.Dtype() {
		case tensor.Float64:
			ss := make([][]float64, len(st))
			for j := range st {
				ss[j] = st[j].Float64s()
			}
			g, sc := clipped(s.cfg, grads[i].Float64s()[:p.Shape().TotalSize()], scale, &s.buf64)
			update(s.cfg, s.t, p.Float64s(), g, ss, sc)
		case tensor.Float32:
			ss := make([][]float32, len(st))
			for j := range st {
				ss[j] = st[j].Float32s()
			}
			g, sc := clipped(s.cfg, grads[i].Float32s()[:p.Shape().TotalSize()], scale, &s.buf32)
			update(s.cfg, s.t, p.Float32s(), g, ss, sc)
		}
	}
	return nil
}

// Shardable reports whether the solver's update can be applied to a
// parameter in pieces (UpdateRange): every rule is elementwise except
// clipping by the gradient's norm, which needs the whole tensor.
func (s *Solver) Shardable() bool { return !(s.cfg.ClipNorm > 0) }

// BeginStep counts one update, as Update does, for a step whose update is
// then applied to parts of the parameters with UpdateRange; it makes
// every parameter's state exist.
func (s *Solver) BeginStep(params []*tensor.Dense) error {
	if len(params) != len(s.state) {
		return fmt.Errorf("%w: %d parameters for a solver of %d", ErrSolver, len(params), len(s.state))
	}
	for i, p := range params {
		if p.Dtype() != tensor.Float64 && p.Dtype() != tensor.Float32 {
			return fmt.Errorf("%w: parameter %d has dtype %v", ErrSolver, i, p.Dtype())
		}
	}
	s.t++
	for i, p := range params {
		s.ensure(i, p)
	}
	return nil
}

// UpdateRange applies the step BeginStep counted to elements [lo, hi) of
// parameter p (index i) alone, using scale·g[lo:hi] as their gradient,
// and changes their state alone: the same numbers Update gives those
// elements. It fails for a solver that is not Shardable.
func (s *Solver) UpdateRange(i int, p, g *tensor.Dense, lo, hi int, scale float64) error {
	n := p.DataSize()
	switch {
	case !s.Shardable():
		return fmt.Errorf("%w: clipping by norm needs the whole gradient", ErrSolver)
	case i < 0 || i >= len(s.state) || s.state[i] == nil:
		return fmt.Errorf("%w: parameter %d has no step begun", ErrSolver, i)
	case p.Dtype() != g.Dtype() || g.DataSize() != n || lo < 0 || hi > n || lo > hi:
		return fmt.Errorf("%w: elements [%d, %d) of parameter %d (%v %v, gradient %v %v)", ErrSolver, lo, hi, i, p.Dtype(), p.Shape(), g.Dtype(), g.Shape())
	}
	switch p.Dtype() {
	case tensor.Float64:
		updateElems(s.cfg, s.t, p, g, s.state[i], lo, hi, scale, &s.buf64)
	case tensor.Float32:
		updateElems(s.cfg, s.t, p, g, s.state[i], lo, hi, scale, &s.buf32)
	default:
		return fmt.Errorf("%w: parameter %d has dtype %v", ErrSolver, i, p.Dtype())
	}
	return nil
}

// updateElems is UpdateRange on elements [lo, hi) of tensors of T.
func updateElems[T float32 | float64](c SolverConfig, t int, p, g *tensor.Dense, st []*tensor.Dense, lo, hi int, scale float64, buf *[]T) {
	ss := make([][]T, len(st))
	for j := range st {
		ss[j] = elems[T](st[j])[lo:hi]
	}
	UpdateSlice(c, t, elems[T](p)[lo:hi], elems[T](g)[lo:hi], ss, scale, buf)
}

// elems returns the elements of a tensor of T (a scalar's too).
func elems[T float32 | float64](t *tensor.Dense) []T {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return any(t.Float32s()).([]T)
	}
	return any(t.Float64s()).([]T)
}

// UpdateSlice applies update t (counted from 1) of solver cfg to the
// elements p, with gradient scale·g and state st (one slice per slot of
// Solver.Slots, each as long as p): what Update does to those elements,
// except clipping by norm, which needs the whole gradient (check
// Solver.Shardable). buf holds clamped gradients between calls. It is for
// executors that keep parameters in their own memory and shard the
// update (ShardStepper).
func UpdateSlice[T float32 | float64](cfg SolverConfig, t int, p, g []T, st [][]T, scale float64, buf *[]T) {
	gr, sc := clipped(SolverConfig{ClipValue: cfg.ClipValue}, g, scale, buf)
	update(cfg, t, p, gr, st, sc)
}

// clipped applies the configured clipping to the gradient scale·g: it
// returns the gradient and the scale for update, g itself when only the
// scale changes, a copy in buf when values are clamped.
func clipped[T float32 | float64](c SolverConfig, g []T, scale float64, buf *[]T) ([]T, float64) {
	if c.ClipNorm > 0 {
		var ss float64
		for _, v := range g {
			ss += float64(v) * float64(v)
		}
		if n := math.Sqrt(ss) * math.Abs(scale); n > c.ClipNorm {
			scale *= c.ClipNorm / n
		}
	}
	if !(c.ClipValue > 0) {
		return g, scale
	}
	if cap(*buf) < len(g) {
		*buf = make([]T, len(g))
	}
	out := (*buf)[:len(g)]
	sc, clip := T(scale), T(c.ClipValue)
	for i, v := range g {
		out[i] = max(-clip, min(clip, v*sc))
	}
	return out, 1
}

func update[T float32 | float64](c SolverConfig, t int, p, g []T, st [][]T, scale float64) {
	sc := T(scale)
	wd := T(c.WeightDecay)
	if c.Kind == SolverAdamW {
		wd = 0 // decoupled: applied to the parameter below
	}
	lr := T(c.LearnRate)
	if c.Schedule != ScheduleConstant {
		lr = T(c.RateAt(t))
	}
	grad := func(i int) T {
		gi := g[i] * sc
		if wd != 0 {
			gi += wd * p[i]
		}
		return gi
	}
	switch c.Kind {
	case SolverSGD, SolverNesterov:
		if c.Momentum == 0 {
			if wd == 0 && sc == 1 {
				// p − lr·g, as (−lr)·g + 1·p rounds it: the same bits, on
				// vector kernels.
				gemm.AddScaled(p, g, -lr, 1)
				return
			}
			for i := range p {
				p[i] -= lr * grad(i)
			}
			return
		}
		mu := T(c.Momentum)
		v := st[0][:len(p)]
		if c.Kind == SolverNesterov {
			if p32, ok := any(p).([]float32); ok && wd == 0 {
				// The same expression, rounded alike, on vector kernels.
				gemm.Nesterov32(p32, any(g).([]float32), any(v).([]float32), float32(lr), float32(mu), float32(sc))
				return
			}
			for i := range p {
				gi := grad(i)
				v[i] = mu*v[i] + gi
				p[i] -= lr * (gi + mu*v[i])
			}
			return
		}
		if p32, ok := any(p).([]float32); ok {
			// The same expression, rounded alike, on vector kernels.
			if wd == 0 {
				gemm.Momentum32(p32, any(g).([]float32), any(v).([]float32), float32(lr), float32(mu), float32(sc), -1)
			} else {
				gemm.MomentumWD32(p32, any(g).([]float32), any(v).([]float32), float32(lr), float32(mu), float32(sc), float32(wd))
			}
			return
		}
		for i := range p {
			v[i] = mu*v[i] + grad(i)
			p[i] -= lr * v[i]
		}
	case SolverAdam, SolverAdamW:
		b1, b2, eps := T(c.Beta1), T(c.Beta2), T(c.Eps)
		c1 := T(1 - math.Pow(c.Beta1, float64(t)))
		c2 := T(1 - math.Pow(c.Beta2, float64(t)))
		m, v := st[0][:len(p)], st[1][:len(p)]
		if c.Kind == SolverAdamW && c.WeightDecay != 0 {
			decay := 1 - lr*T(c.WeightDecay)
			for i := range p {
				p[i] *= decay
			}
		}
		if p32, ok := any(p).([]float32); ok && wd == 0 {
			// The same expressions, rounded alike, on vector kernels
			// (AdamW's decay is applied above).
			gemm.Adam32(p32, any(g).([]float32), any(m).([]float32), any(v).([]float32), gemm.AdamConsts{
				Scale: float32(sc), Decay: 1, B1: float32(b1), B2: float32(b2),
				C1: float32(c1), C2: float32(c2), LR: float32(lr), Eps: float32(eps)})
			return
		}
		for i := range p {
			gi := grad(i)
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			mh := m[i] / c1
			vh := v[i] / c2
			p[i] -= lr * mh / (T(math.Sqrt(float64(vh))) + eps)
		}
	case SolverRMSProp:
		rho, eps := T(c.Rho), T(c.Eps)
		cache := st[0][:len(p)]
		for i := range p {
			gi := grad(i)
			cache[i] = rho*cache[i] + (1-rho)*gi*gi
			p[i] -= lr * gi / (T(math.Sqrt(float64(cache[i]))) + eps)
		}
	}
}

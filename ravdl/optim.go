package ravdl

import (
	"github.com/rookery-ml/rookery/exec"
)

// Optimizer is an optimiser with its hyper-parameters, its learning-rate
// schedule and its gradient clipping. It is applied on the executors,
// each to the parameters of its own part (see exec.SolverConfig), so
// training across parts updates exactly as in one process. Schedules
// count steps (mini-batches) across the epochs of one Fit; each Fit
// starts the count at 1. Remote providers apply all of it: the
// rookery.v1 wire format carries the whole solver configuration.
type Optimizer struct {
	cfg exec.SolverConfig
}

// SGD is stochastic gradient descent with (heavy-ball) momentum:
// v ← μ·v + g; w ← w − η·v. Momentum 0 is plain SGD.
func SGD(learnRate, momentum float64) Optimizer {
	return Optimizer{cfg: exec.SGD(learnRate, momentum)}
}

// Nesterov is SGD with Nesterov momentum: v ← μ·v + g;
// w ← w − η·(g + μ·v).
func Nesterov(learnRate, momentum float64) Optimizer {
	return Optimizer{cfg: exec.Nesterov(learnRate, momentum)}
}

// AdamW is Adam with decoupled weight decay λ: w ← w − η·λ·w before each
// Adam update.
func AdamW(learnRate, weightDecay float64) Optimizer {
	return Optimizer{cfg: exec.AdamW(learnRate, weightDecay)}
}

// Adam is Adam with bias correction, β1 = 0.9, β2 = 0.999, ε = 1e-8.
func Adam(learnRate float64) Optimizer { return Optimizer{cfg: exec.Adam(learnRate)} }

// RMSProp is RMSProp with ρ = 0.9, ε = 1e-8.
func RMSProp(learnRate float64) Optimizer { return Optimizer{cfg: exec.RMSProp(learnRate)} }

// WithStepDecay multiplies the learning rate by gamma every `every`
// steps (mini-batches).
func (o Optimizer) WithStepDecay(every int, gamma float64) Optimizer {
	o.cfg.Schedule, o.cfg.StepEvery, o.cfg.StepGamma = exec.ScheduleStep, every, gamma
	return o
}

// WithCosineDecay anneals the learning rate to minRate over steps
// mini-batches along half a cosine, and keeps minRate after.
func (o Optimizer) WithCosineDecay(steps int, minRate float64) Optimizer {
	o.cfg.Schedule, o.cfg.CosineSteps, o.cfg.MinLearnRate = exec.ScheduleCosine, steps, minRate
	return o
}

// WithClipNorm rescales each parameter's gradient so that its L2 norm is
// at most c (per parameter tensor, like Keras' clipnorm).
func (o Optimizer) WithClipNorm(c float64) Optimizer {
	o.cfg.ClipNorm = c
	return o
}

// WithClipValue clamps every gradient element to [−c, c].
func (o Optimizer) WithClipValue(c float64) Optimizer {
	o.cfg.ClipValue = c
	return o
}

// WithL2 adds λ·w to every gradient before the update (L2 regularisation).
func (o Optimizer) WithL2(lambda float64) Optimizer {
	o.cfg.WeightDecay = lambda
	return o
}

// Config is the solver configuration the executors apply.
func (o Optimizer) Config() exec.SolverConfig { return o.cfg }

// Validate reports whether the optimiser can be applied.
func (o Optimizer) Validate() error { return o.cfg.Validate() }

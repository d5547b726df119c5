package ravdl

import (
	"github.com/rookery-ml/rookery/exec"
)

// Optimizer is an optimiser with its hyper-parameters. It is applied on
// the executors, each to the parameters of its own part (see
// exec.SolverConfig), so training across parts updates exactly as in one
// process.
type Optimizer struct {
	cfg exec.SolverConfig
}

// SGD is stochastic gradient descent with (heavy-ball) momentum:
// v ← μ·v + g; w ← w − η·v. Momentum 0 is plain SGD.
func SGD(learnRate, momentum float64) Optimizer {
	return Optimizer{cfg: exec.SGD(learnRate, momentum)}
}

// Adam is Adam with bias correction, β1 = 0.9, β2 = 0.999, ε = 1e-8.
func Adam(learnRate float64) Optimizer { return Optimizer{cfg: exec.Adam(learnRate)} }

// RMSProp is RMSProp with ρ = 0.9, ε = 1e-8.
func RMSProp(learnRate float64) Optimizer { return Optimizer{cfg: exec.RMSProp(learnRate)} }

// WithL2 adds λ·w to every gradient before the update (L2 regularisation).
func (o Optimizer) WithL2(lambda float64) Optimizer {
	o.cfg.WeightDecay = lambda
	return o
}

// Config is the solver configuration the executors apply.
func (o Optimizer) Config() exec.SolverConfig { return o.cfg }

// Validate reports whether the optimiser can be applied.
func (o Optimizer) Validate() error { return o.cfg.Validate() }

package transport

import (
	"fmt"

	"github.com/rookery-ml/rookery/exec"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

func solverToWire(c exec.SolverConfig) *rookeryv1.Solver {
	return &rookeryv1.Solver{
		Kind:        rookeryv1.Solver_Kind(c.Kind),
		LearnRate:   c.LearnRate,
		Momentum:    c.Momentum,
		Beta1:       c.Beta1,
		Beta2:       c.Beta2,
		Rho:         c.Rho,
		Eps:         c.Eps,
		WeightDecay: c.WeightDecay,

		Schedule:     rookeryv1.Solver_Schedule(c.Schedule),
		StepEvery:    int64(c.StepEvery),
		StepGamma:    c.StepGamma,
		CosineSteps:  int64(c.CosineSteps),
		MinLearnRate: c.MinLearnRate,
		ClipNorm:     c.ClipNorm,
		ClipValue:    c.ClipValue,
	}
}

func solverFromWire(s *rookeryv1.Solver) exec.SolverConfig {
	if s == nil {
		return exec.SolverConfig{}
	}
	return exec.SolverConfig{
		Kind:        exec.SolverKind(s.Kind),
		LearnRate:   s.LearnRate,
		Momentum:    s.Momentum,
		Beta1:       s.Beta1,
		Beta2:       s.Beta2,
		Rho:         s.Rho,
		Eps:         s.Eps,
		WeightDecay: s.WeightDecay,

		Schedule:     exec.ScheduleKind(s.Schedule),
		StepEvery:    int(clampInt(s.StepEvery)),
		StepGamma:    s.StepGamma,
		CosineSteps:  int(clampInt(s.CosineSteps)),
		MinLearnRate: s.MinLearnRate,
		ClipNorm:     s.ClipNorm,
		ClipValue:    s.ClipValue,
	}
}

// clampInt keeps a wire count within int32, so that no platform's int
// overflows; SolverConfig.Validate rejects what is out of range, and an
// executor a micro-batch count beyond its limit.
func clampInt(v int64) int64 {
	const max = 1<<31 - 1
	switch {
	case v > max:
		return max
	case v < -max:
		return -max
	}
	return v
}

// specToWire returns the spec without its graph.
func specToWire(s *exec.SessionSpec) *rookeryv1.SessionSpec {
	return &rookeryv1.SessionSpec{
		Part:       int32(s.Part),
		Inputs:     s.Inputs,
		DataInputs: s.DataInputs,
		Outputs:    s.Outputs,
		Loss:       s.Loss,
		HasLoss:    s.HasLoss,
		Solver:     solverToWire(s.Solver),
		EvalMode:   s.EvalMode,

		MicroBatches: int64(s.MicroBatches),
		ExportGrads:  s.ExportGrads,
	}
}

// specFromWire checks the list lengths against the node limit (they cannot
// be longer than the part) and returns the spec without its graph.
func specFromWire(w *rookeryv1.SessionSpec, maxNodes int) (exec.SessionSpec, error) {
	if w == nil {
		return exec.SessionSpec{}, protocolError("open without a spec")
	}
	n := len(w.Inputs) + len(w.DataInputs) + len(w.Outputs)
	if maxNodes >= 0 && n > 3*maxNodes {
		return exec.SessionSpec{}, &LimitError{What: "spec ids", Limit: 3 * int64(maxNodes), Got: int64(n)}
	}
	if w.Solver != nil && (w.Solver.Kind < 0 || w.Solver.Kind > 255) {
		return exec.SessionSpec{}, fmt.Errorf("%w: solver kind %d", exec.ErrSolver, w.Solver.Kind)
	}
	return exec.SessionSpec{
		Part:       int(w.Part),
		Inputs:     w.Inputs,
		DataInputs: w.DataInputs,
		Outputs:    w.Outputs,
		Loss:       w.Loss,
		HasLoss:    w.HasLoss,
		Solver:     solverFromWire(w.Solver),
		EvalMode:   w.EvalMode,

		MicroBatches: int(clampInt(w.MicroBatches)),
		ExportGrads:  w.ExportGrads,
	}, nil
}

package transport

import (
	"reflect"
	"testing"

	"github.com/rookery-ml/rookery/exec"
)

// Every field of a SolverConfig, schedules and clipping included, reaches
// the provider unchanged.
func TestSolverWireRoundTrip(t *testing.T) {
	cfgs := []exec.SolverConfig{
		exec.SGD(0.1, 0.9),
		exec.Adam(0.001),
		exec.RMSProp(0.01),
		{Kind: exec.SolverNesterov, LearnRate: 0.2, Momentum: 0.8, Schedule: exec.ScheduleStep, StepEvery: 7, StepGamma: 0.5, ClipNorm: 1.5},
		{Kind: exec.SolverAdamW, LearnRate: 0.003, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.01,
			Schedule: exec.ScheduleCosine, CosineSteps: 1000, MinLearnRate: 1e-5, ClipValue: 0.25},
	}
	for _, want := range cfgs {
		got := solverFromWire(solverToWire(want))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
}

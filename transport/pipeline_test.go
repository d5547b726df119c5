package transport_test

import (
	"fmt"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// TestPipelineOverGRPC trains the same MLP with the pipeline over
// in-process executors and over the same executors behind gRPC (in memory
// and loopback TCP): losses and parameters must be bit-identical.
func TestPipelineOverGRPC(t *testing.T) {
	const steps = 6
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		for _, micro := range []int{1, 2} {
			for _, cfg := range []exec.SolverConfig{exec.SGD(0.05, 0.9), exec.Adam(0.001)} {
				t.Run(fmt.Sprintf("%v/M=%d/%v", dt, micro, cfg.Kind), func(t *testing.T) {
					m := newMLP(t, dt, 8, 20, 16, 12, 4)
					wantLoss, wantP := m.train(t, []exec.Executor{exec.NewCPU(), exec.NewCPU()}, micro, steps, cfg)
					_, a := startBufconn(t, exec.NewCPU())
					_, b := startTCP(t, exec.NewCPU())
					gotLoss, gotP := m.train(t, []exec.Executor{a, b}, micro, steps, cfg)
					requireSameTraining(t, wantLoss, gotLoss, wantP, gotP)
				})
			}
		}
	}
}

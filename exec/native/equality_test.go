package native_test

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// TestEqualsOneProcess trains the MLP, the CNN and the residual DAG
// across k ≤ 4 parts with M ≤ 4 micro-batches and every solver on the
// native executor, every part lowered (no fallback), against one-process
// Gorgonia training: 1e-9 in float64, 1e-4 in float32.
func TestEqualsOneProcess(t *testing.T) {
	exectest.EqualsOneProcess(t, func(*testing.T) exec.Executor { return native.New(native.WithoutFallback()) })
}

// TestEqualsOneProcessFallback trains the CNN with BatchNorm and Dropout,
// whose parts holding them run on the tape machine and the others
// natively, side by side in one pipeline.
func TestEqualsOneProcessFallback(t *testing.T) {
	var nat, tape atomic.Int64 // parts open in parallel: the report is called concurrently
	quiet := slog.New(slog.NewTextHandler(discard{}, nil))
	exectest.EqualsOneProcess(t, func(*testing.T) exec.Executor {
		return native.New(native.WithLogger(quiet), native.WithReport(func(p native.Placement) {
			if p.Executor == native.Native {
				nat.Add(1)
			} else {
				tape.Add(1)
			}
		}))
	}, exectest.WithModels(exectest.ModelBatchNormCNN))
	if nat.Load() == 0 || tape.Load() == 0 {
		t.Errorf("%d parts ran natively, %d on the tape machine; want some of each", nat.Load(), tape.Load())
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestOpsMatchCPU runs one part per op kind on the native executor
// against the tape-machine executor. Without a fallback it refuses the
// kinds whose Gorgonia gradients are not their derivatives (log2,
// inverse_sqrt, dropout); with one, it runs them on the tape machine.
func TestOpsMatchCPU(t *testing.T) {
	t.Run("lowered", func(t *testing.T) {
		exectest.OpsMatchCPU(t, native.New(native.WithoutFallback()), 1e-12, exectest.WantRefused(func(c exectest.OpCase, err error) error {
			var ue *plan.UnsupportedOpError
			if !errors.As(err, &ue) || !errors.Is(err, plan.ErrUnsupported) || ue.Node != 10 || ue.Kind != c.Op.Kind {
				return fmt.Errorf("got %v, want a *plan.UnsupportedOpError for node 10 (%s)", err, c.Op.Kind)
			}
			return nil
		}, graph.KindLog2, graph.KindInverseSqrt, graph.KindDropout))
	})
	t.Run("fallback", func(t *testing.T) {
		quiet := slog.New(slog.NewTextHandler(discard{}, nil))
		exectest.OpsMatchCPU(t, native.New(native.WithLogger(quiet)), 1e-12)
	})
}

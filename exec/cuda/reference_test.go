package cuda

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

func newReference(opts ...Option) exec.Executor {
	cfg := newConfig(opts)
	return &plan.Executor{Dev: newRefDevice(), MaxMicroBatches: cfg.maxMicroBatches}
}

// TestConformanceReference runs the executor conformance suite on the
// reference device: the plans, the derived gradients and the session
// logic, with every kernel interpreted in Go.
func TestConformanceReference(t *testing.T) {
	exectest.Run(t, func(t *testing.T) exec.Executor { return newReference() })
}

// TestMicroBatchLimit checks that the executor refuses at Open a spec
// asking for more micro-batches than WithMaxMicroBatches allows, the
// default count included, and that its sessions take only the indexes
// their spec asks for.
func TestMicroBatchLimit(t *testing.T) {
	ctx := context.Background()
	e := newReference(WithMaxMicroBatches(4))
	c := opCase{Op: graph.NewOp(graph.KindNeg), In: []graph.Shape{{3, 4}}, Out: graph.Shape{3, 4}}
	for _, micro := range []int{5, 0} {
		spec := c.Spec(t, newRand())
		spec.Part, spec.MicroBatches = 3, micro
		s, err := e.Open(ctx, spec)
		var me *exec.MicroBatchLimitError
		if !errors.As(err, &me) || me.Part != 3 || me.MicroBatches != spec.MicroBatchCount() || me.Limit != 4 {
			t.Errorf("open for %d micro-batches with a limit of 4: got %v, want a *MicroBatchLimitError", spec.MicroBatchCount(), err)
		}
		if s != nil {
			s.Close()
		}
	}
	spec := c.Spec(t, newRand())
	spec.Part, spec.MicroBatches = 3, 3
	s, err := e.Open(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for mb := range 4 {
		_, err := s.Forward(ctx, mb, nil)
		if mb < 3 && err != nil {
			t.Errorf("forward of micro-batch %d of 3: %v", mb, err)
		}
		var oe *exec.OrderError
		if mb == 3 && (!errors.As(err, &oe) || oe.MicroBatch != 3 || oe.Part != 3) {
			t.Errorf("forward of micro-batch 3 of 3: got %v, want an *OrderError", err)
		}
	}
}

// TestEqualsOneProcessReference trains the MLP, the CNN and the residual
// DAG across parts on the reference device against one-process Gorgonia
// training: exec/plan's lowering, derived gradients and solver kernels.
func TestEqualsOneProcessReference(t *testing.T) {
	exectest.EqualsOneProcess(t, func(*testing.T) exec.Executor { return newReference() })
}

// TestEqualsOneProcessFallback trains the CNN with BatchNorm and Dropout
// with the parts that hold them on the CPU executor and the others on
// the reference device, in one pipeline.
func TestEqualsOneProcessFallback(t *testing.T) {
	var fellBack atomic.Int64 // parts open in parallel
	exectest.EqualsOneProcess(t, func(*testing.T) exec.Executor {
		return plan.Fallback(newReference(), exec.NewCPU(), func(int, error) { fellBack.Add(1) })
	}, exectest.WithModels(exectest.ModelBatchNormCNN))
	if fellBack.Load() == 0 {
		t.Error("no part fell back to the CPU executor")
	}
}

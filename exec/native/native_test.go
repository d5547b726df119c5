package native_test

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/exec/plan"
	"gorgonia.org/tensor"
)

// TestConformance runs the executor conformance suite on the native
// executor, on one thread and on several.
func TestConformance(t *testing.T) {
	for _, threads := range []int{1, 3} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			exectest.Run(t, func(t *testing.T) exec.Executor {
				return native.New(native.WithThreads(threads), native.WithoutFallback())
			})
		})
	}
}

// TestGradientsAfterStep checks the accumulators that Step leaves to the
// next Backward to overwrite: they read as zeros after Step, a gradient
// Put then is added to by the next Backward, and two micro-batches add
// up, all as on the tape machine.
func TestGradientsAfterStep(t *testing.T) {
	ctx := context.Background()
	m := exectest.MLP(tensor.Float64, 4, 6, 5, 3)
	spec, feeds := onePart(t, m, exec.SGD(0.1, 0.9), 2, 3)
	w := int64(m.Learn[0].ID())
	run := func(e exec.Executor) []*tensor.Dense {
		s, err := e.Open(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var got []*tensor.Dense
		get := func() {
			g, err := s.Get(ctx, exec.GradName(w))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, g[exec.GradName(w)])
		}
		pass := func(mb int) {
			if _, err := s.Forward(ctx, mb, feeds); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Backward(ctx, mb, nil); err != nil {
				t.Fatal(err)
			}
		}
		get() // nothing yet
		pass(0)
		pass(1)
		get() // two micro-batches
		if err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
		get() // cleared by the step
		put := exectest.Normal(rand.New(rand.NewSource(4)), tensor.Float64, 1, 6, 5)
		if err := s.Put(ctx, exec.GradName(w), put); err != nil {
			t.Fatal(err)
		}
		pass(0)
		get() // what was put, plus a pass
		if err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
		pass(0)
		get() // one pass after a step
		return got
	}
	want, got := run(exec.NewCPU()), run(native.New(native.WithoutFallback()))
	for i := range want {
		if d := exectest.MaxRelDiff(got[i], want[i]); d > 1e-9 {
			t.Errorf("gradient %d differs by %.3g relative:\n got %v\nwant %v", i, d, got[i], want[i])
		}
	}
}

// TestFoldedStep checks plain SGD on one micro-batch a step, where Step
// folds the weight-gradient products into the update (plan.Fold): the
// parameters after each step, and the gradients read or put between a
// Backward and its Step (which make the products run on their own),
// match the tape machine's.
func TestFoldedStep(t *testing.T) {
	ctx := context.Background()
	m := exectest.MLP(tensor.Float64, 4, 6, 5, 3)
	spec, feeds := onePart(t, m, exec.SGD(0.1, 0), 1, 3)
	p, err := plan.Lower(&spec, plan.WithHostKernels())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Fold) == 0 {
		t.Fatal("no weight-gradient product of the MLP is folded")
	}
	var names []string
	for _, n := range m.Learn {
		names = append(names, exec.ParamName(int64(n.ID())))
	}
	w := int64(m.Learn[0].ID())
	run := func(e exec.Executor) []*tensor.Dense {
		s, err := e.Open(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var got []*tensor.Dense
		get := func(names ...string) {
			g, err := s.Get(ctx, names...)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				got = append(got, g[n])
			}
		}
		pass := func() {
			if _, err := s.Forward(ctx, 0, feeds); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Backward(ctx, 0, nil); err != nil {
				t.Fatal(err)
			}
		}
		step := func() {
			if err := s.Step(ctx); err != nil {
				t.Fatal(err)
			}
			get(names...)
		}
		pass()
		step() // folded
		pass()
		get(exec.GradName(w)) // the product runs on its own
		step()
		pass()
		if err := s.Put(ctx, exec.GradName(w), exectest.Normal(rand.New(rand.NewSource(4)), tensor.Float64, 1, 6, 5)); err != nil {
			t.Fatal(err)
		}
		step()
		pass()
		pass() // a second pass before the step: the first one's products are kept
		step()
		return got
	}
	want, got := run(exec.NewCPU()), run(native.New(native.WithoutFallback()))
	for i := range want {
		if d := exectest.MaxRelDiff(got[i], want[i]); d > 1e-9 {
			t.Errorf("value %d differs by %.3g relative", i, d)
		}
	}
}

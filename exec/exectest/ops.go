package exectest

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// OpCase is one op node of the IR applied to learnable operands, in
// float64: Spec makes it a part.
type OpCase struct {
	Op       graph.Op
	In       []graph.Shape // the operands' shapes
	Out      graph.Shape   // the op's
	Positive bool          // operands in (0.5, 2): for log, sqrt, pow, division
	Eval     bool          // the part runs in evaluation mode (SessionSpec.EvalMode)
}

// OpCases is a case for every op kind that exec/plan lowers, with the
// attributes that change its kernels (broadcast axes, transposes,
// reduction axes, padding, strides, dilation, overlapping windows).
func OpCases() []OpCase {
	m := graph.Shape{3, 4}
	var cs []OpCase
	positive := map[graph.OpKind]bool{graph.KindLog: true, graph.KindLog2: true, graph.KindSqrt: true,
		graph.KindInverse: true, graph.KindInverseSqrt: true, graph.KindLog1p: true}
	for _, k := range graph.UnaryKinds() {
		cs = append(cs, OpCase{Op: graph.NewOp(k), In: []graph.Shape{m}, Out: m, Positive: positive[k]})
	}
	for _, k := range []graph.OpKind{graph.KindAdd, graph.KindSub, graph.KindMul, graph.KindDiv, graph.KindPow} {
		cs = append(cs, OpCase{Op: graph.NewOp(k), In: []graph.Shape{m, m}, Out: m, Positive: true})
	}
	for _, k := range []graph.OpKind{graph.KindLt, graph.KindGt, graph.KindLte, graph.KindGte, graph.KindEq, graph.KindNe} {
		cs = append(cs, OpCase{Op: graph.NewOp(k, graph.BoolAttr("ret_same", true)), In: []graph.Shape{m, m}, Out: m})
	}
	cs = append(cs,
		OpCase{Op: graph.NewOp(graph.KindMul), In: []graph.Shape{m, {}}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindSub), In: []graph.Shape{{}, m}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindDiv), In: []graph.Shape{m, {}}, Out: m, Positive: true},
		OpCase{Op: graph.NewOp(graph.KindBroadcastAdd, graph.AxesAttr("right", 0)), In: []graph.Shape{m, {4}}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindBroadcastSub, graph.AxesAttr("left", 0)), In: []graph.Shape{{4}, m}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindBroadcastMul, graph.AxesAttr("left", 1)), In: []graph.Shape{{3}, m}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindBroadcastDiv, graph.AxesAttr("right", 1)), In: []graph.Shape{m, {3}}, Out: m, Positive: true},
		OpCase{Op: graph.NewOp(graph.KindBroadcastPow, graph.AxesAttr("right", 0)), In: []graph.Shape{m, {4}}, Out: m, Positive: true},
		OpCase{Op: graph.NewOp(graph.KindBroadcastGt, graph.AxesAttr("right", 0), graph.BoolAttr("ret_same", true)), In: []graph.Shape{m, {4}}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindBroadcastAdd, graph.AxesAttr("right", 0, 2, 3)), In: []graph.Shape{{2, 3, 4, 5}, {3}}, Out: graph.Shape{2, 3, 4, 5}},
		OpCase{Op: graph.NewOp(graph.KindMatMul), In: []graph.Shape{m, {4, 5}}, Out: graph.Shape{3, 5}},
		OpCase{Op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_a", true)), In: []graph.Shape{{4, 3}, {4, 5}}, Out: graph.Shape{3, 5}},
		OpCase{Op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_b", true)), In: []graph.Shape{m, {5, 4}}, Out: graph.Shape{3, 5}},
		OpCase{Op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_a", true), graph.BoolAttr("trans_b", true)), In: []graph.Shape{{4, 3}, {5, 4}}, Out: graph.Shape{3, 5}},
		OpCase{Op: graph.NewOp(graph.KindMatVec), In: []graph.Shape{m, {4}}, Out: graph.Shape{3}},
		OpCase{Op: graph.NewOp(graph.KindMatVec, graph.BoolAttr("trans_a", true)), In: []graph.Shape{{4, 3}, {4}}, Out: graph.Shape{3}},
		OpCase{Op: graph.NewOp(graph.KindVecDot), In: []graph.Shape{{4}, {4}}, Out: graph.Shape{}},
		OpCase{Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 1)), In: []graph.Shape{m}, Out: graph.Shape{3}},
		OpCase{Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0)), In: []graph.Shape{m}, Out: graph.Shape{4}},
		OpCase{Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 2)), In: []graph.Shape{{2, 3, 4}}, Out: graph.Shape{3}},
		OpCase{Op: graph.NewOp(graph.KindMax, graph.AxesAttr("axes", 1)), In: []graph.Shape{m}, Out: graph.Shape{3}},
		OpCase{Op: graph.NewOp(graph.KindTranspose, graph.AxesAttr("perm", 1, 0)), In: []graph.Shape{m}, Out: graph.Shape{4, 3}},
		OpCase{Op: graph.NewOp(graph.KindTranspose, graph.AxesAttr("perm", 0, 2, 3, 1)), In: []graph.Shape{{2, 3, 4, 5}}, Out: graph.Shape{2, 4, 5, 3}},
		OpCase{Op: graph.NewOp(graph.KindReshape, graph.ShapeAttr("shape", 2, 6)), In: []graph.Shape{m}, Out: graph.Shape{2, 6}},
		OpCase{Op: graph.NewOp(graph.KindSoftmax, graph.IntAttr("axis", -1)), In: []graph.Shape{m}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindConcat, graph.IntAttr("axis", 1)), In: []graph.Shape{m, {3, 2}, m}, Out: graph.Shape{3, 10}},
		OpCase{Op: graph.NewOp(graph.KindConcat, graph.IntAttr("axis", 0)), In: []graph.Shape{{2, 3, 4}, {1, 3, 4}}, Out: graph.Shape{3, 3, 4}},
		OpCase{Op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 1), graph.IntAttr("start", 1), graph.IntAttr("end", 4), graph.IntAttr("step", 1)), In: []graph.Shape{m}, Out: graph.Shape{3, 3}},
		OpCase{Op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 0), graph.IntAttr("start", 0), graph.IntAttr("end", 5), graph.IntAttr("step", 2)), In: []graph.Shape{{5, 2, 3}}, Out: graph.Shape{2, 2, 3}},
		OpCase{Op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 1), graph.IntAttr("start", 2), graph.IntAttr("end", 3)), In: []graph.Shape{m}, Out: graph.Shape{3}},
		OpCase{Op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 0), graph.BoolAttr("all", true)), In: []graph.Shape{m}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindSoftmax, graph.IntAttr("axis", 1), graph.BoolAttr("log", true)), In: []graph.Shape{m}, Out: m},
		OpCase{Op: graph.NewOp(graph.KindIm2Col, graph.ShapeAttr("kernel", 3, 2), graph.ShapeAttr("pad", 1, 0), graph.ShapeAttr("stride", 2, 1), graph.ShapeAttr("dilation", 1, 2)),
			In: []graph.Shape{{2, 3, 7, 6}}, Out: graph.Shape{2, 4, 4, 18}},
		OpCase{Op: graph.NewOp(graph.KindMaxPool2D, graph.ShapeAttr("kernel", 3, 3), graph.ShapeAttr("pad", 1, 1, 1, 1), graph.ShapeAttr("stride", 2, 2)),
			In: []graph.Shape{{2, 3, 7, 6}}, Out: graph.Shape{2, 3, 4, 3}},
		// Dropout in evaluation mode (the identity) and with probability 0.
		OpCase{Op: graph.NewOp(graph.KindDropout, graph.FloatAttr("probability", 0.25)), In: []graph.Shape{m}, Out: m, Eval: true},
		OpCase{Op: graph.NewOp(graph.KindDropout, graph.FloatAttr("probability", 0)), In: []graph.Shape{m}, Out: m},
	)
	return cs
}

// Name is the op and its operands' shapes.
func (c OpCase) Name() string {
	if c.Eval {
		return fmt.Sprintf("%v%v/eval", c.Op, c.In)
	}
	return fmt.Sprintf("%v%v", c.Op, c.In)
}

func fill(rng *rand.Rand, s graph.Shape, positive bool) *tensor.Dense {
	var t *tensor.Dense
	if len(s) == 0 {
		t = tensor.New(tensor.FromScalar(0.0))
	} else {
		t = tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(s...))
	}
	d := t.Data()
	set := func(i int, v float64) {
		if f, ok := d.([]float64); ok {
			f[i] = v
		} else {
			t.Set(0, v)
		}
	}
	for i := 0; i < int(s.Size()); i++ {
		v := rng.NormFloat64()
		if positive {
			v = 0.5 + 1.5*rng.Float64()
		}
		set(i, math.Round(v*8)/8+0.01*rng.Float64()) // some ties for max and comparisons
	}
	return t
}

// Spec makes the case one part: loss = Σ op(a, b, …)·r, with learnable
// operands a, b, … (nodes 1, 2, …, filled from rng), the op as node 10
// and a constant r, trained by SGD with momentum 0.5.
func (c OpCase) Spec(t testing.TB, rng *rand.Rand) exec.SessionSpec {
	t.Helper()
	g := graph.New()
	var ins []int64
	for i, s := range c.In {
		id := int64(1 + i)
		if err := g.Add(graph.Node{ID: id, Name: string(rune('a' + i)), Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: s, DType: graph.Float64, Value: fill(rng, s, c.Positive)}); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, id)
	}
	add := func(n graph.Node) {
		t.Helper()
		if err := g.Add(n); err != nil {
			t.Fatalf("%v: %v", n.Op, err)
		}
	}
	add(graph.Node{ID: 10, Role: graph.RoleOp, Op: c.Op, Inputs: ins, Shape: c.Out, DType: graph.Float64})
	add(graph.Node{ID: 11, Role: graph.RoleConstant, Op: graph.NewOp(graph.KindConstant), Shape: c.Out, DType: graph.Float64, Value: fill(rng, c.Out, false)})
	add(graph.Node{ID: 12, Role: graph.RoleOp, Op: graph.NewOp(graph.KindMul), Inputs: []int64{10, 11}, Shape: c.Out, DType: graph.Float64})
	axes := make([]int, len(c.Out))
	for i := range axes {
		axes[i] = i
	}
	loss := int64(12)
	if len(c.Out) > 0 {
		add(graph.Node{ID: 13, Role: graph.RoleOp, Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", axes...)), Inputs: []int64{12}, Shape: graph.Shape{}, DType: graph.Float64})
		loss = 13
	}
	return exec.SessionSpec{Graph: g, Loss: loss, HasLoss: true, Solver: exec.SGD(0.1, 0.5), EvalMode: c.Eval}
}

// OpsOption configures OpsMatchCPU.
type OpsOption func(*opsConfig)

type opsConfig struct {
	refused map[graph.OpKind]func(c OpCase, err error) error
}

// WantRefused says that the executor must refuse, at Open, the cases of
// these kinds (an executor that lowers parts refuses the kinds it does
// not lower rather than run them differently), and that check accepts
// the error it refuses them with: check returns why not, or nil.
func WantRefused(check func(c OpCase, err error) error, kinds ...graph.OpKind) OpsOption {
	return func(o *opsConfig) {
		for _, k := range kinds {
			o.refused[k] = check
		}
	}
}

// OpsMatchCPU runs every case of OpCases as one part on e and on the
// tape-machine executor (exec.NewCPU) side by side, forward, backward and
// one step, and requires the same loss and the same gradients of the
// operands (the SGD velocity after one step) within tol, relative.
func OpsMatchCPU(t *testing.T, e exec.Executor, tol float64, opts ...OpsOption) {
	cfg := opsConfig{refused: map[graph.OpKind]func(OpCase, error) error{}}
	for _, o := range opts {
		o(&cfg)
	}
	ctx := context.Background()
	for _, c := range OpCases() {
		t.Run(c.Name(), func(t *testing.T) {
			spec := c.Spec(t, rand.New(rand.NewSource(4)))
			if check, ok := cfg.refused[c.Op.Kind]; ok {
				s, err := e.Open(ctx, spec)
				if err == nil {
					s.Close()
					t.Fatalf("Open: no error, want %s refused", c.Op.Kind)
				}
				if why := check(c, err); why != nil {
					t.Fatalf("Open: %v", why)
				}
				return
			}
			var losses []float64
			var grads [][]*tensor.Dense
			for _, x := range []exec.Executor{exec.NewCPU(), e} {
				s, err := x.Open(ctx, spec)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				out, err := s.Forward(ctx, 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				losses = append(losses, floats(out[spec.Loss])[0])
				if _, err := s.Backward(ctx, 0, nil); err != nil {
					t.Fatal(err)
				}
				if err := s.Step(ctx); err != nil {
					t.Fatal(err)
				}
				var gs []*tensor.Dense
				for i := range c.In {
					name := exec.StateName(int64(1+i), "velocity")
					got, err := s.Get(ctx, name)
					if err != nil {
						t.Fatal(err)
					}
					gs = append(gs, got[name])
				}
				grads = append(grads, gs)
			}
			if d := math.Abs(losses[1]-losses[0]) / math.Max(1, math.Abs(losses[0])); !(d <= tol) {
				t.Errorf("loss %v, CPU %v", losses[1], losses[0])
			}
			for i := range c.In {
				if d := MaxRelDiff(grads[1][i], grads[0][i]); !(d <= tol) {
					t.Errorf("gradient of operand %d differs by %.3g:\n got %v\nwant %v", i, d, floats(grads[1][i]), floats(grads[0][i]))
				}
			}
		})
	}
}

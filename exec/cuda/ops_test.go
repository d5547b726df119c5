package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// opCase is one op node of the IR applied to learnable operands.
type opCase struct {
	op       graph.Op
	in       []graph.Shape
	out      graph.Shape
	positive bool // operands in (0.5, 2): for log, sqrt, pow, division
}

func opCases() []opCase {
	m := graph.Shape{3, 4}
	var cs []opCase
	positive := map[graph.OpKind]bool{graph.KindLog: true, graph.KindLog2: true, graph.KindSqrt: true,
		graph.KindInverse: true, graph.KindInverseSqrt: true, graph.KindLog1p: true}
	for _, k := range graph.UnaryKinds() {
		cs = append(cs, opCase{op: graph.NewOp(k), in: []graph.Shape{m}, out: m, positive: positive[k]})
	}
	for _, k := range []graph.OpKind{graph.KindAdd, graph.KindSub, graph.KindMul, graph.KindDiv, graph.KindPow} {
		cs = append(cs, opCase{op: graph.NewOp(k), in: []graph.Shape{m, m}, out: m, positive: true})
	}
	for _, k := range []graph.OpKind{graph.KindLt, graph.KindGt, graph.KindLte, graph.KindGte, graph.KindEq, graph.KindNe} {
		cs = append(cs, opCase{op: graph.NewOp(k, graph.BoolAttr("ret_same", true)), in: []graph.Shape{m, m}, out: m})
	}
	cs = append(cs,
		opCase{op: graph.NewOp(graph.KindMul), in: []graph.Shape{m, {}}, out: m},
		opCase{op: graph.NewOp(graph.KindSub), in: []graph.Shape{{}, m}, out: m},
		opCase{op: graph.NewOp(graph.KindDiv), in: []graph.Shape{m, {}}, out: m, positive: true},
		opCase{op: graph.NewOp(graph.KindBroadcastAdd, graph.AxesAttr("right", 0)), in: []graph.Shape{m, {4}}, out: m},
		opCase{op: graph.NewOp(graph.KindBroadcastSub, graph.AxesAttr("left", 0)), in: []graph.Shape{{4}, m}, out: m},
		opCase{op: graph.NewOp(graph.KindBroadcastMul, graph.AxesAttr("left", 1)), in: []graph.Shape{{3}, m}, out: m},
		opCase{op: graph.NewOp(graph.KindBroadcastDiv, graph.AxesAttr("right", 1)), in: []graph.Shape{m, {3}}, out: m, positive: true},
		opCase{op: graph.NewOp(graph.KindBroadcastPow, graph.AxesAttr("right", 0)), in: []graph.Shape{m, {4}}, out: m, positive: true},
		opCase{op: graph.NewOp(graph.KindBroadcastGt, graph.AxesAttr("right", 0), graph.BoolAttr("ret_same", true)), in: []graph.Shape{m, {4}}, out: m},
		opCase{op: graph.NewOp(graph.KindBroadcastAdd, graph.AxesAttr("right", 0, 2, 3)), in: []graph.Shape{{2, 3, 4, 5}, {3}}, out: graph.Shape{2, 3, 4, 5}},
		opCase{op: graph.NewOp(graph.KindMatMul), in: []graph.Shape{m, {4, 5}}, out: graph.Shape{3, 5}},
		opCase{op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_a", true)), in: []graph.Shape{{4, 3}, {4, 5}}, out: graph.Shape{3, 5}},
		opCase{op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_b", true)), in: []graph.Shape{m, {5, 4}}, out: graph.Shape{3, 5}},
		opCase{op: graph.NewOp(graph.KindMatMul, graph.BoolAttr("trans_a", true), graph.BoolAttr("trans_b", true)), in: []graph.Shape{{4, 3}, {5, 4}}, out: graph.Shape{3, 5}},
		opCase{op: graph.NewOp(graph.KindMatVec), in: []graph.Shape{m, {4}}, out: graph.Shape{3}},
		opCase{op: graph.NewOp(graph.KindMatVec, graph.BoolAttr("trans_a", true)), in: []graph.Shape{{4, 3}, {4}}, out: graph.Shape{3}},
		opCase{op: graph.NewOp(graph.KindVecDot), in: []graph.Shape{{4}, {4}}, out: graph.Shape{}},
		opCase{op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 1)), in: []graph.Shape{m}, out: graph.Shape{3}},
		opCase{op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0)), in: []graph.Shape{m}, out: graph.Shape{4}},
		opCase{op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 2)), in: []graph.Shape{{2, 3, 4}}, out: graph.Shape{3}},
		opCase{op: graph.NewOp(graph.KindMax, graph.AxesAttr("axes", 1)), in: []graph.Shape{m}, out: graph.Shape{3}},
		opCase{op: graph.NewOp(graph.KindTranspose, graph.AxesAttr("perm", 1, 0)), in: []graph.Shape{m}, out: graph.Shape{4, 3}},
		opCase{op: graph.NewOp(graph.KindTranspose, graph.AxesAttr("perm", 0, 2, 3, 1)), in: []graph.Shape{{2, 3, 4, 5}}, out: graph.Shape{2, 4, 5, 3}},
		opCase{op: graph.NewOp(graph.KindReshape, graph.ShapeAttr("shape", 2, 6)), in: []graph.Shape{m}, out: graph.Shape{2, 6}},
		opCase{op: graph.NewOp(graph.KindSoftmax, graph.IntAttr("axis", -1)), in: []graph.Shape{m}, out: m},
		opCase{op: graph.NewOp(graph.KindConcat, graph.IntAttr("axis", 1)), in: []graph.Shape{m, {3, 2}, m}, out: graph.Shape{3, 10}},
		opCase{op: graph.NewOp(graph.KindConcat, graph.IntAttr("axis", 0)), in: []graph.Shape{{2, 3, 4}, {1, 3, 4}}, out: graph.Shape{3, 3, 4}},
		opCase{op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 1), graph.IntAttr("start", 1), graph.IntAttr("end", 4), graph.IntAttr("step", 1)), in: []graph.Shape{m}, out: graph.Shape{3, 3}},
		opCase{op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 0), graph.IntAttr("start", 0), graph.IntAttr("end", 5), graph.IntAttr("step", 2)), in: []graph.Shape{{5, 2, 3}}, out: graph.Shape{2, 2, 3}},
		opCase{op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 1), graph.IntAttr("start", 2), graph.IntAttr("end", 3)), in: []graph.Shape{m}, out: graph.Shape{3}},
		opCase{op: graph.NewOp(graph.KindSlice, graph.IntAttr("axis", 0), graph.BoolAttr("all", true)), in: []graph.Shape{m}, out: m},
		opCase{op: graph.NewOp(graph.KindSoftmax, graph.IntAttr("axis", 1), graph.BoolAttr("log", true)), in: []graph.Shape{m}, out: m},
		opCase{op: graph.NewOp(graph.KindIm2Col, graph.ShapeAttr("kernel", 3, 2), graph.ShapeAttr("pad", 1, 0), graph.ShapeAttr("stride", 2, 1), graph.ShapeAttr("dilation", 1, 2)),
			in: []graph.Shape{{2, 3, 7, 6}}, out: graph.Shape{2, 4, 4, 18}},
		opCase{op: graph.NewOp(graph.KindMaxPool2D, graph.ShapeAttr("kernel", 3, 3), graph.ShapeAttr("pad", 1, 1, 1, 1), graph.ShapeAttr("stride", 2, 2)),
			in: []graph.Shape{{2, 3, 7, 6}}, out: graph.Shape{2, 3, 4, 3}},
	)
	return cs
}

func (c opCase) name() string {
	return fmt.Sprintf("%v%v", c.op, c.in)
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

// opSpec builds the part loss = Σ op(a, b)·r with learnable operands.
func (c opCase) spec(t *testing.T, rng *rand.Rand) exec.SessionSpec {
	t.Helper()
	g := graph.New()
	var ins []int64
	for i, s := range c.in {
		id := int64(1 + i)
		if err := g.Add(graph.Node{ID: id, Name: string(rune('a' + i)), Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: s, DType: graph.Float64, Value: fill(rng, s, c.positive)}); err != nil {
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
	add(graph.Node{ID: 10, Role: graph.RoleOp, Op: c.op, Inputs: ins, Shape: c.out, DType: graph.Float64})
	add(graph.Node{ID: 11, Role: graph.RoleConstant, Op: graph.NewOp(graph.KindConstant), Shape: c.out, DType: graph.Float64, Value: fill(rng, c.out, false)})
	add(graph.Node{ID: 12, Role: graph.RoleOp, Op: graph.NewOp(graph.KindMul), Inputs: []int64{10, 11}, Shape: c.out, DType: graph.Float64})
	axes := make([]int, len(c.out))
	for i := range axes {
		axes[i] = i
	}
	loss := int64(12)
	if len(c.out) > 0 {
		add(graph.Node{ID: 13, Role: graph.RoleOp, Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", axes...)), Inputs: []int64{12}, Shape: graph.Shape{}, DType: graph.Float64})
		loss = 13
	}
	return exec.SessionSpec{Graph: g, Loss: loss, HasLoss: true, Solver: exec.SGD(0.1, 0.5)}
}

// TestOpsMatchCPU lowers each supported op kind (in float64) into a small
// part, runs it forward and backward on the reference device and on the
// CPU executor, and compares the loss and the gradients of the operands.
func TestOpsMatchCPU(t *testing.T) { opsMatchCPU(t, newReference(), 1e-12) }

// opsMatchCPU runs every op case on e, within tol of the CPU executor.
func opsMatchCPU(t *testing.T, dev exec.Executor, tol float64) {
	ctx := context.Background()
	for _, c := range opCases() {
		t.Run(c.name(), func(t *testing.T) {
			spec := c.spec(t, rand.New(rand.NewSource(4)))
			if k := c.op.Kind; k == graph.KindLog2 || k == graph.KindInverseSqrt {
				// Gorgonia's gradients of these are not the derivative:
				// the part must be refused, not run differently.
				_, err := dev.Open(ctx, spec)
				var ue *UnsupportedOpError
				if !errors.As(err, &ue) || !errors.Is(err, ErrUnsupported) || ue.Node != 10 || ue.Kind != k {
					t.Fatalf("Open: got %v, want an *UnsupportedOpError for node 10 (%s)", err, k)
				}
				return
			}
			var losses []float64
			var grads [][]*tensor.Dense
			for _, e := range []exec.Executor{exec.NewCPU(), dev} {
				s, err := e.Open(ctx, spec)
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
				for i := range c.in {
					name := exec.StateName(int64(1+i), "velocity")
					got, err := s.Get(ctx, name)
					if err != nil {
						t.Fatal(err)
					}
					gs = append(gs, got[name])
				}
				grads = append(grads, gs)
			}
			if d := math.Abs(losses[1]-losses[0]) / math.Max(1, math.Abs(losses[0])); d > tol {
				t.Errorf("loss %v, CPU %v", losses[1], losses[0])
			}
			for i := range c.in {
				if d := maxRelDiff(grads[1][i], grads[0][i]); d > tol || math.IsNaN(d) {
					t.Errorf("gradient of operand %d differs by %.3g:\n got %v\nwant %v", i, d, floats(grads[1][i]), floats(grads[0][i]))
				}
			}
		})
	}
}

func newRand() *rand.Rand { return rand.New(rand.NewSource(4)) }

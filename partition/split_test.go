package partition_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/synth"
	"github.com/rookery-ml/rookery/partition"
)

// testGraphs are the graphs every plan test runs on: chains, residual and
// two-branch blocks, random layered DAGs, and small hand-made shapes.
func testGraphs(t testing.TB) map[string]*graph.Graph {
	t.Helper()
	out := map[string]*graph.Graph{}
	for _, spec := range []string{
		"mlp:layers=6,width=8,batch=2",
		"mlp:layers=40,width=16,batch=4",
		"resnet:blocks=1,width=8,batch=2",
		"resnet:blocks=9,width=16,batch=4",
		"random-dag:nodes=60,seed=1,width=6",
		"random-dag:nodes=400,seed=2,width=12",
		"random-dag:nodes=3000,seed=3",
	} {
		g, err := synth.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		out[spec] = g
	}
	out["diamond"] = diamond(t)
	out["tied-weights"] = tiedWeights(t)
	return out
}

// diamond is x → a, b (in parallel) → a+b → tanh, with a shared input.
func diamond(t testing.TB) *graph.Graph {
	b := newBuilder(t)
	x := b.input("x", 2, 4)
	w1 := b.learnable("w1", 4, 4)
	w2 := b.learnable("w2", 4, 4)
	a := b.op("a", graph.NewOp(graph.KindMatMul), graph.Shape{2, 4}, x, w1)
	c := b.op("c", graph.NewOp(graph.KindMatMul), graph.Shape{2, 4}, x, w2)
	a2 := b.op("a2", graph.NewOp(graph.KindTanh), graph.Shape{2, 4}, a)
	s := b.op("sum", graph.NewOp(graph.KindAdd), graph.Shape{2, 4}, a2, c)
	b.op("out", graph.NewOp(graph.KindSigmoid), graph.Shape{2, 4}, s)
	return b.g
}

// tiedWeights uses one weight matrix in every layer of a 12-layer chain,
// so any split shares it.
func tiedWeights(t testing.TB) *graph.Graph {
	b := newBuilder(t)
	h := b.input("x", 4, 8)
	w := b.learnable("w", 8, 8)
	for i := 0; i < 12; i++ {
		h = b.op(fmt.Sprint("mm", i), graph.NewOp(graph.KindMatMul), graph.Shape{4, 8}, h, w)
		h = b.op(fmt.Sprint("act", i), graph.NewOp(graph.KindTanh), graph.Shape{4, 8}, h)
	}
	return b.g
}

type builder struct {
	t  testing.TB
	g  *graph.Graph
	id int64
}

func newBuilder(t testing.TB) *builder { return &builder{t: t, g: graph.New()} }

func (b *builder) add(n graph.Node) int64 {
	b.t.Helper()
	n.ID = b.id
	n.DType = graph.Float64
	b.id++
	if err := b.g.Add(n); err != nil {
		b.t.Fatal(err)
	}
	return n.ID
}

func (b *builder) input(name string, r, c int) int64 {
	return b.add(graph.Node{Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{r, c}, Name: name})
}

func (b *builder) learnable(name string, r, c int) int64 {
	return b.add(graph.Node{Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{r, c}, Name: name})
}

func (b *builder) op(name string, op graph.Op, s graph.Shape, in ...int64) int64 {
	return b.add(graph.Node{Role: graph.RoleOp, Op: op, Inputs: in, Shape: s, Name: name})
}

var methods = []partition.Method{partition.MethodAuto, partition.MethodChain, partition.MethodOrder,
	partition.MethodMultilevel, partition.MethodBaseline}

// TestEveryPlanValidates splits every test graph with every method, k and
// capacity set, and checks each plan against the graph.
func TestEveryPlanValidates(t *testing.T) {
	for name, g := range testGraphs(t) {
		for _, k := range []int{1, 2, 3, 4, 8} {
			for _, caps := range [][]float64{nil, unequal(k)} {
				for _, m := range methods {
					opts := []partition.Option{partition.WithMethod(m), partition.WithMaxImbalance(0.1)}
					if caps != nil {
						opts = append(opts, partition.WithCapacities(caps))
					}
					plan, err := partition.Split(g, k, opts...)
					if errors.Is(err, partition.ErrInfeasible) {
						continue // too few working nodes, or one too heavy, for this k
					}
					if err != nil {
						t.Fatalf("%s k=%d caps=%v %v: %v", name, k, caps, m, err)
					}
					if err := plan.Validate(g); err != nil {
						t.Fatalf("%s k=%d caps=%v %v: %v", name, k, caps, m, err)
					}
					if plan.K() != k {
						t.Fatalf("%s: %d parts, want %d", name, plan.K(), k)
					}
					if m == partition.MethodAuto && plan.CutBytes() > plan.BaselineCutBytes && plan.Imbalance() <= 0.1+1e-9 {
						base, _ := partition.Baseline(g, k, opts[1:]...)
						if base.Imbalance() <= 0.1+1e-9 {
							t.Errorf("%s k=%d caps=%v: cut %d above the baseline's %d", name, k, caps, plan.CutBytes(), plan.BaselineCutBytes)
						}
					}
				}
			}
		}
	}
}

func unequal(k int) []float64 {
	c := make([]float64, k)
	for i := range c {
		c[i] = float64(1 + (i*7)%4)
	}
	return c
}

// TestCapacityWeighting checks that parts get work in proportion to their
// capacities, within the imbalance bound, on graphs fine-grained enough to
// allow it.
func TestCapacityWeighting(t *testing.T) {
	graphs := map[string]string{
		"chain":      "mlp:layers=300,width=16,batch=4",
		"residual":   "resnet:blocks=120,width=16,batch=4",
		"random-dag": "random-dag:nodes=6000,seed=4,width=32",
	}
	for name, spec := range graphs {
		g, err := synth.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, caps := range [][]float64{{1, 1}, {1, 3}, {1, 1, 2}, {4, 1, 2, 1}, {1, 2, 3, 4, 5, 6}} {
			for _, eps := range []float64{0.03, 0.1} {
				plan, err := partition.Split(g, len(caps), partition.WithCapacities(caps), partition.WithMaxImbalance(eps))
				if err != nil {
					t.Fatalf("%s caps=%v: %v", name, caps, err)
				}
				if err := plan.Validate(g); err != nil {
					t.Fatal(err)
				}
				if got := plan.Imbalance(); got > eps+1e-9 {
					t.Errorf("%s caps=%v eps=%v: imbalance %.4f (%v)", name, caps, eps, got, plan.Method)
				}
				total := plan.TotalCost()
				var sum float64
				for _, c := range caps {
					sum += c
				}
				for i, p := range plan.Parts {
					if want := caps[i] / sum; math.Abs(p.Share-want) > 1e-12 {
						t.Errorf("part %d share %v, want %v", i, p.Share, want)
					}
					if p.Cost > (1+eps)*p.Share*total*(1+1e-12) {
						t.Errorf("%s caps=%v: part %d costs %.0f, over (1+%v)×%.4f×%.0f", name, caps, i, p.Cost, eps, p.Share, total)
					}
				}
			}
		}
	}
}

func TestInfeasible(t *testing.T) {
	mlp, err := synth.MLP(2, 4, 2) // 6 working nodes
	if err != nil {
		t.Fatal(err)
	}
	heavy := newBuilder(t)
	x := heavy.input("x", 8, 64)
	w := heavy.learnable("w", 64, 64)
	big := heavy.op("big", graph.NewOp(graph.KindMatMul), graph.Shape{8, 64}, x, w)
	heavy.op("small", graph.NewOp(graph.KindNeg), graph.Shape{8, 64}, big)
	heavy.op("small2", graph.NewOp(graph.KindAbs), graph.Shape{8, 64}, big)

	tests := []struct {
		name   string
		g      *graph.Graph
		k      int
		opts   []partition.Option
		reason partition.InfeasibleReason
		node   int64
	}{
		{"k=0", mlp, 0, nil, partition.ReasonBadK, 0},
		{"k<0", mlp, -3, nil, partition.ReasonBadK, 0},
		{"more parts than working nodes", mlp, 7, nil, partition.ReasonTooFewNodes, 0},
		{"one node heavier than a part", heavy.g, 2, nil, partition.ReasonHeavyNode, big},
		{"heavier than the largest part", heavy.g, 3, []partition.Option{partition.WithCapacities([]float64{1, 2, 1})}, partition.ReasonHeavyNode, big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := partition.Split(tc.g, tc.k, tc.opts...)
			var ie *partition.InfeasibleError
			if !errors.As(err, &ie) {
				t.Fatalf("got %v, want an *InfeasibleError", err)
			}
			if !errors.Is(err, partition.ErrInfeasible) {
				t.Errorf("errors.Is(%v, ErrInfeasible) is false", err)
			}
			if ie.Reason != tc.reason || ie.K != tc.k {
				t.Errorf("got reason %v k %d, want %v k %d", ie.Reason, ie.K, tc.reason, tc.k)
			}
			if tc.reason == partition.ReasonHeavyNode && (ie.Node != tc.node || ie.Cost <= ie.Limit) {
				t.Errorf("got node %d cost %v limit %v, want node %d heavier than the limit", ie.Node, ie.Cost, ie.Limit, tc.node)
			}
		})
	}
	// A heavy node that fits when the bound is loose enough.
	if _, err := partition.Split(heavy.g, 2, partition.WithMaxImbalance(1)); err != nil {
		t.Errorf("with eps = 1: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	g, err := synth.MLP(4, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		k     int
		opt   partition.Option
		index int
	}{
		{"too few capacities", 3, partition.WithCapacities([]float64{1, 1}), -1},
		{"too many capacities", 2, partition.WithCapacities([]float64{1, 1, 1}), -1},
		{"zero", 3, partition.WithCapacities([]float64{1, 0, 1}), 1},
		{"negative", 2, partition.WithCapacities([]float64{-1, 1}), 0},
		{"NaN", 2, partition.WithCapacities([]float64{1, math.NaN()}), 1},
		{"Inf", 2, partition.WithCapacities([]float64{math.Inf(1), 1}), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := partition.Split(g, tc.k, tc.opt)
			var ce *partition.CapacityError
			if !errors.As(err, &ce) || !errors.Is(err, partition.ErrInvalidOption) {
				t.Fatalf("got %v, want a *CapacityError", err)
			}
			if ce.Index != tc.index || ce.K != tc.k {
				t.Errorf("got index %d k %d, want %d %d", ce.Index, ce.K, tc.index, tc.k)
			}
		})
	}
	for _, eps := range []float64{-0.1, math.NaN(), math.Inf(1)} {
		_, err := partition.Split(g, 2, partition.WithMaxImbalance(eps))
		var oe *partition.OptionError
		if !errors.As(err, &oe) || !errors.Is(err, partition.ErrInvalidOption) {
			t.Errorf("eps %v: got %v, want an *OptionError", eps, err)
		}
	}
}

func TestDeterministic(t *testing.T) {
	for name, g := range testGraphs(t) {
		for _, k := range []int{2, 5} {
			for _, seed := range []int64{0, 42} {
				opts := []partition.Option{partition.WithSeed(seed), partition.WithCapacities(unequal(k))}
				a, errA := partition.Split(g, k, opts...)
				b, errB := partition.Split(g, k, opts...)
				if errA != nil || errB != nil {
					if fmt.Sprint(errA) != fmt.Sprint(errB) {
						t.Fatalf("%s: errors differ: %v, %v", name, errA, errB)
					}
					continue
				}
				if !reflect.DeepEqual(a, b) {
					t.Errorf("%s k=%d seed=%d: two runs gave different plans", name, k, seed)
				}
			}
		}
	}
}

// TestFreeNodesFollowConsumers checks that inputs and parameters sit with
// the first part that uses them, so that only shared ones are sent.
func TestFreeNodesFollowConsumers(t *testing.T) {
	for name, g := range testGraphs(t) {
		plan, err := partition.Split(g, 3, partition.WithMaxImbalance(0.1), partition.WithMethod(partition.MethodMultilevel))
		if err != nil {
			continue
		}
		part := plan.Assignment()
		for _, n := range g.Nodes() {
			if !n.IsInput() && !n.IsConstant() {
				continue
			}
			first := math.MaxInt
			for _, c := range g.Consumers(n.ID) {
				first = min(first, part[c])
			}
			if first != math.MaxInt && part[n.ID] != first {
				t.Errorf("%s: %s %d in part %d, its first consumer is in part %d", name, n.Role, n.ID, part[n.ID], first)
			}
		}
	}
}

func TestSharedParams(t *testing.T) {
	g := tiedWeights(t)
	plan, err := partition.Split(g, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Validate(g); err != nil {
		t.Fatal(err)
	}
	w, _ := g.ByName("w")
	want := []partition.SharedParam{{Param: w.ID, Owner: 0, Users: []int{1, 2}}}
	if !reflect.DeepEqual(plan.SharedParams, want) {
		t.Fatalf("shared params %+v, want %+v", plan.SharedParams, want)
	}
	if plan.Parts[0].ParamBytes != 8*8*8 || plan.Parts[1].ParamBytes != 0 {
		t.Errorf("param bytes %d, %d; want %d, 0", plan.Parts[0].ParamBytes, plan.Parts[1].ParamBytes, 8*8*8)
	}
	sent := 0
	for _, c := range plan.Cuts {
		if c.Producer == w.ID {
			sent++
			if c.From != 0 || c.Bytes != 8*8*8 {
				t.Errorf("cut %+v", c)
			}
		}
	}
	if sent != 2 {
		t.Errorf("the weight is sent %d times, want 2", sent)
	}
}

// TestValidateCatchesBrokenPlans breaks a good plan in each way Validate
// looks for.
func TestValidateCatchesBrokenPlans(t *testing.T) {
	g, err := synth.Parse("resnet:blocks=3,width=8,batch=2")
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() *partition.Plan {
		p, err := partition.Split(g, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Validate(g); err != nil {
			t.Fatal(err)
		}
		return p
	}
	breakers := map[string]func(p *partition.Plan){
		"node in two parts": func(p *partition.Plan) { p.Parts[1].Nodes = append(p.Parts[1].Nodes, p.Parts[0].Nodes[0]) },
		"node in no part":   func(p *partition.Plan) { p.Parts[2].Nodes = p.Parts[2].Nodes[1:] },
		"unknown node":      func(p *partition.Plan) { p.Parts[0].Nodes = append(p.Parts[0].Nodes, 1<<40) },
		"empty part":        func(p *partition.Plan) { p.Parts[2].Nodes = nil },
		"cycle": func(p *partition.Plan) {
			last := p.Parts[2].Nodes[len(p.Parts[2].Nodes)-1]
			p.Parts[2].Nodes = p.Parts[2].Nodes[:len(p.Parts[2].Nodes)-1]
			p.Parts[0].Nodes = append(p.Parts[0].Nodes, last)
		},
		"order not a permutation": func(p *partition.Plan) { p.Order = []int{0, 0, 1} },
		"order against edges":     func(p *partition.Plan) { p.Order = []int{2, 1, 0} },
		"wrong cost":              func(p *partition.Plan) { p.Parts[1].Cost++ },
		"wrong param bytes":       func(p *partition.Plan) { p.Parts[1].ParamBytes++ },
		"wrong share":             func(p *partition.Plan) { p.Parts[1].Share = 0.5 },
		"missing cut":             func(p *partition.Plan) { p.Cuts = p.Cuts[1:] },
		"wrong cut bytes":         func(p *partition.Plan) { p.Cuts[0].Bytes++ },
		"no parts":                func(p *partition.Plan) { p.Parts = nil },
	}
	for name, brk := range breakers {
		p := fresh()
		brk(p)
		err := p.Validate(g)
		var pe *partition.PlanError
		if !errors.As(err, &pe) || !errors.Is(err, partition.ErrInvalidPlan) {
			t.Errorf("%s: Validate gave %v, want a *PlanError", name, err)
		}
	}
}

// TestHugeCosts splits a chain whose FLOPs add up to more than an int64
// holds.
func TestHugeCosts(t *testing.T) {
	b := newBuilder(t)
	const d = 1 << 20
	h := b.input("x", d, d)
	for i := 0; i < 8; i++ {
		w := b.learnable(fmt.Sprint("w", i), d, d)
		h = b.op(fmt.Sprint("mm", i), graph.NewOp(graph.KindMatMul), graph.Shape{d, d}, h, w)
	}
	if c := b.g.Cost(h).FLOPs; c < 1<<60 {
		t.Fatalf("a matmul costs %d FLOPs; the test needs more", c)
	}
	plan, err := partition.Split(b.g, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Validate(b.g); err != nil {
		t.Fatal(err)
	}
	if plan.Imbalance() > 1e-9 {
		t.Errorf("imbalance %v, want 0", plan.Imbalance())
	}
}

// TestManySmallDAGs splits many small random graphs: every plan validates,
// stays within the bound when the baseline does, and never sends more than
// the baseline then.
func TestManySmallDAGs(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		g, err := synth.RandomDAG(20+int(seed*7%200), seed, 2+int(seed%9), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []int{2, 3, 5, 9} {
			caps := unequal(k)
			plan, err := partition.Split(g, k, partition.WithCapacities(caps), partition.WithSeed(seed))
			if errors.Is(err, partition.ErrInfeasible) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := plan.Validate(g); err != nil {
				t.Fatalf("seed %d k=%d: %v", seed, k, err)
			}
			base, err := partition.Baseline(g, k, partition.WithCapacities(caps))
			if err != nil {
				t.Fatal(err)
			}
			if err := base.Validate(g); err != nil {
				t.Fatalf("seed %d k=%d: baseline: %v", seed, k, err)
			}
			if base.Imbalance() <= partition.DefaultMaxImbalance+1e-9 {
				if plan.Imbalance() > partition.DefaultMaxImbalance+1e-9 {
					t.Errorf("seed %d k=%d: imbalance %.4f, the baseline's is %.4f", seed, k, plan.Imbalance(), base.Imbalance())
				}
				if plan.CutBytes() > base.CutBytes() {
					t.Errorf("seed %d k=%d: cut %d, the baseline's is %d", seed, k, plan.CutBytes(), base.CutBytes())
				}
			}
			if plan.BaselineCutBytes != base.CutBytes() {
				t.Errorf("seed %d k=%d: plan says the baseline sends %d, it sends %d", seed, k, plan.BaselineCutBytes, base.CutBytes())
			}
		}
	}
}

package partition

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rookery-ml/rookery/graph"
)

// objective is what a split of a sequence achieves, in the terms bestSplit
// optimises.
type objective struct {
	within     bool    // every segment within its limit
	bottleneck float64 // largest weight/capacity
	cut        int64   // bytes across the boundaries
}

// better reports whether a beats b: within the limits first and then fewer
// bytes; outside them, smaller bottleneck and then fewer bytes.
func (a objective) better(b objective) bool {
	if a.within != b.within {
		return a.within
	}
	if !a.within && a.bottleneck != b.bottleneck {
		return a.bottleneck < b.bottleneck
	}
	return a.cut < b.cut
}

func evalSplit(w, cut []int64, caps []float64, maxCost []int64, ends []int32) objective {
	o := objective{within: true}
	start := 0
	for p, e := range ends {
		var c int64
		for i := start; i < int(e); i++ {
			c += w[i]
		}
		if c > maxCost[p] {
			o.within = false
		}
		o.bottleneck = math.Max(o.bottleneck, float64(c)/caps[p])
		if p < len(ends)-1 {
			o.cut += cut[e-1]
		}
		start = int(e)
	}
	return o
}

// bruteForce tries every split of w into k non-empty segments that each
// hold a positive weight.
func bruteForce(w, cut []int64, caps []float64, maxCost []int64) (objective, bool) {
	m, k := len(w), len(caps)
	var best objective
	found := false
	ends := make([]int32, k)
	var rec func(p, start int)
	rec = func(p, start int) {
		if p == k-1 {
			ends[p] = int32(m)
			if !hasWork(w[start:]) {
				return
			}
			o := evalSplit(w, cut, caps, maxCost, ends)
			if !found || o.better(best) {
				best, found = o, true
			}
			return
		}
		for e := start + 1; e <= m-(k-1-p); e++ {
			if !hasWork(w[start:e]) {
				continue
			}
			ends[p] = int32(e)
			rec(p+1, e)
		}
	}
	rec(0, 0)
	return best, found
}

func hasWork(w []int64) bool {
	for _, x := range w {
		if x > 0 {
			return true
		}
	}
	return false
}

// TestBestSplitMatchesBruteForce checks the dynamic program against every
// possible split on random chains of up to 14 nodes and k up to 5, with
// zero-cost nodes, ties, heavy nodes, unequal capacities and bounds from
// exact balance (eps = 0: pure minimum bottleneck, ties by bytes) to loose.
func TestBestSplitMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 14))
	capSets := [][]float64{nil, {1, 2, 1, 3, 1}, {0.5, 1, 4, 1, 2}, {3, 1, 1, 1, 1}}
	cases := 0
	for iter := 0; iter < 6000; iter++ {
		m := 1 + rng.IntN(14)
		w := make([]int64, m)
		cut := make([]int64, m)
		for i := range w {
			switch r := rng.IntN(10); {
			case r < 2:
				w[i] = 0
			case r < 3:
				w[i] = 50 + rng.Int64N(100)
			default:
				w[i] = 1 + rng.Int64N(12)
			}
			cut[i] = rng.Int64N(6) * 8
		}
		sq := newSeq(w, cut)
		k := 1 + rng.IntN(5)
		if k > len(sq.posAt) {
			continue
		}
		caps := capSets[rng.IntN(len(capSets))]
		if caps == nil {
			caps = []float64{1, 1, 1, 1, 1}
		}
		caps = caps[:k]
		eps := []float64{0, 0.03, 0.1, 0.5}[rng.IntN(4)]
		maxCost := capsWithin(sq.S[m], limits(sq.S[m], shares(caps), eps))

		want, ok := bruteForce(w, cut, caps, maxCost)
		if !ok {
			t.Fatalf("brute force found no split of %v into %d", w, k)
		}
		ends, mc, within := bestSplit(sq, maxCost, caps)
		got := evalSplit(w, cut, caps, maxCost, ends)
		if within != got.within {
			t.Fatalf("w=%v k=%d: bestSplit says within=%v, its split is within=%v", w, k, within, got.within)
		}
		if got.within != want.within || got.cut != want.cut || (!want.within && got.bottleneck != want.bottleneck) {
			t.Fatalf("w=%v cut=%v caps=%v eps=%v k=%d: got %+v (ends %v, caps %v), brute force %+v",
				w, cut, caps, eps, k, got, ends, mc, want)
		}
		cases++
	}
	if cases < 4000 {
		t.Fatalf("only %d cases ran", cases)
	}
}

// TestMinBottleneckMatchesBruteForce checks the bottleneck search alone,
// including capacities so unequal that the relaxed greedy answer leaves a
// part idle.
func TestMinBottleneckMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	for iter := 0; iter < 3000; iter++ {
		m := 1 + rng.IntN(12)
		w := make([]int64, m)
		for i := range w {
			if rng.IntN(4) > 0 {
				w[i] = 1 + rng.Int64N(30)
			}
		}
		sq := newSeq(w, make([]int64, m))
		k := 1 + rng.IntN(5)
		if k > len(sq.posAt) {
			continue
		}
		caps := make([]float64, k)
		for i := range caps {
			caps[i] = []float64{0.01, 0.5, 1, 2, 100}[rng.IntN(5)]
		}
		none := make([]int64, k)
		for i := range none {
			none[i] = -1
		}
		want, _ := bruteForce(w, make([]int64, m), caps, none)
		if got := sq.minBottleneck(caps); got != want.bottleneck {
			t.Fatalf("w=%v caps=%v: minBottleneck %v, brute force %v", w, caps, got, want.bottleneck)
		}
	}
}

// TestSplitChainGraphsMatchBruteForce builds random chains of real IR ops
// (matmul with its weight, bias add, tanh) and checks that Split's plan is
// as good as the best of every acyclic assignment: on a chain those are
// the non-decreasing labelings of its ops, with each free source placed
// with its consumer.
func TestSplitChainGraphsMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for iter := 0; iter < 300; iter++ {
		g := randomChain(t, rng, 1+rng.IntN(14))
		pr := newProblem(g)
		k := 1 + rng.IntN(5)
		if k > pr.positive {
			continue
		}
		caps := []float64{1, 2, 1, 3, 2}[:k]
		eps := []float64{0, 0.03, 0.2}[rng.IntN(3)]
		plan, err := Split(g, k, WithCapacities(caps), WithMaxImbalance(eps))
		if err != nil {
			var ie *InfeasibleError
			if errors.As(err, &ie) && ie.Reason == ReasonHeavyNode {
				continue
			}
			t.Fatal(err)
		}
		if err := plan.Validate(g); err != nil {
			t.Fatal(err)
		}
		if k > 1 && plan.Method != MethodChain && plan.Method != MethodBaseline {
			t.Fatalf("chain split with %v", plan.Method)
		}
		maxCost := capsWithin(pr.total, limits(pr.total, shares(caps), eps))
		want := bruteForceGraph(pr, k, caps, maxCost)
		got := objectiveOf(pr, plan, caps, maxCost)
		if got.within != want.within || got.cut != want.cut || (!want.within && got.bottleneck != want.bottleneck) {
			t.Fatalf("iter %d k=%d eps=%v: plan %+v, brute force %+v", iter, k, eps, got, want)
		}
	}
}

func objectiveOf(pr *problem, plan *Plan, caps []float64, maxCost []int64) objective {
	o := objective{within: true, cut: plan.CutBytes()}
	for p, pt := range plan.Parts {
		if int64(pt.Cost) > maxCost[p] {
			o.within = false
		}
		o.bottleneck = math.Max(o.bottleneck, pt.Cost/caps[p])
	}
	return o
}

func bruteForceGraph(pr *problem, k int, caps []float64, maxCost []int64) objective {
	n := len(pr.core)
	labels := make([]int32, n)
	var best objective
	found := false
	var rec func(i int, from int32)
	rec = func(i int, from int32) {
		if i == n {
			all := pr.place(labels)
			loads := pr.loads(all, k)
			o := objective{within: true, cut: pr.cut(all, k)}
			for p, l := range loads {
				if l == 0 {
					return
				}
				if l > maxCost[p] {
					o.within = false
				}
				o.bottleneck = math.Max(o.bottleneck, float64(l)/caps[p])
			}
			if !found || o.better(best) {
				best, found = o, true
			}
			return
		}
		for p := from; p < int32(k); p++ {
			labels[i] = p
			rec(i+1, p)
		}
	}
	rec(0, 0)
	return best
}

// randomChain builds x → op → op → ... with n ops, each a matmul with a
// fresh weight of random width, a bias add, or a tanh.
func randomChain(t *testing.T, rng *rand.Rand, n int) *graph.Graph {
	t.Helper()
	g := graph.New()
	id := int64(0)
	add := func(nd graph.Node) int64 {
		nd.ID = id
		nd.DType = graph.Float64
		id++
		if err := g.Add(nd); err != nil {
			t.Fatal(err)
		}
		return nd.ID
	}
	batch, d := 2, 1+rng.IntN(4)
	h := add(graph.Node{Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{batch, d}})
	for i := 0; i < n; i++ {
		switch rng.IntN(3) {
		case 0:
			d2 := 1 + rng.IntN(6)
			w := add(graph.Node{Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{d, d2}})
			h = add(graph.Node{Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{h, w}, Shape: graph.Shape{batch, d2}})
			d = d2
		case 1:
			b := add(graph.Node{Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{1, d}})
			h = add(graph.Node{Role: graph.RoleOp, Op: graph.NewOp(graph.KindBroadcastAdd, graph.AxesAttr("right", 0)),
				Inputs: []int64{h, b}, Shape: graph.Shape{batch, d}})
		default:
			h = add(graph.Node{Role: graph.RoleOp, Op: graph.NewOp(graph.KindTanh), Inputs: []int64{h}, Shape: graph.Shape{batch, d}})
		}
	}
	return g
}

package partition

import (
	"math"
	"math/rand/v2"
	"sync"

	"github.com/rookery-ml/rookery/graph"
)

// Split cuts g into k parts that can run as a pipeline (the graph of parts
// is acyclic), each doing work in proportion to its provider's capacity,
// with as few bytes crossing between parts as it can find.
//
// The objective: keep every part within the imbalance bound
// (WithMaxImbalance, default 3%), and among such plans send the fewest
// bytes. When node granularity makes the bound unreachable, the bound
// becomes the smallest imbalance that a split of the graph's order
// reaches. When the graph's work forms a chain, the plan is optimal
// (MethodChain); otherwise Split keeps the best of a split of the graph's
// order refined at its boundaries (MethodOrder), the multilevel
// partitioner (MethodMultilevel), and the baseline (MethodBaseline). So it
// never sends more than the baseline does, unless the baseline breaks the
// bound that the plan keeps.
//
// Split returns an *InfeasibleError when k is less than 1, when fewer than
// k nodes have work, or when one node alone is heavier than the largest
// part may be; a *CapacityError or *OptionError for bad options.
func Split(g *graph.Graph, k int, opts ...Option) (*Plan, error) {
	cfg, err := newConfig(k, opts)
	if err != nil {
		return nil, err
	}
	s, err := newSolver(newProblem(g), cfg)
	if err != nil {
		return nil, err
	}
	return s.solve(), nil
}

// Baseline splits g the way Raven's scheduler did, for comparison: the
// graph's node order cut into contiguous chunks by cumulative cost, with
// no regard for traffic. It is Split with WithMethod(MethodBaseline).
func Baseline(g *graph.Graph, k int, opts ...Option) (*Plan, error) {
	return Split(g, k, append(opts, WithMethod(MethodBaseline))...)
}

type solver struct {
	pr     *problem
	cfg    *config
	k      int
	shares []float64
	// maxCost is the most FLOPs each part may hold: the imbalance bound, or
	// the smallest bottleneck a split of the graph's order reaches when the
	// bound cannot be met.
	maxCost []int64
}

// rand returns the random source of one job of the solver, seeded from
// WithSeed and the job's number, so that jobs running side by side draw
// the same numbers whatever the scheduling.
func (s *solver) rand(job uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(s.cfg.seed), 0x243f6a8885a308d3+job))
}

func newSolver(pr *problem, cfg *config) (*solver, error) {
	k := len(cfg.caps)
	if pr.positive < k {
		return nil, &InfeasibleError{K: k, Reason: ReasonTooFewNodes, Working: pr.positive}
	}
	sh := shares(cfg.caps)
	lim := limits(pr.total, sh, cfg.eps)
	largest := 0.0
	for _, l := range lim {
		largest = math.Max(largest, l)
	}
	if h := pr.heaviest; float64(pr.flops[h]) > largest {
		return nil, &InfeasibleError{K: k, Reason: ReasonHeavyNode, Node: pr.g.Nodes()[h].ID,
			Cost: float64(pr.raw[h]), Limit: math.Ldexp(largest, int(pr.shift))}
	}
	return &solver{
		pr:      pr,
		cfg:     cfg,
		k:       k,
		shares:  sh,
		maxCost: capsWithin(pr.total, lim),
	}, nil
}

// candidate is an assignment of every node (by position) and how good it
// is.
type candidate struct {
	parts    []int32
	method   Method
	feasible bool    // every part within maxCost
	cut      int64   // bytes sent
	imb      float64 // imbalance
	valid    bool    // every part has work (checked for the baseline only)
}

func (s *solver) judge(parts []int32, m Method) candidate {
	loads := s.pr.loads(parts, s.k)
	c := candidate{parts: parts, method: m, feasible: true, cut: s.pr.cut(parts, s.k), imb: math.Inf(-1)}
	for p, l := range loads {
		if l > s.maxCost[p] {
			c.feasible = false
		}
		c.imb = math.Max(c.imb, float64(l)/(s.shares[p]*float64(s.pr.total))-1)
	}
	return c
}

// better orders candidates: within the bound first, then fewer bytes, then
// less imbalance; outside the bound, less imbalance first.
func better(a, b candidate) bool {
	if a.feasible != b.feasible {
		return a.feasible
	}
	if a.feasible {
		if a.cut != b.cut {
			return a.cut < b.cut
		}
		return a.imb < b.imb
	}
	if a.imb != b.imb {
		return a.imb < b.imb
	}
	return a.cut < b.cut
}

func (s *solver) solve() *Plan {
	pr, k := s.pr, s.k
	method := s.cfg.method
	if method == MethodBaseline || k == 1 {
		base := s.baseline()
		m := MethodBaseline
		if k == 1 {
			m = MethodOrder
		}
		plan := buildPlan(pr, base, s.cfg, m)
		plan.BaselineCutBytes = pr.cut(base, k)
		return plan
	}

	fine := pr.finest()
	identity := make([]int32, fine.n)
	for i := range identity {
		identity[i] = int32(i)
	}
	ordered := s.splitOrder(fine, identity, true)
	chain := fine.isChain()

	// The candidates share nothing they write, so they run side by side;
	// which one wins does not depend on how they are scheduled.
	jobs := []func() candidate{func() candidate {
		base := s.baseline()
		c := s.judge(base, MethodBaseline)
		c.valid = baselineValid(pr, base, k)
		return c
	}}
	if method == MethodChain || (method == MethodAuto && chain) {
		jobs = append(jobs, func() candidate { return s.judge(pr.place(ordered), MethodChain) })
	}
	if method == MethodOrder || (method == MethodAuto && !chain) {
		jobs = append(jobs, func() candidate {
			parts := s.vcycle(fine, append([]int32(nil), ordered...), s.rand(1))
			return s.judge(pr.place(parts), MethodOrder)
		})
	}
	if method == MethodMultilevel || (method == MethodAuto && !chain) {
		jobs = append(jobs, func() candidate { return s.judge(pr.place(s.multilevel(fine, s.rand(2))), MethodMultilevel) })
	}
	cands := make([]candidate, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cands[i] = job()
		}()
	}
	wg.Wait()

	baseline := cands[0]
	cands = cands[1:]
	if method == MethodAuto && baseline.valid {
		cands = append(cands, baseline)
	}
	best := cands[0]
	for _, c := range cands[1:] {
		if better(c, best) {
			best = c
		}
	}
	plan := buildPlan(pr, best.parts, s.cfg, best.method)
	plan.BaselineCutBytes = baseline.cut
	return plan
}

const refineRounds = 8

// splitOrder splits a topological order of l's nodes into contiguous
// segments with bestSplit and returns the assignment by node. With bound
// set it also fixes s.maxCost to the caps bestSplit used.
func (s *solver) splitOrder(l *level, order []int32, bound bool) []int32 {
	w := make([]int64, len(order))
	for i, v := range order {
		w[i] = l.w[v]
	}
	ends, mc, _ := bestSplit(newSeq(w, l.boundaryCuts(order)), s.maxCost, s.cfg.caps)
	if bound {
		s.maxCost = mc
	}
	parts := make([]int32, l.n)
	start := 0
	for p, e := range ends {
		for i := start; i < int(e); i++ {
			parts[order[i]] = int32(p)
		}
		start = int(e)
	}
	return parts
}

// bestSplit splits a sequence into len(caps) contiguous segments. When
// segments within maxCost exist it returns, among them, one that sends the
// fewest bytes across its boundaries (within is true). Otherwise it
// returns, among the splits with the smallest bottleneck (largest segment
// weight over its part's capacity), one that sends the fewest bytes. mc is
// the per-part weight limit the returned split was chosen under.
func bestSplit(sq *seq, maxCost []int64, caps []float64) (ends []int32, mc []int64, within bool) {
	if ends, _, ok := sq.split(maxCost); ok {
		return ends, maxCost, true
	}
	b := sq.minBottleneck(caps)
	mc = capsBottleneck(sq.S[sq.m], caps, b)
	ends, _, _ = sq.split(mc)
	return ends, mc, false
}

// baselineValid reports whether every part of a baseline assignment has
// work, which is what makes it a plan.
func baselineValid(pr *problem, parts []int32, k int) bool {
	for _, l := range pr.loads(parts, k) {
		if l == 0 {
			return false
		}
	}
	return true
}

// baseline cuts the graph's node order into contiguous chunks by cost: a
// node goes to the part whose stretch of the cumulative target holds the
// midpoint of the node's own stretch of the cumulative cost. A part is
// never skipped while it has no work, and a new part starts when the
// nodes with work left are just enough for the parts left.
func (s *solver) baseline() []int32 {
	pr, k := s.pr, s.k
	bounds := make([]float64, k) // bounds[p]: cumulative target where part p starts
	acc := 0.0
	for p := 1; p < k; p++ {
		acc += s.shares[p-1]
		bounds[p] = acc * float64(pr.total)
	}
	parts := make([]int32, len(pr.flops))
	p, got, left := 0, false, pr.positive
	var a int64
	for i, f := range pr.flops {
		b := a + f
		mid := (float64(a) + float64(b)) / 2
		if got && p < k-1 && (mid >= bounds[p+1] || (f > 0 && left <= k-1-p)) {
			p++
			got = false
		}
		if f > 0 {
			got = true
			left--
		}
		parts[i] = int32(p)
		a = b
	}
	return parts
}

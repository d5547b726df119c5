package partition

import (
	"fmt"
	"math"
	"sort"

	"github.com/rookery-ml/rookery/graph"
)

// Plan is a split of a graph into parts that run as a pipeline: the graph
// of parts is acyclic, Order lists the parts in a topological order, and
// Cuts lists every value that one part sends to another.
type Plan struct {
	Parts []Part
	// Order is a topological order of the parts: every edge of the graph
	// goes from a part to the same part or one later in Order.
	Order []int
	// Cuts lists each value sent between parts: a producer's output once
	// for each other part that consumes it, sorted by the producer's place
	// in the graph's order, then by the receiving part.
	Cuts []Cut
	// SharedParams lists the learnable parameters that parts other than
	// their owner consume: the owner sends the value and receives the
	// gradients back. Sorted like Cuts.
	SharedParams []SharedParam
	// Capacities are the relative capacities the plan was made for, one per
	// part.
	Capacities []float64
	// MaxImbalance is the bound that was asked for. Imbalance may exceed it
	// when node granularity does not allow it.
	MaxImbalance float64
	// Method is the algorithm whose plan was kept.
	Method Method
	// BaselineCutBytes is what the baseline (MethodBaseline) sends for the
	// same graph, k and capacities, for comparison.
	BaselineCutBytes int64
}

// Part is one piece of a plan: the nodes one provider runs.
type Part struct {
	Nodes      []int64 // IR ids, in the graph's order
	Cost       float64 // FLOPs of the nodes, from the graph's cost model
	Share      float64 // the part's share of the work: its capacity over the sum
	ParamBytes int64   // bytes of the learnable parameters the part owns
}

// Cut is one value sent from one part to another.
type Cut struct {
	Producer int64 // the node whose output is sent
	From     int   // the producer's part
	To       int   // the consuming part
	Bytes    int64 // the output's size
}

// SharedParam is a learnable parameter that several parts consume. It
// belongs to Owner, the first of them, which sends it to Users and
// accumulates the gradients they return.
type SharedParam struct {
	Param int64
	Owner int
	Users []int
}

// K is the number of parts.
func (p *Plan) K() int { return len(p.Parts) }

// TotalCost is the work of all parts together.
func (p *Plan) TotalCost() float64 {
	var t float64
	for _, q := range p.Parts {
		t += q.Cost
	}
	return t
}

// Imbalance is the largest relative excess of a part over its share of the
// work: max over parts of cost_i / (share_i × total) − 1. Zero is perfect
// balance.
func (p *Plan) Imbalance() float64 {
	total := p.TotalCost()
	if total == 0 || len(p.Parts) == 0 {
		return 0
	}
	worst := math.Inf(-1)
	for _, q := range p.Parts {
		s := q.Share
		if s == 0 {
			s = 1 / float64(len(p.Parts))
		}
		worst = math.Max(worst, q.Cost/(s*total)-1)
	}
	return worst
}

// CutBytes is the number of bytes sent between parts on one forward pass.
func (p *Plan) CutBytes() int64 {
	var b int64
	for _, c := range p.Cuts {
		b += c.Bytes
	}
	return b
}

// PartNodes returns the nodes of every part, the parts in order: the
// parts argument of exec.NewPipeline.
func (p *Plan) PartNodes() [][]int64 {
	out := make([][]int64, len(p.Parts))
	for i, q := range p.Parts {
		out[i] = q.Nodes
	}
	return out
}

// Assignment maps every node id to its part.
func (p *Plan) Assignment() map[int64]int {
	n := 0
	for _, q := range p.Parts {
		n += len(q.Nodes)
	}
	m := make(map[int64]int, n)
	for i, q := range p.Parts {
		for _, id := range q.Nodes {
			m[id] = i
		}
	}
	return m
}

// buildPlan turns an assignment of every node (by graph position) into a
// Plan.
func buildPlan(pr *problem, parts []int32, cfg *config, m Method) *Plan {
	k := len(cfg.caps)
	sh := shares(cfg.caps)
	nodes := pr.g.Nodes()
	plan := &Plan{
		Parts:        make([]Part, k),
		Order:        make([]int, k),
		Capacities:   append([]float64(nil), cfg.caps...),
		MaxImbalance: cfg.eps,
		Method:       m,
	}
	counts := make([]int, k)
	for _, q := range parts {
		counts[q]++
	}
	costs := make([]float64, k)
	for i := range plan.Parts {
		plan.Order[i] = i
		plan.Parts[i].Nodes = make([]int64, 0, counts[i])
		plan.Parts[i].Share = sh[i]
	}
	for i, q := range parts {
		pt := &plan.Parts[q]
		pt.Nodes = append(pt.Nodes, nodes[i].ID)
		costs[q] += float64(pr.raw[i])
		if nodes[i].IsLearnable() {
			pt.ParamBytes += pr.param[i]
		}
	}
	for i := range plan.Parts {
		plan.Parts[i].Cost = costs[i]
	}
	plan.Cuts, plan.SharedParams = cutsOf(pr.g, parts, k, pr.out)
	return plan
}

// cutsOf lists the cuts and shared parameters of an assignment by position.
func cutsOf(g *graph.Graph, parts []int32, k int, out []int64) ([]Cut, []SharedParam) {
	nodes := g.Nodes()
	stamp := make([]int32, k)
	for i := range stamp {
		stamp[i] = -1
	}
	var cuts []Cut
	var shared []SharedParam
	var to []int
	for i := range parts {
		own := parts[i]
		to = to[:0]
		for _, c := range g.ConsumerPositions(i) {
			if q := parts[c]; q != own && stamp[q] != int32(i) {
				stamp[q] = int32(i)
				to = append(to, int(q))
			}
		}
		if len(to) == 0 {
			continue
		}
		sort.Ints(to)
		for _, q := range to {
			cuts = append(cuts, Cut{Producer: nodes[i].ID, From: int(own), To: q, Bytes: out[i]})
		}
		if nodes[i].IsLearnable() {
			shared = append(shared, SharedParam{Param: nodes[i].ID, Owner: int(own), Users: append([]int(nil), to...)})
		}
	}
	return cuts, shared
}

// Validate checks that the plan fits g: every node in exactly one part, no
// part empty, Order a topological order of the graph of parts (which is
// therefore acyclic), costs, shares and parameter bytes as the cost model
// says, and Cuts and SharedParams exactly what the assignment sends. It
// returns a *PlanError.
func (p *Plan) Validate(g *graph.Graph) error {
	k := len(p.Parts)
	if k == 0 {
		return &PlanError{Part: -1, Reason: "no parts"}
	}
	if len(p.Order) != k {
		return &PlanError{Part: -1, Reason: fmt.Sprintf("order lists %d parts, plan has %d", len(p.Order), k)}
	}
	rank := make([]int, k)
	for i := range rank {
		rank[i] = -1
	}
	for r, q := range p.Order {
		if q < 0 || q >= k || rank[q] >= 0 {
			return &PlanError{Part: -1, Reason: fmt.Sprintf("order %v is not a permutation of the parts", p.Order)}
		}
		rank[q] = r
	}
	if p.Capacities != nil && len(p.Capacities) != k {
		return &PlanError{Part: -1, Reason: fmt.Sprintf("%d capacities for %d parts", len(p.Capacities), k)}
	}
	nodes := g.Nodes()
	parts := make([]int32, len(nodes))
	for i := range parts {
		parts[i] = -1
	}
	for q, pt := range p.Parts {
		if len(pt.Nodes) == 0 {
			return &PlanError{Part: q, Reason: "empty"}
		}
		for _, id := range pt.Nodes {
			i := g.Pos(id)
			if i < 0 {
				return &PlanError{Part: q, Node: id, HasNode: true, Reason: "not in the graph"}
			}
			if parts[i] >= 0 {
				return &PlanError{Part: q, Node: id, HasNode: true, Reason: fmt.Sprintf("also in part %d", parts[i])}
			}
			parts[i] = int32(q)
		}
	}
	costs := make([]float64, k) // summed in graph order, as buildPlan does
	params := make([]int64, k)
	out := make([]int64, len(nodes))
	for i := range nodes {
		if parts[i] < 0 {
			return &PlanError{Part: -1, Node: nodes[i].ID, HasNode: true, Reason: "in no part"}
		}
		c := g.Cost(nodes[i].ID)
		costs[parts[i]] += float64(max(c.FLOPs, 0))
		out[i] = c.OutputBytes
		if nodes[i].IsLearnable() {
			params[parts[i]] += c.ParamBytes
		}
		for _, in := range nodes[i].Inputs {
			from, to := parts[g.Pos(in)], parts[i]
			if rank[from] > rank[to] {
				return &PlanError{Part: int(to), Node: nodes[i].ID, HasNode: true,
					Reason: fmt.Sprintf("consumes node %d of part %d, which comes later in the order: the graph of parts has a cycle", in, from)}
			}
		}
	}
	var sumCaps float64
	for _, c := range p.Capacities {
		sumCaps += c
	}
	for q, pt := range p.Parts {
		if want := costs[q]; math.Abs(pt.Cost-want) > 1e-9*math.Max(1, want) {
			return &PlanError{Part: q, Reason: fmt.Sprintf("cost %v, the nodes cost %v", pt.Cost, want)}
		}
		if pt.ParamBytes != params[q] {
			return &PlanError{Part: q, Reason: fmt.Sprintf("param bytes %d, the parameters hold %d", pt.ParamBytes, params[q])}
		}
		if p.Capacities != nil {
			if want := p.Capacities[q] / sumCaps; math.Abs(pt.Share-want) > 1e-12 {
				return &PlanError{Part: q, Reason: fmt.Sprintf("share %v, capacities give %v", pt.Share, want)}
			}
		}
	}
	cuts, shared := cutsOf(g, parts, k, out)
	if len(cuts) != len(p.Cuts) {
		return &PlanError{Part: -1, Reason: fmt.Sprintf("%d cuts listed, the assignment has %d", len(p.Cuts), len(cuts))}
	}
	for i := range cuts {
		if cuts[i] != p.Cuts[i] {
			return &PlanError{Part: -1, Node: cuts[i].Producer, HasNode: true, Reason: fmt.Sprintf("cut %d is %+v, want %+v", i, p.Cuts[i], cuts[i])}
		}
	}
	if len(shared) != len(p.SharedParams) {
		return &PlanError{Part: -1, Reason: fmt.Sprintf("%d shared parameters listed, the assignment has %d", len(p.SharedParams), len(shared))}
	}
	for i, s := range shared {
		got := p.SharedParams[i]
		if got.Param != s.Param || got.Owner != s.Owner || fmt.Sprint(got.Users) != fmt.Sprint(s.Users) {
			return &PlanError{Part: -1, Node: s.Param, HasNode: true, Reason: fmt.Sprintf("shared parameter listed as %+v, want %+v", got, s)}
		}
	}
	return nil
}

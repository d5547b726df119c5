package partition

import "math/rand/v2"

// hierarchy is a stack of ever coarser graphs: levels[0] is the graph being
// split, up[i] maps the nodes of levels[i] to those of levels[i+1].
type hierarchy struct {
	levels []*level
	up     [][]int32
}

// coarsenLimits returns the heaviest a cluster may get, small enough that
// the coarsest split can be balanced to within about half the slack the
// bound leaves, and the size at which coarsening stops.
func (s *solver) coarsenLimits() (maxW int64, stop int) {
	minShare := s.shares[0]
	for _, sh := range s.shares {
		minShare = min(minShare, sh)
	}
	slack := 1.0
	for p, c := range s.maxCost {
		slack = min(slack, float64(c)/(s.shares[p]*float64(s.pr.total))-1)
	}
	slack = max(slack, 0.01)
	return max(int64(slack/2*minShare*float64(s.pr.total)), 1), max(30*s.k, 200)
}

// coarsen builds the hierarchy above l. With part set, clusters stay within
// a part, and parts[i] is part carried to levels[i].
func (s *solver) coarsen(l *level, part []int32, rng *rand.Rand) (h hierarchy, parts [][]int32) {
	maxW, stop := s.coarsenLimits()
	h.levels = []*level{l}
	parts = [][]int32{part}
	for len(h.levels) < 64 {
		cur := h.levels[len(h.levels)-1]
		if cur.n <= stop {
			break
		}
		next, up := cur.coarsen(maxW, part, rng)
		if next == nil {
			break
		}
		h.levels = append(h.levels, next)
		h.up = append(h.up, up)
		if part != nil {
			cp := make([]int32, next.n)
			for v, p := range part {
				cp[up[v]] = p
			}
			part = cp
			parts = append(parts, part)
		}
	}
	return h, parts
}

// uncoarsen projects an assignment of the coarsest level back down to
// levels[0], refining it at every level on the way, and returns it.
func (s *solver) uncoarsen(h hierarchy, part []int32) []int32 {
	for i := len(h.levels) - 2; i >= 0; i-- {
		fp := make([]int32, h.levels[i].n)
		for v := range fp {
			fp[v] = part[h.up[i][v]]
		}
		part = fp
		newRefiner(h.levels[i], s.k, part, s.maxCost).refine(refineRounds)
	}
	return part
}

// multilevel partitions a level: it coarsens it acyclically until it is
// small or stops shrinking, splits the coarsest graph along the better of
// two topological orders, and projects the assignment back level by level,
// refining it at each. It returns the assignment of l's nodes.
func (s *solver) multilevel(l *level, rng *rand.Rand) []int32 {
	h, _ := s.coarsen(l, nil, rng)
	coarsest := h.levels[len(h.levels)-1]
	return s.uncoarsen(h, s.initial(coarsest))
}

// vcycle improves an assignment of l's nodes: it coarsens l keeping
// clusters within parts, so the assignment carries over to every level,
// then refines it from the coarsest level down, where moving one coarse
// node moves a whole cluster. When the nodes near part boundaries are a
// small share of l, only they take part (see band), and a last round of
// refinement runs on the whole of l.
func (s *solver) vcycle(l *level, part []int32, rng *rand.Rand) []int32 {
	b, sel, ok := l.band(part, s.k, bandDepth)
	if !ok {
		return s.vcycleAll(l, part, rng)
	}
	bp := make([]int32, b.n)
	for i, v := range sel {
		bp[i] = part[v]
	}
	bp = s.vcycleAll(b, bp, rng)
	for i, v := range sel {
		part[v] = bp[i]
	}
	newRefiner(l, s.k, part, s.maxCost).refine(refineRounds)
	return part
}

// bandDepth is how many steps from a part boundary vcycle looks.
const bandDepth = 12

func (s *solver) vcycleAll(l *level, part []int32, rng *rand.Rand) []int32 {
	h, parts := s.coarsen(l, part, rng)
	top := len(h.levels) - 1
	newRefiner(h.levels[top], s.k, parts[top], s.maxCost).refine(refineRounds)
	return s.uncoarsen(h, parts[top])
}

// initial splits the coarsest level along its topological order and a
// depth-first order, refines both, and keeps the better.
func (s *solver) initial(l *level) []int32 {
	own := l.order
	if own == nil {
		own = make([]int32, l.n)
		for i := range own {
			own[i] = int32(i)
		}
	}
	var best []int32
	var bestFeasible bool
	var bestCut int64
	for _, order := range [][]int32{own, l.depthFirstOrder()} {
		part := s.splitOrder(l, order, false)
		r := newRefiner(l, s.k, part, s.maxCost)
		r.refine(2 * refineRounds)
		feasible := true
		for p, ld := range r.load {
			if ld > s.maxCost[p] {
				feasible = false
			}
		}
		cut := l.cut(part, s.k)
		if best == nil || (feasible && !bestFeasible) || (feasible == bestFeasible && cut < bestCut) {
			best, bestFeasible, bestCut = part, feasible, cut
		}
	}
	return best
}

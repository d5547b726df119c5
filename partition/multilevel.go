package partition

// multilevel partitions a level: it coarsens it acyclically until it is
// small or stops shrinking, splits the coarsest graph along the better of
// two topological orders, and projects the assignment back level by level,
// refining it at each. It returns the assignment of l's nodes.
func (s *solver) multilevel(l *level) []int32 {
	k := s.k
	minShare := s.shares[0]
	for _, sh := range s.shares {
		minShare = min(minShare, sh)
	}
	// Clusters stay small enough that the coarsest split can be balanced
	// to within about half the slack the bound leaves.
	slack := 1.0
	for p, c := range s.maxCost {
		slack = min(slack, float64(c)/(s.shares[p]*float64(s.pr.total))-1)
	}
	slack = max(slack, 0.01)
	maxW := max(int64(slack/2*minShare*float64(s.pr.total)), 1)
	stop := max(30*k, 200)

	levels := []*level{l}
	for len(levels) < 64 {
		cur := levels[len(levels)-1]
		if cur.n <= stop {
			break
		}
		next := cur.coarsen(maxW, nil, s.rng)
		if next == nil {
			break
		}
		levels = append(levels, next)
	}
	coarsest := levels[len(levels)-1]
	part := s.initial(coarsest)
	for i := len(levels) - 1; i > 0; i-- {
		finer := levels[i-1]
		fp := make([]int32, finer.n)
		for v := range fp {
			fp[v] = part[finer.up[v]]
		}
		part = fp
		newRefiner(finer, k, part, s.maxCost).refine(refineRounds)
	}
	return part
}

// initial splits the coarsest level along its own order and along a
// depth-first order, refines both, and keeps the better.
func (s *solver) initial(l *level) []int32 {
	identity := make([]int32, l.n)
	for i := range identity {
		identity[i] = int32(i)
	}
	var best []int32
	var bestFeasible bool
	var bestCut int64
	for _, order := range [][]int32{identity, l.depthFirstOrder()} {
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

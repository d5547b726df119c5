package partition

import "sort"

// refiner improves an assignment of one level's nodes to parts 0..k-1 in
// which every net goes from a part to the same or a later part: parts form
// a total order, so the graph of parts is acyclic. A node moves only to an
// adjacent part, and only when that keeps the order: to the next part when
// none of its successors is in its part, to the previous part when none of
// its predecessors is. So every assignment it produces is acyclic by
// construction.
type refiner struct {
	l       *level
	k       int
	part    []int32
	load    []int64
	maxCost []int64
	stamp   []int32 // scratch: candidate marks per node
	gen     int32
}

func newRefiner(l *level, k int, part []int32, maxCost []int64) *refiner {
	r := &refiner{l: l, k: k, part: part, load: make([]int64, k), maxCost: maxCost, stamp: make([]int32, l.n)}
	copy(r.load, l.outside)
	for v, p := range part {
		r.load[p] += l.w[v]
	}
	return r
}

// canMove reports whether v may move from its part p to q = p±1.
func (r *refiner) canMove(v int32, q int32) bool {
	l, p := r.l, r.part[v]
	if q < 0 || int(q) >= r.k {
		return false
	}
	if q > p {
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			for _, u := range l.netPins(e) {
				if r.part[u] == p {
					return false
				}
			}
		}
		return true
	}
	for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
		if r.part[l.netSrc[e]] == p {
			return false
		}
	}
	return true
}

// gain is how many bytes the cut shrinks by when v moves to part q.
func (r *refiner) gain(v int32, q int32) int64 {
	l, p := r.l, r.part[v]
	var g int64
	for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
		hasP, hasQ := false, false
		for _, u := range l.netPins(e) {
			switch r.part[u] {
			case p:
				hasP = true
			case q:
				hasQ = true
			}
		}
		if hasP {
			g -= l.netW[e]
		}
		if hasQ {
			g += l.netW[e]
		}
	}
	for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
		ps := r.part[l.netSrc[e]]
		othersP, hasQ := false, false
		for _, u := range l.netPins(e) {
			if u == v {
				continue
			}
			switch r.part[u] {
			case p:
				othersP = true
			case q:
				hasQ = true
			}
		}
		if !othersP && p != ps {
			g += l.netW[e]
		}
		if !hasQ && q != ps {
			g -= l.netW[e]
		}
	}
	return g
}

// fits reports whether part q can take weight w more.
func (r *refiner) fits(q int32, w int64) bool { return r.load[q]+w <= r.maxCost[q] }

// lighter reports whether part q holding w more would still be less loaded,
// relative to its limit, than part p is now.
func (r *refiner) lighter(q, p int32, w int64) bool {
	return float64(r.load[q]+w)*float64(r.maxCost[p]) < float64(r.load[p])*float64(r.maxCost[q])
}

func (r *refiner) move(v int32, q int32) {
	w := r.l.w[v]
	r.load[r.part[v]] -= w
	r.load[q] += w
	r.part[v] = q
}

// boundary returns the nodes that have a neighbour in another part, in
// index order.
func (r *refiner) boundary() []int32 {
	l := r.l
	var out []int32
	for v := int32(0); int(v) < l.n; v++ {
		p := r.part[v]
		on := false
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			for _, u := range l.netPins(e) {
				if r.part[u] != p {
					on = true
					break
				}
			}
			if on {
				break
			}
		}
		if !on {
			for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
				if r.part[l.netSrc[e]] != p {
					on = true
					break
				}
			}
		}
		if on {
			out = append(out, v)
		}
	}
	return out
}

// mark adds v to next unless it is already there this round.
func (r *refiner) mark(next []int32, v int32) []int32 {
	if r.stamp[v] != r.gen {
		r.stamp[v] = r.gen
		next = append(next, v)
	}
	return next
}

// neighbours appends v's predecessors and successors to next.
func (r *refiner) neighbours(next []int32, v int32) []int32 {
	l := r.l
	for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
		for _, u := range l.netPins(e) {
			next = r.mark(next, u)
		}
	}
	for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
		next = r.mark(next, l.netSrc[e])
	}
	return next
}

// refine runs rounds of label propagation: each candidate node takes the
// adjacent-part move with the best gain when it shrinks the cut, or keeps
// the cut and evens the load, and fits the target part's limit. Nodes next
// to a moved node are the candidates of the next round.
func (r *refiner) refine(rounds int) {
	r.rebalance()
	cands := r.boundary()
	for round := 0; round < rounds && len(cands) > 0; round++ {
		r.gen++
		var next []int32
		for _, v := range cands {
			p := r.part[v]
			w := r.l.w[v]
			if r.l.isFixed(v) || (w > 0 && r.load[p] <= w) {
				continue // the part would be left without work
			}
			bestQ, bestG := int32(-1), int64(0)
			for _, q := range [2]int32{p - 1, p + 1} {
				if q < 0 || int(q) >= r.k || !r.fits(q, w) || !r.canMove(v, q) {
					continue
				}
				g := r.gain(v, q)
				if g > bestG || (g == 0 && bestQ < 0 && w > 0 && r.lighter(q, p, w)) {
					bestQ, bestG = q, g
				}
			}
			if bestQ < 0 {
				continue
			}
			r.move(v, bestQ)
			next = r.mark(next, v)
			next = r.neighbours(next, v)
		}
		sort.Slice(next, func(i, j int) bool { return next[i] < next[j] })
		cands = next
	}
	r.placeFree()
}

// placeFree moves each node without work (a reshape, a concat, a size_of)
// to whichever part between its predecessors' and its successors' cuts the
// least, however far that is: it costs no balance, and the adjacent-part
// moves of refine cannot jump parts.
func (r *refiner) placeFree() {
	l := r.l
	for v := int32(l.n - 1); v >= 0; v-- {
		if l.w[v] != 0 || l.isFixed(v) {
			continue
		}
		lo, hi := int32(0), int32(r.k-1)
		for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
			lo = max(lo, r.part[l.netSrc[e]])
		}
		succ := false
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			for _, u := range l.netPins(e) {
				hi = min(hi, r.part[u])
				succ = true
			}
		}
		if !succ {
			hi = max(lo, r.part[v])
		}
		bestQ, bestG := r.part[v], int64(0)
		for q := lo; q <= hi; q++ {
			if q == r.part[v] {
				continue
			}
			if g := r.gain(v, q); g > bestG {
				bestQ, bestG = q, g
			}
		}
		if bestQ != r.part[v] {
			r.move(v, bestQ)
		}
	}
}

// rebalance moves boundary nodes out of parts that exceed their limit into
// adjacent parts with room, best gain first, until every part fits or no
// such move is left.
func (r *refiner) rebalance() {
	type cand struct {
		v, q int32
		g    int64
	}
	for round := 0; round < 2*r.k+4; round++ {
		over := false
		for p := range r.load {
			if r.load[p] > r.maxCost[p] {
				over = true
			}
		}
		if !over {
			return
		}
		var cs []cand
		for _, v := range r.boundary() {
			p := r.part[v]
			w := r.l.w[v]
			if r.load[p] <= r.maxCost[p] || w == 0 || r.l.isFixed(v) {
				continue
			}
			for _, q := range [2]int32{p - 1, p + 1} {
				if q >= 0 && int(q) < r.k && r.fits(q, w) && r.canMove(v, q) {
					cs = append(cs, cand{v, q, r.gain(v, q)})
				}
			}
		}
		if len(cs) == 0 {
			return
		}
		sort.Slice(cs, func(i, j int) bool {
			if cs[i].g != cs[j].g {
				return cs[i].g > cs[j].g
			}
			if cs[i].v != cs[j].v {
				return cs[i].v < cs[j].v
			}
			return cs[i].q < cs[j].q
		})
		moved := false
		for _, c := range cs {
			p := r.part[c.v]
			w := r.l.w[c.v]
			if r.load[p] <= r.maxCost[p] || p == c.q || (c.q != p-1 && c.q != p+1) || !r.fits(c.q, w) || r.load[p] <= w || !r.canMove(c.v, c.q) {
				continue
			}
			r.move(c.v, c.q)
			moved = true
		}
		if !moved {
			return
		}
	}
}

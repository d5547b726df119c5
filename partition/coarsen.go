package partition

import (
	"math/rand/v2"
)

// Pair flags, kept on the lower node of a matched pair.
const (
	exitUp  uint8 = 1 // the lower node feeds the upper node of another pair one level up
	enterUp uint8 = 2 // the upper node is fed by the lower node of another pair one level down
)

// coarsen matches nodes in pairs and returns the graph of the pairs and the
// map from l's nodes to its nodes, or nil when matching would shrink the
// graph by less than a twentieth.
//
// Acyclicity. Let top(v) be the longest path from a source to v, so every
// edge climbs at least one level. Only u→v with top(v) = top(u)+1 are
// matched. Walk a cycle of the coarse graph and add up the level changes:
// each coarse edge climbs at least one level; inside a single node or a
// pair entered at its lower node the walk climbs or stays; only a pair
// entered at its upper node and left from its lower node drops, by one.
// Since the sum is zero, every node on the cycle must be such a pair and
// every edge must climb exactly one level, so each pair on it has both an
// edge from its lower node into another pair's upper node one level up
// (exitUp) and an edge into its upper node from another pair's lower node
// one level down (enterUp). A pair is only formed if afterwards no pair has
// both flags, so the coarse graph has no cycle. (Without the flags it
// could: a→b, c→d, a→d, c→b matched as {a,b}, {c,d}.)
//
// part, when not nil, keeps matched nodes in the same part, so that an
// assignment carries over to the coarse graph. Clusters weigh at most maxW.
func (l *level) coarsen(maxW int64, part []int32, rng *rand.Rand) (*level, []int32) {
	n := l.n
	top := l.topLevels()
	mate := make([]int32, n)
	for i := range mate {
		mate[i] = -1
	}
	upper := make([]bool, n)
	flags := make([]uint8, n)
	rating := make([]int64, n)
	var touched, enterP, exitQ []int32

	tryPair := func(a, b int32) bool { // a lower, b upper
		enterP, exitQ = enterP[:0], exitQ[:0]
		newExit, newEnter := false, false
		for _, e := range l.outNets[l.outOff[a]:l.outOff[a+1]] {
			for _, y := range l.netPins(e) {
				if y != b && mate[y] >= 0 && upper[y] && top[y] == top[a]+1 {
					pl := mate[y]
					if flags[pl]&exitUp != 0 {
						return false
					}
					newExit = true
					enterP = append(enterP, pl)
				}
			}
		}
		for _, e := range l.inNets[l.inOff[b]:l.inOff[b+1]] {
			x := l.netSrc[e]
			if x != a && mate[x] >= 0 && !upper[x] && top[x]+1 == top[b] {
				if flags[x]&enterUp != 0 {
					return false
				}
				newEnter = true
				exitQ = append(exitQ, x)
			}
		}
		if newExit && newEnter {
			return false
		}
		for _, p := range enterP {
			for _, q := range exitQ {
				if p == q {
					return false
				}
			}
		}
		mate[a], mate[b] = b, a
		upper[b] = true
		if newExit {
			flags[a] |= exitUp
		}
		if newEnter {
			flags[a] |= enterUp
		}
		for _, p := range enterP {
			flags[p] |= enterUp
		}
		for _, q := range exitQ {
			flags[q] |= exitUp
		}
		return true
	}

	matched := 0
	for _, v := range visitOrder(n, rng) {
		if mate[v] >= 0 || l.isFixed(v) {
			continue
		}
		touched = touched[:0]
		wv, tv := l.w[v], top[v]
		for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
			s := l.netSrc[e]
			if top[s]+1 != tv || mate[s] >= 0 || l.w[s]+wv > maxW || (part != nil && part[s] != part[v]) || l.isFixed(s) {
				continue
			}
			if rating[s] == 0 {
				touched = append(touched, s)
			}
			rating[s] += l.netW[e] + 1
		}
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			for _, u := range l.netPins(e) {
				if top[u] != tv+1 || mate[u] >= 0 || l.w[u]+wv > maxW || (part != nil && part[u] != part[v]) || l.isFixed(u) {
					continue
				}
				if rating[u] == 0 {
					touched = append(touched, u)
				}
				rating[u] += l.netW[e] + 1
			}
		}
		// Try the neighbours best first: heaviest connection, then lightest
		// node, then lowest number.
		for tries := 0; tries < len(touched); tries++ {
			bi := -1
			for i, u := range touched {
				if u < 0 {
					continue
				}
				if bi < 0 {
					bi = i
					continue
				}
				b := touched[bi]
				if rating[u] > rating[b] || (rating[u] == rating[b] && (l.w[u] < l.w[b] || (l.w[u] == l.w[b] && u < b))) {
					bi = i
				}
			}
			u := touched[bi]
			touched[bi] = -1
			rating[u] = 0
			a, b := v, u
			if top[u] < tv {
				a, b = u, v
			}
			if tryPair(a, b) {
				matched++
				break
			}
		}
		for _, u := range touched {
			if u >= 0 {
				rating[u] = 0
			}
		}
	}
	if matched*20 < n {
		return nil, nil
	}
	return l.contract(mate, upper)
}

// visitOrder is the order in which coarsen visits nodes: blocks of
// visitBlock consecutive nodes in a random order, each block in index
// order, which keeps most memory accesses near each other while still
// varying which node claims a neighbour first.
func visitOrder(n int, rng *rand.Rand) []int32 {
	out := make([]int32, 0, n)
	blocks := (n + visitBlock - 1) / visitBlock
	for _, b := range rng.Perm(blocks) {
		for v := b * visitBlock; v < min(n, (b+1)*visitBlock); v++ {
			out = append(out, int32(v))
		}
	}
	return out
}

var visitBlock = 64

// contract builds the graph of the matched pairs, numbered by their first
// node, with a topological order that stays as close to that numbering as
// it can, and the map from l's nodes to its nodes; or nil if the pairs do
// not form an acyclic graph.
func (l *level) contract(mate []int32, upper []bool) (*level, []int32) {
	n := l.n
	cid := make([]int32, n)
	nc := int32(0)
	for v := 0; v < n; v++ {
		if mate[v] >= 0 && upper[v] {
			continue // numbered with its lower node, which comes first
		}
		cid[v] = nc
		if mate[v] >= 0 {
			cid[mate[v]] = nc
		}
		nc++
	}
	c := &level{n: int(nc), w: make([]int64, nc), outside: l.outside}
	for v := 0; v < n; v++ {
		c.w[cid[v]] += l.w[v]
	}
	if l.fixed != nil {
		c.fixed = make([]bool, nc)
		for v, f := range l.fixed {
			if f {
				c.fixed[cid[v]] = true // a fixed node is never matched
			}
		}
	}
	stamp := make([]int32, nc)
	for i := range stamp {
		stamp[i] = -1
	}
	// Nets are built source by source, so that parallel one-pin nets (a
	// pair feeding the same node through several producers) merge into one.
	single := make([]int32, nc) // single[p] = s+1: a one-pin net s→p exists
	singleAt := make([]int32, nc)
	c.netSrc = make([]int32, 0, l.nets())
	c.netW = make([]int64, 0, l.nets())
	c.netOff = make([]int32, 1, l.nets()+1)
	c.pins = make([]int32, 0, len(l.pins))
	sorted := true
	for v := 0; v < n; v++ {
		if mate[v] >= 0 && upper[v] {
			continue
		}
		s := cid[v]
		members := [2]int32{int32(v), mate[v]}
		for _, u := range members {
			if u < 0 {
				continue
			}
			for _, e := range l.outNets[l.outOff[u]:l.outOff[u+1]] {
				stamp[s] = e
				start := len(c.pins)
				for _, x := range l.netPins(e) {
					if cx := cid[x]; stamp[cx] != e {
						stamp[cx] = e
						c.pins = append(c.pins, cx)
					}
				}
				switch len(c.pins) - start {
				case 0:
					continue
				case 1:
					p := c.pins[start]
					if single[p] == s+1 {
						c.netW[singleAt[p]] += l.netW[e]
						c.pins = c.pins[:start]
						continue
					}
					single[p], singleAt[p] = s+1, int32(len(c.netSrc))
				}
				for _, cx := range c.pins[start:] {
					if cx < s {
						sorted = false
					}
				}
				c.netSrc = append(c.netSrc, s)
				c.netW = append(c.netW, l.netW[e])
				c.netOff = append(c.netOff, int32(len(c.pins)))
			}
		}
	}
	c.index()
	if !sorted {
		if c.order = c.topoOrder(); c.order == nil {
			return nil, nil
		}
	}
	return c, cid
}

// topoOrder returns a topological order of c's nodes that takes the
// smallest ready number first (Kahn's algorithm), or nil if c has a cycle,
// which the matching rule rules out. A scan in number order finds most
// nodes ready when it reaches them; only the nodes it had to pass over
// wait in a heap once they become ready.
func (c *level) topoOrder() []int32 {
	n := c.n
	indeg := make([]int32, n)
	for v := 0; v < n; v++ {
		indeg[v] = c.inOff[v+1] - c.inOff[v]
	}
	h := make(minHeap, 0, 1024)
	order := make([]int32, 0, n)
	scan := int32(0)
	for {
		var v int32
		switch {
		case len(h) > 0:
			v = h.pop() // every heap entry is below scan, so smallest
		case int(scan) < n:
			v = scan
			scan++
			if indeg[v] != 0 {
				continue // it joins the heap when it becomes ready
			}
		default:
			v = -1
		}
		if v < 0 {
			break
		}
		order = append(order, v)
		for _, e := range c.outNets[c.outOff[v]:c.outOff[v+1]] {
			for _, u := range c.netPins(e) {
				indeg[u]--
				if indeg[u] == 0 && u < scan {
					h.push(u)
				}
			}
		}
	}
	if len(order) != n {
		return nil
	}
	return order
}

// minHeap is a binary heap of node numbers.
type minHeap []int32

func (h *minHeap) push(v int32) {
	*h = append(*h, v)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if a[p] <= a[i] {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *minHeap) pop() int32 {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(a) {
			break
		}
		m := l
		if r := l + 1; r < len(a) && a[r] < a[l] {
			m = r
		}
		if a[i] <= a[m] {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}

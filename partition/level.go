package partition

import "slices"

// level is one graph of the multilevel hierarchy: weighted nodes and nets.
// A net is a producer (its source) with the distinct other nodes that
// consume its output (its pins), weighted by the producer's output bytes.
// The cut of an assignment is the sum over nets of weight × the number of
// parts among the pins other than the source's part, which is exactly what
// the finest graph sends.
type level struct {
	n      int
	order  []int32 // a topological order of the nodes; nil: the index order is one
	w      []int64 // node weights (flops)
	netSrc []int32
	netW   []int64
	netOff []int32 // pins of net i are pins[netOff[i]:netOff[i+1]]
	pins   []int32

	outOff  []int32 // nets whose source is v: outNets[outOff[v]:outOff[v+1]]
	outNets []int32
	inOff   []int32 // nets with v among their pins: inNets[inOff[v]:inOff[v+1]]
	inNets  []int32

	// A level cut out of a bigger one (see band) has fixed nodes, which
	// neither match nor move, and outside[p], the load of part p that lies
	// outside it. Both are nil otherwise.
	fixed   []bool
	outside []int64
}

func (l *level) isFixed(v int32) bool { return l.fixed != nil && l.fixed[v] }

func (l *level) nets() int { return len(l.netSrc) }

func (l *level) netPins(e int32) []int32 { return l.pins[l.netOff[e]:l.netOff[e+1]] }

// index builds the incidence lists from the nets.
func (l *level) index() {
	n := l.n
	l.outOff = make([]int32, n+1)
	l.inOff = make([]int32, n+1)
	for e, s := range l.netSrc {
		l.outOff[s+1]++
		for _, v := range l.netPins(int32(e)) {
			l.inOff[v+1]++
		}
	}
	for v := 0; v < n; v++ {
		l.outOff[v+1] += l.outOff[v]
		l.inOff[v+1] += l.inOff[v]
	}
	l.outNets = make([]int32, l.outOff[n])
	l.inNets = make([]int32, l.inOff[n])
	oc := append([]int32(nil), l.outOff[:n]...)
	ic := append([]int32(nil), l.inOff[:n]...)
	for e, s := range l.netSrc {
		l.outNets[oc[s]] = int32(e)
		oc[s]++
		for _, v := range l.netPins(int32(e)) {
			l.inNets[ic[v]] = int32(e)
			ic[v]++
		}
	}
}

// cut is the cut of an assignment of this level's nodes.
func (l *level) cut(part []int32, k int) int64 {
	stamp := make([]int32, k)
	for i := range stamp {
		stamp[i] = -1
	}
	var total int64
	for e := range l.netSrc {
		own := part[l.netSrc[e]]
		for _, v := range l.netPins(int32(e)) {
			if q := part[v]; q != own && stamp[q] != int32(e) {
				stamp[q] = int32(e)
				total += l.netW[e]
			}
		}
	}
	return total
}

// isChain reports whether the index order, which must be topological, is
// the only topological order:
// every node feeds the next one. Then every acyclic split is a split of
// that order into contiguous segments.
func (l *level) isChain() bool {
	if l.order != nil {
		return false
	}
	for v := 0; v+1 < l.n; v++ {
		found := false
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			if p := l.netPins(e); len(p) > 0 && p[0] == int32(v+1) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// boundaryCuts returns, for an order of this level's nodes, the bytes that
// cross a boundary placed after each position: out[j] is the weight of the
// nets whose source is at or before j and some pin after j.
func (l *level) boundaryCuts(order []int32) []int64 {
	pos := make([]int32, l.n)
	for i, v := range order {
		pos[v] = int32(i)
	}
	diff := make([]int64, l.n+1)
	for e, s := range l.netSrc {
		a := pos[s]
		b := a
		for _, v := range l.netPins(int32(e)) {
			if pos[v] > b {
				b = pos[v]
			}
		}
		if b > a {
			diff[a] += l.netW[e]
			diff[b] -= l.netW[e]
		}
	}
	var run int64
	out := make([]int64, l.n)
	for j := 0; j < l.n; j++ {
		run += diff[j]
		out[j] = run
	}
	return out
}

// topLevels returns the length of the longest path from a source to each
// node.
func (l *level) topLevels() []int32 {
	top := make([]int32, l.n)
	for i := 0; i < l.n; i++ {
		v := int32(i)
		if l.order != nil {
			v = l.order[i]
		}
		t := top[v] + 1
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			for _, u := range l.netPins(e) {
				if top[u] < t {
					top[u] = t
				}
			}
		}
	}
	return top
}

// depthFirstOrder returns a topological order that follows each chain of
// work as far as it goes before starting another one: Kahn's algorithm
// with a stack of ready nodes, seeded in index order.
func (l *level) depthFirstOrder() []int32 {
	indeg := make([]int32, l.n)
	for e := range l.netSrc {
		for _, v := range l.netPins(int32(e)) {
			indeg[v]++
		}
	}
	stack := make([]int32, 0, 64)
	for v := l.n - 1; v >= 0; v-- {
		if indeg[v] == 0 {
			stack = append(stack, int32(v))
		}
	}
	order := make([]int32, 0, l.n)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		order = append(order, v)
		nets := l.outNets[l.outOff[v]:l.outOff[v+1]]
		for i := len(nets) - 1; i >= 0; i-- {
			pins := l.netPins(nets[i])
			for j := len(pins) - 1; j >= 0; j-- {
				u := pins[j]
				indeg[u]--
				if indeg[u] == 0 {
					stack = append(stack, u)
				}
			}
		}
	}
	return order
}

// band cuts out of l, whose index order must be topological, the nodes
// within depth steps (along edges either way) of a node with a neighbour in
// another part, with every node that shares a net with one of them as a
// fixed node, so that gains and loads stay exact. It returns the new level,
// the l node of each of its nodes, and false when the band would hold more
// than half of l, which is then better refined whole.
func (l *level) band(part []int32, k, depth int) (*level, []int32, bool) {
	n := l.n
	if l.order != nil {
		return nil, nil, false
	}
	dist := make([]int32, n)
	for i := range dist {
		dist[i] = -1
	}
	var queue []int32
	for v := int32(0); int(v) < n; v++ {
		p := part[v]
		on := false
		for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
			if part[l.netSrc[e]] != p {
				on = true
				break
			}
		}
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			for _, u := range l.netPins(e) {
				if part[u] != p {
					on = true
					break
				}
			}
		}
		if on {
			dist[v] = 0
			queue = append(queue, v)
		}
	}
	visit := func(u, d int32) {
		if dist[u] < 0 {
			dist[u] = d
			queue = append(queue, u)
		}
	}
	for i := 0; i < len(queue); i++ {
		v := queue[i]
		if int(dist[v]) >= depth {
			continue
		}
		for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
			visit(l.netSrc[e], dist[v]+1)
		}
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			for _, u := range l.netPins(e) {
				visit(u, dist[v]+1)
			}
		}
		if len(queue) > n/2 {
			return nil, nil, false
		}
	}
	// The nets that touch the band, and every node on them.
	inSub := make([]bool, n)
	netIn := make([]bool, l.nets())
	var nets []int32
	addNet := func(e int32) {
		if netIn[e] {
			return
		}
		netIn[e] = true
		nets = append(nets, e)
		inSub[l.netSrc[e]] = true
		for _, u := range l.netPins(e) {
			inSub[u] = true
		}
	}
	for _, v := range queue {
		inSub[v] = true
		for _, e := range l.inNets[l.inOff[v]:l.inOff[v+1]] {
			addNet(e)
		}
		for _, e := range l.outNets[l.outOff[v]:l.outOff[v+1]] {
			addNet(e)
		}
	}
	idx := make([]int32, n)
	var sel []int32
	for v := int32(0); int(v) < n; v++ {
		if inSub[v] {
			idx[v] = int32(len(sel))
			sel = append(sel, v)
		}
	}
	if len(sel) > n/2 {
		return nil, nil, false
	}
	slices.Sort(nets)
	b := &level{n: len(sel), w: make([]int64, len(sel)), fixed: make([]bool, len(sel)), outside: make([]int64, k)}
	for v, p := range part {
		b.outside[p] += l.w[v]
	}
	for i, v := range sel {
		b.w[i] = l.w[v]
		b.fixed[i] = dist[v] < 0
		b.outside[part[v]] -= l.w[v]
	}
	b.netSrc = make([]int32, 0, len(nets))
	b.netW = make([]int64, 0, len(nets))
	b.netOff = make([]int32, 1, len(nets)+1)
	for _, e := range nets {
		for _, u := range l.netPins(e) {
			b.pins = append(b.pins, idx[u])
		}
		b.netSrc = append(b.netSrc, idx[l.netSrc[e]])
		b.netW = append(b.netW, l.netW[e])
		b.netOff = append(b.netOff, int32(len(b.pins)))
	}
	b.index()
	return b, sel, true
}

package partition

// level is one graph of the multilevel hierarchy: weighted nodes numbered
// in a topological order and nets. A net is a producer (its source) with
// the distinct other nodes that consume its output (its pins), weighted by
// the producer's output bytes; every pin is numbered after its source. The
// cut of an assignment is the sum over nets of weight × the number of parts
// among the pins other than the source's part, which is exactly what the
// finest graph sends.
type level struct {
	n      int
	w      []int64 // node weights (flops)
	netSrc []int32
	netW   []int64
	netOff []int32 // pins of net i are pins[netOff[i]:netOff[i+1]]
	pins   []int32

	outOff  []int32 // nets whose source is v: outNets[outOff[v]:outOff[v+1]]
	outNets []int32
	inOff   []int32 // nets with v among their pins: inNets[inOff[v]:inOff[v+1]]
	inNets  []int32
}

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

// isChain reports whether the index order is the only topological order:
// every node feeds the next one. Then every acyclic split is a split of
// that order into contiguous segments.
func (l *level) isChain() bool {
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
	for v := 0; v < l.n; v++ {
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

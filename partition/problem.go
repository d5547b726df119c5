package partition

import (
	"github.com/rookery-ml/rookery/graph"
)

// problem is a graph flattened into slices indexed by graph position, the
// form every algorithm here works on.
//
// The core is the set of nodes that take part in the split: every node
// except the free sources (nodes with no inputs and no FLOPs: inputs,
// learnable parameters, constants). Free sources are placed afterwards in
// the first part that consumes them, where they cost nothing and cut the
// least.
type problem struct {
	g     *graph.Graph
	raw   []int64 // FLOPs by position, as the cost model gives them (negative read as 0)
	flops []int64 // the FLOPs the algorithms use: raw, scaled down by 2^shift
	shift uint    // non-zero only when the raw total would overflow
	out   []int64 // output bytes, by position
	param []int64 // parameter bytes, by position

	core     []int32 // positions of the core nodes, in graph order
	coreIdx  []int32 // position -> index into core, or -1
	total    int64   // sum of flops
	positive int     // nodes with flops > 0
	heaviest int     // position of a node with the largest flops
}

// maxTotal bounds the sum of the FLOPs the algorithms add up, far from
// overflowing int64.
const maxTotal = 1 << 61

func newProblem(g *graph.Graph) *problem {
	nodes := g.Nodes()
	n := len(nodes)
	p := &problem{
		g:        g,
		raw:      make([]int64, n),
		out:      make([]int64, n),
		param:    make([]int64, n),
		coreIdx:  make([]int32, n),
		heaviest: -1,
	}
	var sum float64
	for i := range nodes {
		c := g.Cost(nodes[i].ID)
		p.raw[i], p.out[i], p.param[i] = max(c.FLOPs, 0), c.OutputBytes, c.ParamBytes
		sum += float64(p.raw[i])
	}
	p.flops = p.raw
	for sum/float64(uint64(1)<<p.shift) >= maxTotal/2 {
		p.shift++
	}
	if p.shift > 0 {
		p.flops = make([]int64, n)
		for i, f := range p.raw {
			p.flops[i] = f >> p.shift
			if f > 0 && p.flops[i] == 0 {
				p.flops[i] = 1
			}
		}
	}
	p.core = make([]int32, 0, n)
	for i := range nodes {
		f := p.flops[i]
		p.total += f
		if f > 0 {
			p.positive++
			if p.heaviest < 0 || f > p.flops[p.heaviest] {
				p.heaviest = i
			}
		}
		if f == 0 && len(nodes[i].Inputs) == 0 {
			p.coreIdx[i] = -1
			continue
		}
		p.coreIdx[i] = int32(len(p.core))
		p.core = append(p.core, int32(i))
	}
	return p
}

// consumers returns the positions of the consumers of the node at position
// i, in graph order.
func (p *problem) consumers(i int) []int32 { return p.g.ConsumerPositions(i) }

// finest builds the level of the core nodes: one net per core node that has
// consumers. Every consumer is a core node (free sources have no inputs).
func (p *problem) finest() *level {
	n := len(p.core)
	l := &level{n: n, w: make([]int64, n)}
	nets, pins := 0, 0
	for ci, pos := range p.core {
		l.w[ci] = p.flops[pos]
		if c := p.consumers(int(pos)); len(c) > 0 {
			nets++
			pins += len(c)
		}
	}
	l.netSrc = make([]int32, 0, nets)
	l.netW = make([]int64, 0, nets)
	l.netOff = make([]int32, 1, nets+1)
	l.pins = make([]int32, 0, pins)
	for ci, pos := range p.core {
		c := p.consumers(int(pos))
		if len(c) == 0 {
			continue
		}
		for _, q := range c {
			l.pins = append(l.pins, p.coreIdx[q])
		}
		l.netSrc = append(l.netSrc, int32(ci))
		l.netW = append(l.netW, p.out[pos])
		l.netOff = append(l.netOff, int32(len(l.pins)))
	}
	l.index()
	return l
}

// place extends an assignment of the core (by core index) to every node
// (by position): a free source goes to the first part that consumes it, or
// to part 0 when nothing does.
func (p *problem) place(coreParts []int32) []int32 {
	all := make([]int32, len(p.coreIdx))
	for i, ci := range p.coreIdx {
		if ci >= 0 {
			all[i] = coreParts[ci]
			continue
		}
		best := int32(-1)
		for _, q := range p.consumers(i) {
			if pq := coreParts[p.coreIdx[q]]; best < 0 || pq < best {
				best = pq
			}
		}
		if best < 0 {
			best = 0
		}
		all[i] = best
	}
	return all
}

// cut is the number of bytes an assignment (by position) sends: each
// producer's output once per part, other than its own, that consumes it.
func (p *problem) cut(parts []int32, k int) int64 {
	stamp := make([]int32, k)
	for i := range stamp {
		stamp[i] = -1
	}
	var total int64
	for i := range parts {
		own := parts[i]
		for _, q := range p.consumers(i) {
			pq := parts[q]
			if pq != own && stamp[pq] != int32(i) {
				stamp[pq] = int32(i)
				total += p.out[i]
			}
		}
	}
	return total
}

// loads sums the flops of each part of an assignment by position.
func (p *problem) loads(parts []int32, k int) []int64 {
	l := make([]int64, k)
	for i, q := range parts {
		l[q] += p.flops[i]
	}
	return l
}

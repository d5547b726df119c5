package graph

import (
	"slices"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// wireTopoOrder returns the positions of the nodes in an order where every node
// comes after its inputs, keeping the given order where it allows (nil when
// the given order already is topological). It reports duplicate ids,
// inputs that name no node, and cycles.
func wireTopoOrder(nodes []*rookeryv1.Node) ([]int32, error) {
	index := make(map[int64]int32, len(nodes))
	for i, n := range nodes {
		if _, dup := index[n.Id]; dup {
			return nil, &NodeError{ID: n.Id, Err: ErrDuplicateID}
		}
		index[n.Id] = int32(i)
	}
	sorted := true
	edges := 0
	for i, n := range nodes {
		for _, in := range n.Inputs {
			p, ok := index[in]
			if !ok {
				return nil, &DanglingInputError{Node: n.Id, Input: in}
			}
			if int(p) >= i {
				sorted = false
			}
		}
		edges += len(n.Inputs)
	}
	if sorted {
		return nil, nil
	}

	// Kahn's algorithm, always taking the earliest ready node so that the
	// result is deterministic and stays close to the given order.
	// consumers[start[p]:start[p+1]] are the consumers of node p, once per
	// use.
	start := make([]int32, len(nodes)+1)
	for _, n := range nodes {
		for _, in := range n.Inputs {
			start[index[in]+1]++
		}
	}
	for p := range nodes {
		start[p+1] += start[p]
	}
	consumers := make([]int32, edges)
	fill := slices.Clone(start[:len(nodes)])
	pending := make([]int32, len(nodes)) // inputs not yet placed, per use
	for i, n := range nodes {
		for _, in := range n.Inputs {
			p := index[in]
			consumers[fill[p]] = int32(i)
			fill[p]++
		}
		pending[i] = int32(len(n.Inputs))
	}
	var ready posHeap
	for i := range nodes {
		if pending[i] == 0 {
			ready.push(int32(i))
		}
	}
	order := make([]int32, 0, len(nodes))
	for len(ready) > 0 {
		p := ready.pop()
		order = append(order, p)
		for _, c := range consumers[start[p]:start[p+1]] {
			pending[c]--
			if pending[c] == 0 {
				ready.push(c)
			}
		}
	}
	if len(order) < len(nodes) {
		return nil, &CycleError{Nodes: wireCycle(nodes, index, pending)}
	}
	return order, nil
}

// wireCycle returns the ids of the nodes on one cycle (at most 32 of them,
// in data-flow order) among the nodes that Kahn's algorithm could not
// place: each of those has an input that was not placed either, so walking
// such inputs must come back to a node already seen.
func wireCycle(nodes []*rookeryv1.Node, index map[int64]int32, pending []int32) []int64 {
	const maxReported = 32
	start := slices.IndexFunc(pending, func(c int32) bool { return c > 0 })
	step := make(map[int32]int)
	var path []int32
	for p := int32(start); ; {
		if s, seen := step[p]; seen {
			path = path[s:]
			break
		}
		step[p] = len(path)
		path = append(path, p)
		next := int32(-1)
		for _, in := range nodes[p].Inputs {
			if q := index[in]; pending[q] > 0 {
				next = q
				break
			}
		}
		if next < 0 { // cannot happen; keep what was found
			break
		}
		p = next
	}
	slices.Reverse(path)
	if len(path) > maxReported {
		path = path[:maxReported]
	}
	ids := make([]int64, len(path))
	for i, p := range path {
		ids[i] = nodes[p].Id
	}
	return ids
}

// posHeap is a binary min-heap of node positions.
type posHeap []int32

func (h *posHeap) push(v int32) {
	*h = append(*h, v)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent] <= s[i] {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

func (h *posHeap) pop() int32 {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l] < s[m] {
			m = l
		}
		if r < len(s) && s[r] < s[m] {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

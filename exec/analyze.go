package exec

import "github.com/rookery-ml/rookery/graph"

// partAnalysis says which parts of a part's program take part in its
// backward pass.
type partAnalysis struct {
	learn       []int64       // learnable ids, graph order
	learnIdx    map[int64]int // id → index in learn
	activeLearn []bool        // learnable gets a gradient from the program
	activeIn    map[int64]bool
	opOutputs   []int64 // Outputs that are ops (read by the gate)
	learnOuts   []int64 // Outputs that are learnables (gradient added directly)
	seeded      []int64 // opOutputs whose gradient seeds Backpropagate
	lossSeeded  bool
	// deferred lists the parameters whose gradient is computed at Step,
	// once for all micro-batches, instead of in every backward pass.
	deferred []deferredGrad
}

// deferredGrad is a weight W used only as the right operand of one
// matrix product y = a·W: its gradient aᵀ·dy is computed once per step on
// the activations a and output gradients dy of all micro-batches stacked,
// as training on the whole mini-batch would.
type deferredGrad struct {
	param  int   // index in learn
	matmul int64 // y
	act    int64 // a
}

// analyze finds the inputs and parameters with a differentiable path to a
// seeded output, and the outputs with a differentiable path from one of
// them, so that Backpropagate is asked only what it can answer.
func analyze(spec *SessionSpec) *partAnalysis {
	g := spec.Graph
	a := &partAnalysis{learnIdx: make(map[int64]int), activeIn: make(map[int64]bool)}
	a.learn = g.Learnables()
	for i, id := range a.learn {
		a.learnIdx[id] = i
	}
	a.activeLearn = make([]bool, len(a.learn))
	cand := make(map[int64]bool)
	for _, id := range spec.Inputs {
		cand[id] = true
	}
	for _, id := range a.learn {
		cand[id] = true
	}
	nodes := g.Nodes()
	from := make(map[int64]bool) // reachable from a candidate
	for i := range nodes {
		n := &nodes[i]
		if cand[n.ID] {
			from[n.ID] = true
			continue
		}
		if n.Role != graph.RoleOp {
			continue
		}
		for j, in := range n.Inputs {
			if from[in] && !n.Op.Kind.NoGrad(j) {
				from[n.ID] = true
				break
			}
		}
	}
	seed := make(map[int64]bool)
	for _, id := range spec.Outputs {
		n, _ := g.Node(id)
		if n.Role == graph.RoleLearnable {
			a.learnOuts = append(a.learnOuts, id)
			continue
		}
		a.opOutputs = append(a.opOutputs, id)
		if from[id] {
			a.seeded = append(a.seeded, id)
			seed[id] = true
		}
	}
	if spec.HasLoss && from[spec.Loss] {
		a.lossSeeded = true
		seed[spec.Loss] = true
	}
	to := make(map[int64]bool) // reaches a seed
	for i := len(nodes) - 1; i >= 0; i-- {
		n := &nodes[i]
		if seed[n.ID] {
			to[n.ID] = true
		}
		if !to[n.ID] || n.Role != graph.RoleOp {
			continue
		}
		for j, in := range n.Inputs {
			if !n.Op.Kind.NoGrad(j) {
				to[in] = true
			}
		}
	}
	for _, id := range spec.Inputs {
		a.activeIn[id] = to[id]
	}
	for i, id := range a.learn {
		a.activeLearn[i] = to[id]
	}
	// Consumers, counted here: Graph.Consumers builds a cache, which two
	// sessions opened at once on one spec must not race on.
	consumers := make(map[int64][]int64)
	for i := range nodes {
		for j, in := range nodes[i].Inputs {
			if !contains(nodes[i].Inputs[:j], in) {
				consumers[in] = append(consumers[in], nodes[i].ID)
			}
		}
	}
	shared := make(map[int64]bool)
	for _, id := range a.learnOuts {
		shared[id] = true
	}
	for i, id := range a.learn {
		if !a.activeLearn[i] || shared[id] {
			continue
		}
		cs := consumers[id]
		if len(cs) != 1 {
			continue
		}
		c, _ := g.Node(cs[0])
		w, _ := g.Node(id)
		if c.Op.Kind != graph.KindMatMul || len(c.Inputs) != 2 || c.Inputs[1] != id || c.Inputs[0] == id ||
			c.Op.Bool("trans_a") || c.Op.Bool("trans_b") || len(w.Shape) != 2 || len(c.Shape) != 2 {
			continue
		}
		if act, _ := g.Node(c.Inputs[0]); len(act.Shape) != 2 || act.DType != w.DType {
			continue
		}
		a.deferred = append(a.deferred, deferredGrad{param: i, matmul: c.ID, act: c.Inputs[0]})
	}
	return a
}

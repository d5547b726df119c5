package graph

// Cost is what one node costs to compute and to move.
type Cost struct {
	FLOPs       int64 // floating-point operations of one forward evaluation
	OutputBytes int64 // bytes of the node's output value
	ParamBytes  int64 // bytes of the node's value when it is a learnable parameter
}

// Cost returns the cost of node id (the zero Cost for an unknown id).
func (g *Graph) Cost(id int64) Cost {
	n, ok := g.Node(id)
	if !ok {
		return Cost{}
	}
	out := n.Shape.Size() * int64(n.DType.Size())
	c := Cost{OutputBytes: out}
	if n.Role == RoleLearnable {
		c.ParamBytes = out
	}
	if n.Role == RoleOp {
		c.FLOPs = n.Shape.Size()
	}
	return c
}

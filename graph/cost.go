package graph

import "math"

// Cost is what one node costs to compute and to move, for the partitioner
// and for reports. Every count is for one forward evaluation of the node,
// derived from shapes and attributes alone; no count is measured.
//
// Bytes. OutputBytes is the number of elements of the node's value times
// its dtype's size on the wire (float64 and int 8, float32 4, bool 1), and
// a scalar is one element. ParamBytes equals OutputBytes for a learnable
// parameter and is 0 for every other node. InputBytes is the sum of the
// OutputBytes of the node's inputs, one term per listed input (x⊙x reads
// x twice).
//
// FLOPs, with e the number of elements of the node's output, by kind:
//
//	input, constant                              0
//	abs sign ceil floor neg square cube          e
//	sqrt inverse inverse_sqrt                    e (one hardware instruction each)
//	sin cos exp log log2 tanh sigmoid            4e (transcendentals, see below)
//	log1p expm1 softplus                         4e
//	add sub mul div, comparisons                 e
//	pow                                          4e (exp of a product with a log)
//	broadcast_* (same weight as the plain op)    e, or 4e for broadcast_pow: the
//	                                             expansion is data movement, free
//	matmul (m,k)×(k,n)                           2mkn, k read after trans_a
//	matvec (m,n)×(n)                             2mn
//	vecdot (n)·(n)                               2n
//	outer (m)⊗(n)                                mn
//	batched_matmul (b…,m,k)×(b…,k,n)             2·b·m·k·n, b the product of the batch dims
//	tensordot                                    2 × e × the product of the contracted dims
//	sum, max                                     the input's element count
//	softmax (and log-softmax)                    5e: a max, a subtraction, an
//	                                             exponential, a sum and a division
//	                                             (or a log) per element
//	maxpool2d, avgpool2d                         e × kernel height × kernel width
//	global_avgpool2d                             the input's element count
//	dropout                                      e (a draw and a multiply, counted as one)
//	batchnorm                                    8e: mean and variance passes (3),
//	                                             normalising (2), scale and shift (2),
//	                                             running statistics (1)
//	im2col                                       0: pure data movement (see OutputBytes)
//	reshape transpose slice concat at
//	size_of repeat                               0
//
// A transcendental counts 4: vectorised libraries evaluate one in a few
// fused multiply-adds per element, which is more than an arithmetic op and
// far less than a scalar libm call; 4 keeps an exp-heavy part from looking
// free next to a matmul without letting it dominate. A convolution is
// im2col, reshape, matmul, reshape, transpose in the IR, so its cost is
// the matmul's 2mkn: it falls out of its parts.
//
// Counts saturate at math.MaxInt64 instead of overflowing.
type Cost struct {
	FLOPs       int64 // floating-point operations of one forward evaluation
	OutputBytes int64 // bytes of the node's output value
	ParamBytes  int64 // bytes of the node's value when it is a learnable parameter
	InputBytes  int64 // bytes of the input values the node reads
}

// transcendentalFLOPs is the FLOP count of one transcendental function.
const transcendentalFLOPs = 4

// Cost returns the cost of node id (the zero Cost for an unknown id). It
// takes time in the rank of the node and of its inputs, and allocates
// nothing.
func (g *Graph) Cost(id int64) Cost {
	p, ok := g.index[id]
	if !ok {
		return Cost{}
	}
	return g.costAt(p)
}

// TotalCost is the sum of the costs of all nodes.
func (g *Graph) TotalCost() Cost {
	var t Cost
	for p := range g.nodes {
		c := g.costAt(p)
		t.FLOPs = addSat(t.FLOPs, c.FLOPs)
		t.OutputBytes = addSat(t.OutputBytes, c.OutputBytes)
		t.ParamBytes = addSat(t.ParamBytes, c.ParamBytes)
		t.InputBytes = addSat(t.InputBytes, c.InputBytes)
	}
	return t
}

func (g *Graph) costAt(p int) Cost {
	n := &g.nodes[p]
	e := shapeElems(n.Shape)
	c := Cost{OutputBytes: nodeBytes(n, e)}
	if n.Role == RoleLearnable {
		c.ParamBytes = c.OutputBytes
	}
	for _, id := range n.Inputs {
		if in := g.lookupInput(id); in != nil {
			c.InputBytes = addSat(c.InputBytes, nodeBytes(in, shapeElems(in.Shape)))
		}
	}
	if n.Role == RoleOp {
		c.FLOPs = g.nodeFLOPs(n, e)
	}
	return c
}

// lookupInput returns node id, or nil.
func (g *Graph) lookupInput(id int64) *Node {
	if p, ok := g.index[id]; ok {
		return &g.nodes[p]
	}
	return nil
}

func (g *Graph) nodeFLOPs(n *Node, e int64) int64 {
	op := n.Op
	if impl, ok := customKinds[op.Kind]; ok {
		in := make([]*Node, len(n.Inputs))
		for i, id := range n.Inputs {
			in[i] = g.lookupInput(id)
		}
		return impl.flops(op, n, in)
	}
	switch op.Kind {
	case KindSin, KindCos, KindExp, KindLog, KindLog2, KindTanh, KindSigmoid, KindLog1p, KindExpm1, KindSoftplus,
		KindPow, KindBroadcastPow:
		return mulSat(e, transcendentalFLOPs)
	case KindMatMul:
		if a := g.nthInput(n, 0); a != nil && len(a.Shape) == 2 {
			k := a.Shape[1]
			if op.Bool("trans_a") {
				k = a.Shape[0]
			}
			return mulSat(mulSat(2, e), int64(k))
		}
		return 0
	case KindMatVec:
		if a := g.nthInput(n, 0); a != nil {
			return mulSat(2, shapeElems(a.Shape))
		}
		return 0
	case KindVecDot:
		if a := g.nthInput(n, 0); a != nil {
			return mulSat(2, shapeElems(a.Shape))
		}
		return 0
	case KindOuter:
		return e
	case KindBatchedMatMul:
		if a := g.nthInput(n, 0); a != nil && len(a.Shape) >= 2 {
			r := len(a.Shape)
			k := a.Shape[r-1]
			if op.Bool("trans_a") {
				k = a.Shape[r-2]
			}
			return mulSat(mulSat(2, e), int64(k))
		}
		return 0
	case KindTensordot:
		a := g.nthInput(n, 0)
		if a == nil {
			return 0
		}
		f := mulSat(2, e)
		for _, ax := range op.Ints("a_axes") {
			if ax >= 0 && ax < len(a.Shape) {
				f = mulSat(f, int64(a.Shape[ax]))
			}
		}
		return f
	case KindSum, KindMax, KindGlobalAvgPool2D:
		if a := g.nthInput(n, 0); a != nil {
			return shapeElems(a.Shape)
		}
		return 0
	case KindSoftmax:
		return mulSat(e, 5)
	case KindBatchNorm:
		return mulSat(e, 8)
	case KindMaxPool2D, KindAvgPool2D:
		f := e
		for _, k := range op.Ints("kernel") {
			f = mulSat(f, int64(k))
		}
		return f
	case KindIm2Col, KindReshape, KindTranspose, KindSlice, KindConcat, KindAt, KindSizeOf, KindRepeat,
		KindInput, KindConstant:
		return 0
	}
	// The remaining elementwise kinds, unary, binary and broadcast, and
	// dropout: one per output element.
	return e
}

// nthInput returns the i-th input of n, or nil.
func (g *Graph) nthInput(n *Node, i int) *Node {
	if i >= len(n.Inputs) {
		return nil
	}
	return g.lookupInput(n.Inputs[i])
}

// shapeElems is the element count of s (1 for a scalar), saturating.
func shapeElems(s Shape) int64 {
	n := int64(1)
	for _, d := range s {
		n = mulSat(n, int64(d))
	}
	return n
}

func nodeBytes(n *Node, e int64) int64 { return mulSat(e, int64(n.DType.Size())) }

// mulSat multiplies non-negative counts, saturating at math.MaxInt64; a
// negative factor (never in a valid graph) gives 0.
func mulSat(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// addSat adds non-negative counts, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

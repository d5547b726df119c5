package plan

import (
	"github.com/rookery-ml/rookery/graph"
)

// backward derives the gradient launches, in reverse graph order: each op
// adds its contribution to the gradient of each input that needs one.
// Gradient buffers of op nodes come from a pool: one is taken at a node's
// first contribution and given back once the node's own gradient has been
// passed on to its inputs.
func (l *lowerer) backward() error {
	g, spec, p := l.g, l.spec, l.p
	nodes := g.Nodes()
	from := map[int64]bool{}
	for _, id := range spec.Inputs {
		from[id] = true
	}
	for _, id := range p.Learn {
		from[id] = true
	}
	for i := range nodes {
		n := &nodes[i]
		if n.Role != graph.RoleOp {
			continue
		}
		for j, in := range n.Inputs {
			if from[in] && !n.Op.Kind.NoGrad(j) {
				from[n.ID] = true
			}
		}
	}
	to := map[int64]bool{}
	for _, id := range spec.Outputs {
		to[id] = true
	}
	if spec.HasLoss {
		to[spec.Loss] = true
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := &nodes[i]
		if !to[n.ID] || n.Role != graph.RoleOp {
			continue
		}
		for j, in := range n.Inputs {
			if !n.Op.Kind.NoGrad(j) {
				to[in] = true
			}
		}
	}
	need := func(id int64) bool { return from[id] && to[id] }

	for _, id := range spec.Outputs {
		n, _ := g.Node(id)
		b := l.buf(BufGradIn, id, int(n.Shape.Size()), "")
		p.GradIn[id] = b
		if i, ok := l.learn[id]; ok {
			l.unary(id, UCopy, true, shape4(n.Shape), strides4(shape4(n.Shape)), b, p.Accums[i])
			continue
		}
		l.grad[id], l.written[id] = b, true
	}
	if spec.HasLoss {
		b, ok := p.GradIn[spec.Loss]
		if !ok {
			b = l.buf(BufGradIn, spec.Loss, 1, "")
			p.GradIn[spec.Loss] = b
			l.grad[spec.Loss] = b
		}
		l.emit(spec.Loss, "fill", 1, ival(1), sval(1), ptr(b))
		l.written[spec.Loss] = true
	}
	for i, id := range p.Learn {
		l.grad[id], l.written[id] = p.Accums[i], true
	}
	for _, id := range spec.Inputs {
		if need(id) {
			n, _ := g.Node(id)
			b := l.buf(BufGrad, id, int(n.Shape.Size()), "")
			p.GradOut[id] = b
			l.grad[id] = b
		}
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := &nodes[i]
		if n.Role != graph.RoleOp || !need(n.ID) || !l.written[n.ID] {
			continue
		}
		if c := l.convs[n.ID]; c != nil {
			l.backwardConv(c, l.grad[n.ID], need)
			l.release(n.ID)
			continue
		}
		if d := l.dense[n.ID]; d != nil {
			l.backwardDense(d, l.grad[n.ID], need)
			l.release(n.ID)
			continue
		}
		for j, in := range n.Inputs {
			if n.Op.Kind.NoGrad(j) || !need(in) {
				continue
			}
			if err := l.backwardOp(n, j); err != nil {
				return err
			}
		}
		l.release(n.ID)
	}
	p.Backward, l.cur = l.cur, nil
	return nil
}

// alloc takes a pooled gradient buffer of at least elems elements.
func (l *lowerer) alloc(elems int) int {
	best := -1
	for i, b := range l.free {
		e := l.p.Buffers[b].Elems
		if e >= elems && (best < 0 || e < l.p.Buffers[l.free[best]].Elems) {
			best = i
		}
	}
	if best >= 0 {
		b := l.free[best]
		l.free = append(l.free[:best], l.free[best+1:]...)
		return b
	}
	return l.buf(BufGrad, -1, elems, "")
}

func (l *lowerer) put(b int) { l.free = append(l.free, b) }

// pass adds dy, node n's gradient, to x's gradient: where this is x's
// first contribution and x is an op node, by handing x the buffer of dy
// instead of copying it (once per node n: two inputs must not share a
// buffer), otherwise by a copy.
func (l *lowerer) pass(n, x *graph.Node, dy int, shape [4]int) {
	if _, has := l.grad[x.ID]; !has && x.Role == graph.RoleOp && !l.lent[n.ID] {
		l.grad[x.ID], l.written[x.ID] = dy, true
		l.lent[n.ID] = true
		return
	}
	dx, acc := l.target(x.ID)
	l.unary(n.ID, UCopy, acc, shape, strides4(shape), dy, dx)
}

// release gives node id's gradient buffer back to the pool when it is a
// pooled one that was not handed on to an input (pass).
func (l *lowerer) release(id int64) {
	b, ok := l.grad[id]
	if !ok || l.p.Buffers[b].Node >= 0 || l.lent[id] {
		return
	}
	l.put(b)
	delete(l.grad, id)
}

// target returns the buffer of the gradient of node id and whether a
// contribution must be added to it (rather than written).
func (l *lowerer) target(id int64) (int, bool) {
	b, ok := l.grad[id]
	if !ok {
		n, _ := l.g.Node(id)
		b = l.alloc(int(n.Shape.Size()))
		l.grad[id] = b
	}
	acc := l.written[id]
	l.written[id] = true
	return b, acc
}

// backwardOp adds node n's contribution to the gradient of its input j.
func (l *lowerer) backwardOp(n *graph.Node, j int) error {
	p := l.p
	dy := l.grad[n.ID]
	x := l.in(n, j)
	o := shape4(n.Shape)
	x4 := shape4(x.Shape)
	k := n.Op.Kind
	switch k {
	case graph.KindReshape:
		l.pass(n, x, dy, x4)
		return nil
	case graph.KindDropout:
		// Gorgonia differentiates dropout as dy/p where the output is
		// not 0, and as 0 where it is or when p is 0, in evaluation mode
		// too, where the op is the identity: not its derivative. As for
		// log2 and inverse_sqrt, the gradient stays on the tape machine.
		return l.unsupported(n, "gradient differs from the tape machine's (Gorgonia's rule), so the part is left to the tape machine")
	}
	if code, ok := unaryCodes[k]; ok {
		if code == ULog2 || code == UInverseSqrt {
			// Gorgonia differentiates log2 as ln2/x and inverse_sqrt as
			// −1/(2y³); a lowered part must agree with the tape-machine parts it trains
			// beside, so these gradients stay on the tape machine.
			return l.unsupported(n, "gradient differs from the tape machine's (Gorgonia's rule), so the part is left to the tape machine")
		}
		dx, acc := l.target(x.ID)
		nel := int(n.Shape.Size())
		l.emit(n.ID, "unary_grad", nel, ival(code), ival(nel), ival(bools(acc)), ptr(p.Value[x.ID]), ptr(p.Value[n.ID]), ptr(dy), ptr(dx))
		return nil
	}
	if _, ok := binaryCodes[k]; ok {
		return l.binaryGrad(n, j, dy)
	}
	switch k {
	case graph.KindMatMul, graph.KindMatVec, graph.KindVecDot, graph.KindOuter:
		d, _ := l.matmul(n)
		a, b := p.Value[n.Inputs[0]], p.Value[n.Inputs[1]]
		dx, acc := l.target(x.ID)
		beta := 0.0
		if acc {
			beta = 1
		}
		switch {
		case j == 0 && !d.ta:
			l.rowGemm(n.ID, dx, dy, b, false, !d.tb, d.m, d.k, d.n, beta)
		case j == 0:
			l.rowGemm(n.ID, dx, b, dy, d.tb, true, d.k, d.m, d.n, beta)
		case !d.tb:
			l.rowGemm(n.ID, dx, a, dy, !d.ta, false, d.k, d.n, d.m, beta)
		default:
			l.rowGemm(n.ID, dx, dy, a, true, d.ta, d.n, d.k, d.m, beta)
		}
	case graph.KindSum:
		ro, _, _ := l.reduction(n, x)
		dx, acc := l.target(x.ID)
		l.unary(n.ID, UCopy, acc, x4, bstrides(ro, x4), dy, dx)
	case graph.KindMax:
		ro, _, _ := l.reduction(n, x)
		mask := l.alloc(size4(x4))
		l.binary(n.ID, BEq, false, x4, strides4(x4), bstrides(ro, x4), p.Value[x.ID], p.Value[n.ID], mask)
		dx, acc := l.target(x.ID)
		l.binary(n.ID, BMul, acc, x4, strides4(x4), bstrides(ro, x4), mask, dy, dx)
		l.put(mask)
	case graph.KindTranspose:
		perm, _ := perm4(n.Op.Ints("perm"), len(x.Shape))
		ds := strides4(o)
		var inv [4]int
		for jj := range perm {
			inv[perm[jj]] = ds[jj]
		}
		dx, acc := l.target(x.ID)
		l.unary(n.ID, UCopy, acc, x4, inv, dy, dx)
	case graph.KindConcat:
		ys := strides4(o)
		ax := n.Op.Int("axis") + 4 - len(n.Shape)
		dx, acc := l.target(x.ID)
		l.unaryAt(n.ID, UCopy, acc, x4, ys, ptrAt(dy, l.concatOffset(n, j)*ys[ax]), dx)
	case graph.KindSlice:
		v4, xs, off := l.sliceView(n, x)
		dx, acc := l.target(x.ID)
		if !acc {
			nx := size4(x4)
			l.emit(n.ID, "fill", nx, ival(nx), sval(0), ptr(dx))
		}
		l.scatter(n.ID, true, v4, strides4(v4), xs, dy, ptrAt(dx, off))
	case graph.KindSoftmax:
		rows, cols, _ := l.softmaxDims(n)
		dx, acc := l.target(x.ID)
		l.emit(n.ID, "softmax_grad", rows, ival(rows), ival(cols), ival(bools(n.Op.Bool("log"))), ival(bools(acc)), ptr(p.Value[n.ID]), ptr(dy), ptr(dx))
	case graph.KindIm2Col:
		c, _ := l.conv(n)
		dx, acc := l.target(x.ID)
		nx := int(x.Shape.Size())
		l.emit(n.ID, "col2im", nx, cat(ints(nx, bools(acc)), ints(c[1:]...), []Arg{ptr(dy), ptr(dx)})...)
	case graph.KindMaxPool2D:
		c := l.pool(n)
		dx, acc := l.target(x.ID)
		nx := int(x.Shape.Size())
		l.emit(n.ID, "maxpool_grad", nx, cat(ints(nx, bools(acc)), ints(c[:]...), []Arg{ptr(p.Value[x.ID]), ptr(p.Value[n.ID]), ptr(dy), ptr(dx)})...)
	default:
		return l.unsupported(n, "no gradient lowering for this op kind")
	}
	return nil
}

// binaryGrad adds the contribution of an elementwise or broadcasting
// binary op to operand j's gradient. Where the operand was broadcast,
// the contribution is summed over the repeated axes.
func (l *lowerer) binaryGrad(n *graph.Node, j int, dy int) error {
	p := l.p
	as, bs, err := l.operandStrides(n)
	if err != nil {
		return err
	}
	o := shape4(n.Shape)
	full := strides4(o)
	a, b := p.Value[n.Inputs[0]], p.Value[n.Inputs[1]]
	st := as
	if j == 1 {
		st = bs
	}
	s4 := l.operandShape(n, st)
	x := l.in(n, j)
	direct := size4(s4) == size4(o) // the operand is not broadcast
	// into adds scale·src (of the output's shape) to the operand's gradient.
	into := func(src int, scale float64) {
		if direct && scale == 1 {
			l.pass(n, x, src, o)
			return
		}
		dx, acc := l.target(x.ID)
		var r [4]int
		for i := range r {
			r[i] = 1
			if s4[i] == 1 && o[i] != 1 {
				r[i] = o[i]
			}
		}
		l.reduce(n.ID, RSum, acc, scale, s4, r, full, src, dx)
	}
	// prod computes f(u, v) over the output's shape, into the gradient
	// directly when the operand is not broadcast, or via a temporary.
	prod := func(op int, u int, us [4]int, v int, vs [4]int, scale float64) {
		if direct && scale == 1 {
			dx, acc := l.target(x.ID)
			l.binary(n.ID, op, acc, o, us, vs, u, v, dx)
			return
		}
		t := l.alloc(size4(o))
		l.binary(n.ID, op, false, o, us, vs, u, v, t)
		into(t, scale)
		l.put(t)
	}
	switch binaryCodes[n.Op.Kind] {
	case BAdd:
		into(dy, 1)
	case BSub:
		if j == 0 {
			into(dy, 1)
		} else {
			into(dy, -1)
		}
	case BMul:
		if j == 0 {
			prod(BMul, dy, full, b, bs, 1)
		} else {
			prod(BMul, dy, full, a, as, 1)
		}
	case BDiv:
		if j == 0 {
			prod(BDiv, dy, full, b, bs, 1)
			break
		}
		// d(a/b)/db = −(dy/b)·(a/b)
		t := l.alloc(size4(o))
		l.binary(n.ID, BDiv, false, o, full, bs, dy, b, t)
		prod(BMul, t, full, p.Value[n.ID], full, -1)
		l.put(t)
	case BPow:
		code := BPowGradA
		if j == 1 {
			code = BPowGradB
		}
		t := l.alloc(size4(o))
		l.binary(n.ID, code, false, o, as, bs, a, b, t)
		prod(BMul, t, full, dy, full, 1)
		l.put(t)
	default:
		return l.unsupported(n, "no gradient lowering for this op kind")
	}
	return nil
}

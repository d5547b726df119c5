package plan

import (
	"slices"

	"github.com/rookery-ml/rookery/graph"
)

// Gorgonia's Conv2d is a chain of five nodes: im2col of the input into
// (b, oh, ow, c·kh·kw) patches, a reshape to (b·oh·ow, c·kh·kw), a matmul
// with the (cout, c·kh·kw) filter transposed, a reshape to (b, oh, ow,
// cout) and a transpose to (b, cout, oh, ow). Lowered node by node, that
// is a patch matrix as large as the input times kh·kw, written once and
// read by the product forward and again backward, and two strided copies
// of the output. With WithHostKernels, Lower runs such a chain as one
// convolution (kernels conv, conv_filter_grad, conv_input_grad) that a
// host device computes a few images at a time: each chunk's patches are
// made in a cache-sized scratch buffer, multiplied there, and made again
// for the backward pass instead of being kept; the output is (cout, b,
// oh·ow), which a copy in contiguous oh·ow runs turns into (b, cout, oh,
// ow). Where a per-filter bias and a ReLU follow (Gorgonia's Rectify of a
// BroadcastAdd), that copy adds the bias and writes the ReLU's mask and
// output in the same pass (bias_relu, bias_relu_grad); and where a 2×2
// max pool follows, the convolution pools its chunks as it makes them,
// keeping per window only which pixel the gradient goes to
// (conv_bias_relu_pool, bias_relu_pool_grad).

// LowerOption configures Lower.
type LowerOption func(*lowerConfig)

type lowerConfig struct {
	hostKernels bool
}

// WithHostKernels lets Lower use the kernels that only host devices run
// (HostKernelNames): convolutions lowered whole, in a CPU's layout. The
// CUDA executor's PTX does not have them.
func WithHostKernels() LowerOption { return func(c *lowerConfig) { c.hostKernels = true } }

// HostKernelNames lists the kernels that Lower uses only WithHostKernels.
func HostKernelNames() []string {
	return []string{"bias_relu", "bias_relu_grad", "bias_relu_pool_grad", "bias_relu_rows", "bias_relu_rows_grad",
		"conv", "conv_bias_relu_pool", "conv_filter_grad", "conv_input_grad"}
}

// conv is a Conv2d chain lowered whole: the im2col node, its reshape,
// the matmul, its reshape and the transpose that ends the chain.
type conv struct {
	ic, r1, mm, r2, tr *graph.Node
	x, f               *graph.Node // the image and the (cout, c·kh·kw) filter
	b, cout, z, hw     int         // batch, filters, patch size, oh·ow
	// A bias and a ReLU that follow, lowered with the convolution: add =
	// tr + bias (broadcast over batch and pixels), mask = add >= 0, out =
	// add · mask; nil when there are none.
	add, mask, out, bias *graph.Node
	// A 2×2 max pool of stride 2 that tiles the ReLU's output exactly,
	// lowered with it: the ReLU's output and mask are not kept, only the
	// pool's output and, per window, which pixel its gradient goes to.
	pool  *graph.Node
	route int // the buffer of the routes
}

// findConvs marks the Conv2d chains of the part that can be lowered
// whole: each inner node used only by the next, none an output.
func (l *lowerer) findConvs() {
	l.convs = map[int64]*conv{}
	l.inConv = map[int64]bool{}
	uses := map[int64]int{}
	cons := map[int64][]int64{}
	nodes := l.g.Nodes()
	for i := range nodes {
		for _, in := range nodes[i].Inputs {
			uses[in]++
			if !slices.Contains(cons[in], nodes[i].ID) {
				cons[in] = append(cons[in], nodes[i].ID)
			}
		}
	}
	for _, id := range l.spec.Outputs {
		uses[id] += 2 // never fused
	}
	if l.spec.HasLoss {
		uses[l.spec.Loss] += 2
	}
	only := func(id int64, kind graph.OpKind) (*graph.Node, bool) {
		n, ok := l.g.Node(id)
		return n, ok && n.Role == graph.RoleOp && n.Op.Kind == kind && uses[id] == 1
	}
	for i := range nodes {
		tr := &nodes[i]
		if tr.Role != graph.RoleOp || tr.Op.Kind != graph.KindTranspose || !slices.Equal(tr.Op.Ints("perm"), []int{0, 3, 1, 2}) {
			continue
		}
		r2, ok := only(tr.Inputs[0], graph.KindReshape)
		if !ok {
			continue
		}
		mm, ok := only(r2.Inputs[0], graph.KindMatMul)
		if !ok || mm.Op.Bool("trans_a") || !mm.Op.Bool("trans_b") {
			continue
		}
		r1, ok := only(mm.Inputs[0], graph.KindReshape)
		if !ok {
			continue
		}
		ic, ok := only(r1.Inputs[0], graph.KindIm2Col)
		if !ok {
			continue
		}
		x, f := l.in(ic, 0), l.in(mm, 1)
		if len(ic.Shape) != 4 || len(x.Shape) != 4 || len(f.Shape) != 2 || len(r2.Shape) != 4 || len(tr.Shape) != 4 {
			continue
		}
		c := &conv{ic: ic, r1: r1, mm: mm, r2: r2, tr: tr, x: x, f: f,
			b: ic.Shape[0], cout: f.Shape[0], z: ic.Shape[3], hw: ic.Shape[1] * ic.Shape[2]}
		if f.Shape[1] != c.z || r2.Shape[3] != c.cout || !slices.Equal(tr.Shape, graph.Shape{c.b, c.cout, ic.Shape[1], ic.Shape[2]}) {
			continue
		}
		l.convs[tr.ID] = c
		for _, n := range []*graph.Node{ic, r1, mm, r2} {
			l.inConv[n.ID] = true
		}
		if l.findBiasReLU(c, uses, cons) {
			for _, n := range []*graph.Node{c.add, c.mask} {
				l.inConv[n.ID] = true
			}
			l.inConv[c.tr.ID] = true
			l.convs[c.out.ID] = c
			delete(l.convs, tr.ID)
			if l.findPool(c, uses, cons) {
				l.inConv[c.out.ID] = true
				l.convs[c.pool.ID] = c
				delete(l.convs, c.out.ID)
			}
		}
	}
	l.findDense(uses, cons)
}

// findBiasReLU finds out = add·(add >= 0), add = tr + bias, after the
// convolution c: Gorgonia's Rectify of a BroadcastAdd of a per-filter
// bias, each inner node used only as that pattern uses it.
func (l *lowerer) findBiasReLU(c *conv, uses map[int64]int, cons map[int64][]int64) bool {
	add, mask, out, bias, ok := l.matchBiasReLU(c.tr, [4]int{0, 1, 0, 0}, uses, cons)
	if ok {
		c.add, c.mask, c.out, c.bias = add, mask, out, bias
	}
	return ok
}

// matchBiasReLU finds out = add·(add >= 0), add = x + bias, with the
// bias read along x's dims with strides bs (rank 4, 0 where it is
// broadcast): Gorgonia's Rectify of a BroadcastAdd, x used only by the
// add, each inner node only as the pattern uses it.
func (l *lowerer) matchBiasReLU(x *graph.Node, bs4 [4]int, uses map[int64]int, cons map[int64][]int64) (add, mask, out, bias *graph.Node, ok bool) {
	if uses[x.ID] != 1 || len(cons[x.ID]) != 1 {
		return
	}
	add, _ = l.g.Node(cons[x.ID][0])
	if add.Role != graph.RoleOp || (add.Op.Kind != graph.KindBroadcastAdd && add.Op.Kind != graph.KindAdd) || add.Inputs[0] != x.ID {
		return
	}
	as, bs, err := l.operandStrides(add)
	o := shape4(x.Shape)
	for i := range bs { // a stride along a dim of 1 reads nothing
		if o[i] == 1 {
			bs[i] = 0
		}
	}
	if err != nil || as != strides4(o) || bs != bs4 || !add.Shape.Eq(x.Shape) {
		return
	}
	bias = l.in(add, 1)
	if uses[add.ID] != 2 || len(cons[add.ID]) != 2 {
		return
	}
	for _, id := range cons[add.ID] {
		n, _ := l.g.Node(id)
		switch n.Op.Kind {
		case graph.KindGte:
			mask = n
		case graph.KindMul:
			out = n
		}
	}
	if mask == nil || out == nil || mask.Inputs[0] != add.ID || uses[mask.ID] != 1 || len(cons[mask.ID]) != 1 || cons[mask.ID][0] != out.ID {
		return
	}
	if !(out.Inputs[0] == add.ID && out.Inputs[1] == mask.ID) || !out.Shape.Eq(x.Shape) || !mask.Shape.Eq(x.Shape) {
		return
	}
	zero := l.in(mask, 1)
	if zero.Role != graph.RoleConstant || zero.Shape.Size() != 1 || zero.Value == nil || scalarOf(zero.Value) != 0 || !mask.Op.Bool("ret_same") {
		return
	}
	return add, mask, out, bias, true
}

// dense is a bias and a ReLU after a matrix (x: rows × cols, the bias
// along cols), lowered as one pass each way.
type dense struct {
	x, add, mask, out, bias *graph.Node
}

// findDense marks the biases and ReLUs after matrices (a dense layer's
// x·W + b, then Rectify) that are not part of a convolution.
func (l *lowerer) findDense(uses map[int64]int, cons map[int64][]int64) {
	l.dense = map[int64]*dense{}
	nodes := l.g.Nodes()
	for i := range nodes {
		x := &nodes[i]
		if x.Role != graph.RoleOp || len(x.Shape) != 2 || l.inConv[x.ID] || l.convs[x.ID] != nil {
			continue
		}
		add, mask, out, bias, ok := l.matchBiasReLU(x, [4]int{0, 0, 0, 1}, uses, cons)
		if !ok || l.inConv[add.ID] || l.inConv[out.ID] {
			continue
		}
		l.dense[out.ID] = &dense{x: x, add: add, mask: mask, out: out, bias: bias}
		l.inConv[add.ID], l.inConv[mask.ID] = true, true
	}
}

// forwardDense emits out = relu(x + bias) and its mask in one pass.
func (l *lowerer) forwardDense(d *dense) {
	p := l.p
	mask := l.buf(BufActivation, d.mask.ID, int(d.mask.Shape.Size()), "")
	out := l.buf(BufActivation, d.out.ID, int(d.out.Shape.Size()), "")
	p.Value[d.mask.ID], p.Value[d.out.ID] = mask, out
	n, cols := int(d.out.Shape.Size()), d.out.Shape[1]
	l.emit(d.out.ID, "bias_relu_rows", n, ival(n), ival(cols), ptr(p.Value[d.x.ID]), ptr(p.Value[d.bias.ID]), ptr(mask), ptr(out))
}

// backwardDense adds, from dy, the gradient of out, dy·mask to x's
// gradient and its sum over rows to the bias's, in one pass.
func (l *lowerer) backwardDense(d *dense, dy int, need func(int64) bool) {
	p := l.p
	db, accB := -1, false
	if need(d.bias.ID) {
		db, accB = l.target(d.bias.ID)
	}
	dx, accX := -1, false
	if need(d.x.ID) {
		dx, accX = l.target(d.x.ID)
	}
	if db < 0 && dx < 0 {
		return
	}
	dbArg, dxArg := ptr(dy), ptr(dy) // not written where there is no such gradient
	if db >= 0 {
		dbArg = ptr(db)
	}
	if dx >= 0 {
		dxArg = ptr(dx)
	}
	n, cols := int(d.out.Shape.Size()), d.out.Shape[1]
	l.emit(d.out.ID, "bias_relu_rows_grad", n, ival(n), ival(cols), ival(bools(db >= 0)), ival(bools(accB)), ival(bools(dx >= 0)), ival(bools(accX)),
		ptr(dy), ptr(p.Value[d.mask.ID]), dbArg, dxArg)
}

// findPool finds a 2×2 max pool of stride 2 without padding after the
// ReLU of c, tiling its output exactly, the ReLU's only use.
func (l *lowerer) findPool(c *conv, uses map[int64]int, cons map[int64][]int64) bool {
	if uses[c.out.ID] != 1 || len(cons[c.out.ID]) != 1 {
		return false
	}
	pl, _ := l.g.Node(cons[c.out.ID][0])
	if pl.Role != graph.RoleOp || pl.Op.Kind != graph.KindMaxPool2D {
		return false
	}
	d := l.pool(pl)
	h, w, oh, ow := d[1], d[2], d[3], d[4]
	if d[5] != 2 || d[6] != 2 || d[7] != 0 || d[8] != 0 || d[9] != 2 || d[10] != 2 || h != 2*oh || w != 2*ow {
		return false
	}
	if pad := pl.Op.Ints("pad"); slices.ContainsFunc(pad, func(v int) bool { return v != 0 }) {
		return false
	}
	c.pool = pl
	return true
}

// forwardConv emits a convolution lowered whole: y = W·patches as (cout,
// b, oh·ow), in the matmul node's buffer, then the output (b, cout, oh,
// ow) copied from it in oh·ow runs, or its bias and ReLU, or those and
// the pool. With the pool, one launch does it all a chunk of images at a
// time, y never leaving the cache.
func (l *lowerer) forwardConv(c *conv) {
	p := l.p
	if c.pool != nil {
		pooled := l.buf(BufActivation, c.pool.ID, int(c.pool.Shape.Size()), "")
		route := l.buf(BufActivation, c.pool.ID, int(c.pool.Shape.Size()), "route")
		p.Value[c.pool.ID], c.route = pooled, route
		l.emit(c.pool.ID, "conv_bias_relu_pool", int(c.mm.Shape.Size()), cat(l.convArgs(c),
			[]Arg{ptr(p.Value[c.x.ID]), ptr(p.Value[c.f.ID]), ptr(p.Value[c.bias.ID]), ptr(route), ptr(pooled)})...)
		return
	}
	y := l.buf(BufActivation, c.mm.ID, int(c.mm.Shape.Size()), "")
	p.Value[c.mm.ID] = y
	n := c.b * c.hw
	l.emit(c.tr.ID, "conv", int(c.mm.Shape.Size()), cat(l.convArgs(c), []Arg{ptr(p.Value[c.x.ID]), ptr(p.Value[c.f.ID]), ptr(y)})...)
	if c.out != nil {
		// mask, out (b, cout, oh·ow) from y (cout, b, oh·ow) and the bias
		mask := l.buf(BufActivation, c.mask.ID, int(c.mask.Shape.Size()), "")
		out := l.buf(BufActivation, c.out.ID, int(c.out.Shape.Size()), "")
		p.Value[c.mask.ID], p.Value[c.out.ID] = mask, out
		nel := c.b * c.cout * c.hw
		l.emit(c.out.ID, "bias_relu", nel, ival(nel), ival(c.b), ival(c.cout), ival(c.hw), ptr(y), ptr(p.Value[c.bias.ID]), ptr(mask), ptr(out))
		return
	}
	out := l.buf(BufActivation, c.tr.ID, int(c.tr.Shape.Size()), "")
	p.Value[c.tr.ID] = out
	o := shape4(c.tr.Shape)
	// out[bi, co, r] = y[co, bi, r]
	l.unary(c.tr.ID, UCopy, false, o, [4]int{c.hw, n, o[3], 1}, y, out)
}

// backwardConv adds a whole convolution's contributions to the gradients
// of its filter and its image, from dy, the gradient of its output.
func (l *lowerer) backwardConv(c *conv, dy int, need func(int64) bool) {
	p := l.p
	n := c.b * c.hw
	// dyc (cout, b, oh·ow) = dy (b, cout, oh·ow) permuted; through the
	// ReLU (dy·mask) with the bias's gradient summed on the way.
	dyc := l.alloc(c.cout * n)
	if c.pool != nil {
		db, accB := -1, false
		if need(c.bias.ID) {
			db, accB = l.target(c.bias.ID)
		}
		np := int(c.pool.Shape.Size())
		dbArg := ptr(dyc) // not written when there is no bias gradient
		if db >= 0 {
			dbArg = ptr(db)
		}
		l.emit(c.pool.ID, "bias_relu_pool_grad", np, ival(np), ival(c.b), ival(c.cout), ival(c.tr.Shape[2]), ival(c.tr.Shape[3]),
			ival(bools(db >= 0)), ival(bools(accB)), ptr(dy), ptr(c.route), dbArg, ptr(dyc))
	} else if c.out != nil {
		db, accB := -1, false
		if need(c.bias.ID) {
			db, accB = l.target(c.bias.ID)
		}
		nel := c.b * c.cout * c.hw
		dbArg := ptr(dyc) // not written when there is no bias gradient
		if db >= 0 {
			dbArg = ptr(db)
		}
		l.emit(c.out.ID, "bias_relu_grad", nel, ival(nel), ival(c.b), ival(c.cout), ival(c.hw), ival(bools(db >= 0)), ival(bools(accB)),
			ptr(dy), ptr(p.Value[c.mask.ID]), dbArg, ptr(dyc))
	} else {
		l.unary(c.tr.ID, UCopy, false, [4]int{1, c.cout, c.b, c.hw}, [4]int{0, c.hw, c.cout * c.hw, 1}, dy, dyc)
	}
	if need(c.f.ID) {
		df, acc := l.target(c.f.ID)
		l.emit(c.tr.ID, "conv_filter_grad", c.cout*c.z, cat(l.convArgs(c), ints(bools(acc)), []Arg{ptr(p.Value[c.x.ID]), ptr(dyc), ptr(df)})...)
	}
	if need(c.x.ID) {
		dx, acc := l.target(c.x.ID)
		l.emit(c.tr.ID, "conv_input_grad", int(c.x.Shape.Size()), cat(l.convArgs(c), ints(bools(acc)), []Arg{ptr(dyc), ptr(p.Value[c.f.ID]), ptr(dx)})...)
	}
	l.put(dyc)
}

// convArgs are the dims a convolution kernel takes: b, c, h, w, oh, ow,
// kh, kw, ph, pw, sh, sw, dh, dw, cout.
func (l *lowerer) convArgs(c *conv) []Arg {
	dims, _ := l.conv(c.ic)
	return cat(ints(c.b), ints(dims[1:]...), ints(c.cout))
}

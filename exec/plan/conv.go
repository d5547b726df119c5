package plan

import (
	"slices"

	"github.com/rookery-ml/rookery/graph"
)

// Gorgonia's Conv2d is a chain of five nodes: im2col of the input into
// (b, oh, ow, c·kh·kw) patches, a reshape to (b·oh·ow, c·kh·kw), a matmul
// with the (cout, c·kh·kw) filter transposed, a reshape to (b, oh, ow,
// cout) and a transpose to (b, cout, oh, ow). Lowered node by node, that
// is an im2col of patches read five values at a time, a product, and two
// strided copies of the output, one forward, one backward. With
// WithHostKernels, Lower runs such a chain as one convolution in the
// layout a CPU prefers: the patches as (c·kh·kw, b·oh·ow) rows (each a
// run of contiguous input), one product W·patches giving (cout, b, oh·ow),
// and a copy of contiguous oh·ow runs into (b, cout, oh, ow). Backward,
// the filter's gradient is patches·dyᵀ (the patches read where they lie)
// and the image's is col2im of dyᵀ·W, both in the layouts that the
// product kernels read fastest.

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
func HostKernelNames() []string { return []string{"im2col_rows"} }

// conv is a Conv2d chain lowered whole: the im2col node, its reshape,
// the matmul, its reshape and the transpose that ends the chain.
type conv struct {
	ic, r1, mm, r2, tr *graph.Node
	x, f               *graph.Node // the image and the (cout, c·kh·kw) filter
	b, cout, z, hw     int         // batch, filters, patch size, oh·ow
}

// findConvs marks the Conv2d chains of the part that can be lowered
// whole: each inner node used only by the next, none an output.
func (l *lowerer) findConvs() {
	l.convs = map[int64]*conv{}
	l.inConv = map[int64]bool{}
	uses := map[int64]int{}
	nodes := l.g.Nodes()
	for i := range nodes {
		for _, in := range nodes[i].Inputs {
			uses[in]++
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
	}
}

// forwardConv emits a convolution lowered whole: patches as rows of
// (c·kh·kw, b·oh·ow), in the im2col node's buffer; y = W·patches as
// (cout, b, oh·ow), in the matmul node's; the output (b, cout, oh, ow)
// copied from it in oh·ow runs.
func (l *lowerer) forwardConv(c *conv) {
	p := l.p
	dims, _ := l.conv(c.ic)
	col := l.buf(BufActivation, c.ic.ID, int(c.ic.Shape.Size()), "")
	p.Value[c.ic.ID] = col
	l.emit(c.tr.ID, "im2col_rows", int(c.ic.Shape.Size()), cat(ints(dims[:]...), []Arg{ptr(p.Value[c.x.ID]), ptr(col)})...)
	y := l.buf(BufActivation, c.mm.ID, int(c.mm.Shape.Size()), "")
	p.Value[c.mm.ID] = y
	n := c.b * c.hw
	l.rowGemm(c.tr.ID, y, p.Value[c.f.ID], col, false, false, c.cout, n, c.z, 0)
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
	// dyc (cout, b, oh·ow) = dy (b, cout, oh·ow) permuted.
	dyc := l.alloc(c.cout * n)
	l.unary(c.tr.ID, UCopy, false, [4]int{1, c.cout, c.b, c.hw}, [4]int{0, c.hw, c.cout * c.hw, 1}, dy, dyc)
	if need(c.f.ID) {
		// dWᵀ (z, cout) = patches (z, n) · dycᵀ (n, cout): the patches are
		// read where they lie and only dyc, a tenth of their size, is
		// packed; then dW (+)= dWᵀ transposed.
		dwt := l.alloc(c.z * c.cout)
		l.rowGemm(c.tr.ID, dwt, p.Value[c.ic.ID], dyc, false, true, c.z, c.cout, n, 0)
		df, acc := l.target(c.f.ID)
		l.unary(c.tr.ID, UCopy, acc, [4]int{1, 1, c.cout, c.z}, [4]int{0, 0, 1, c.cout}, dwt, df)
		l.put(dwt)
	}
	if need(c.x.ID) {
		// dpatches (n, c·kh·kw) = dycᵀ (n, cout) · W (cout, z), in
		// im2col's own layout, for col2im.
		dcol := l.alloc(c.z * n)
		l.rowGemm(c.tr.ID, dcol, dyc, p.Value[c.f.ID], true, false, n, c.z, c.cout, 0)
		dims, _ := l.conv(c.ic)
		dx, acc := l.target(c.x.ID)
		nx := int(c.x.Shape.Size())
		l.emit(c.tr.ID, "col2im", nx, cat(ints(nx, bools(acc)), ints(dims[1:]...), []Arg{ptr(dcol), ptr(dx)})...)
		l.put(dcol)
	}
	l.put(dyc)
}

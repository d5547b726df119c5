package plan

import (
	"fmt"
	"math"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// Launch configuration of the elementwise kernels: 256 threads a block,
// at most MaxGrid blocks; the kernels loop with the grid's stride over
// what the grid does not cover.
const (
	BlockSize = 256
	MaxGrid   = 65535
	maxRank   = 4
)

// Lower lowers a part onto a launch plan: buffers, the forward launches of
// one micro-batch, the backward launches that derive the gradients of its
// inputs and parameters op by op, without touching a device. The spec must be valid
// (exec.SessionSpec.Validate). A node that has no lowering gives
// an *UnsupportedOpError.
func Lower(spec *exec.SessionSpec, opts ...LowerOption) (*Plan, error) {
	var cfg lowerConfig
	for _, o := range opts {
		o(&cfg)
	}
	l := &lowerer{spec: spec, g: spec.Graph, grad: map[int64]int{}, written: map[int64]bool{}, lent: map[int64]bool{}}
	if err := l.dtype(); err != nil {
		return nil, err
	}
	l.p = &Plan{DType: l.dt, Value: map[int64]int{}, Consts: map[int]*tensor.Dense{}, GradIn: map[int64]int{}, GradOut: map[int64]int{}}
	if cfg.hostKernels {
		l.findConvs()
	}
	if err := l.forward(); err != nil {
		return nil, err
	}
	if err := l.backward(); err != nil {
		return nil, err
	}
	l.p.BackwardFirst = firstWrites(l.p)
	l.p.Fold, l.p.BackwardFold = folds(l.p)
	return l.p, nil
}

type lowerer struct {
	spec    *exec.SessionSpec
	g       *graph.Graph
	p       *Plan
	dt      graph.DType
	learn   map[int64]int
	grad    map[int64]int    // node → buffer of its gradient
	written map[int64]bool   // the gradient buffer holds a contribution
	lent    map[int64]bool   // the node's gradient buffer was handed to an input
	convs   map[int64]*conv  // convolutions lowered whole, by their last node
	dense   map[int64]*dense // biases and ReLUs after matrices, by their ReLU
	inConv  map[int64]bool   // the other nodes of those convolutions
	free    []int            // pooled gradient buffers not in use
	cur     []Launch         // launches being emitted
}

func (l *lowerer) unsupported(n *graph.Node, f string, a ...any) error {
	return &UnsupportedOpError{Part: l.spec.Part, Node: n.ID, Kind: n.Op.Kind, Reason: fmt.Sprintf(f, a...)}
}

// dtype picks the part's float dtype; every node must have it.
func (l *lowerer) dtype() error {
	nodes := l.g.Nodes()
	for i := range nodes {
		if nodes[i].DType == graph.Float32 || nodes[i].DType == graph.Float64 {
			l.dt = nodes[i].DType
			break
		}
	}
	if l.dt == graph.DTypeInvalid {
		return l.unsupported(&nodes[0], "the part has no float32 or float64 node")
	}
	for i := range nodes {
		n := &nodes[i]
		if n.DType != l.dt {
			return l.unsupported(n, "dtype %v in a %v part (one float dtype per part)", n.DType, l.dt)
		}
		if len(n.Shape) > maxRank {
			return l.unsupported(n, "rank %d above %d", len(n.Shape), maxRank)
		}
		if n.Shape.Size() > math.MaxInt32 {
			return l.unsupported(n, "%d elements do not fit a 32-bit index", n.Shape.Size())
		}
	}
	return nil
}

func (l *lowerer) buf(class BufClass, node int64, elems int, slot string) int {
	if elems < 1 {
		elems = 1
	}
	l.p.Buffers = append(l.p.Buffers, Buffer{Class: class, Node: node, Elems: elems, Slot: slot})
	return len(l.p.Buffers) - 1
}

// Argument constructors.
func ptr(b int) Arg      { return Arg{Type: ArgPtr, Buf: b} }
func ival(v int) Arg     { return Arg{Type: ArgInt, Int: v} }
func sval(v float64) Arg { return Arg{Type: ArgScalar, Scalar: v} }
func ints(vs ...int) []Arg {
	a := make([]Arg, len(vs))
	for i, v := range vs {
		a[i] = ival(v)
	}
	return a
}
func bools(b bool) int {
	if b {
		return 1
	}
	return 0
}
func cat(as ...[]Arg) []Arg {
	var out []Arg
	for _, a := range as {
		out = append(out, a...)
	}
	return out
}

// grid1D is the launch configuration for n threads.
func grid1D(n int) (Dim3, Dim3) {
	g := (n + BlockSize - 1) / BlockSize
	if g < 1 {
		g = 1
	}
	if g > MaxGrid {
		g = MaxGrid
	}
	return Dim3{g, 1, 1}, Dim3{BlockSize, 1, 1}
}

// emit appends a kernel launch over n threads.
func (l *lowerer) emit(node int64, kernel string, n int, args ...Arg) {
	sig := kernelSigs[kernel]
	if len(sig) != len(args) {
		panic(fmt.Sprintf("plan: kernel %s takes %d arguments, lowering passed %d", kernel, len(sig), len(args)))
	}
	for i, t := range sig {
		if args[i].Type != t {
			panic(fmt.Sprintf("plan: kernel %s argument %d is %v, lowering passed %v", kernel, i, t, args[i].Type))
		}
	}
	grid, block := grid1D(n)
	l.cur = append(l.cur, Launch{Node: node, Kernel: kernel + suffix(l.dt), Grid: grid, Block: block, Args: args})
}

// shape4 pads a shape to rank 4 with leading ones.
func shape4(s graph.Shape) [4]int {
	var out [4]int
	for i := range out {
		out[i] = 1
	}
	copy(out[4-len(s):], s)
	return out
}

func strides4(s [4]int) [4]int {
	var st [4]int
	acc := 1
	for i := 3; i >= 0; i-- {
		st[i] = acc
		acc *= s[i]
	}
	return st
}

// bstrides are the strides that read an operand of shape s (same rank as
// out, 1 where it is broadcast) at each index of out.
func bstrides(s, out [4]int) [4]int {
	st := strides4(s)
	for i := range st {
		if s[i] == 1 && out[i] != 1 {
			st[i] = 0
		}
	}
	return st
}

func size4(s [4]int) int { return s[0] * s[1] * s[2] * s[3] }

// unary emits y (+)= f(x read with strides xs) over out dims o.
func (l *lowerer) unary(node int64, op int, acc bool, o, xs [4]int, x, y int) {
	l.unaryAt(node, op, acc, o, xs, ptr(x), y)
}

// unaryAt is unary reading x from an element offset.
func (l *lowerer) unaryAt(node int64, op int, acc bool, o, xs [4]int, x Arg, y int) {
	n := size4(o)
	l.emit(node, "unary", n, cat(ints(op, n, bools(acc), o[1], o[2], o[3]), ints(xs[:]...), []Arg{x, ptr(y)})...)
}

// scatter emits y[ys·i] (+)= x[xs·i] over dims o, y from an element offset.
func (l *lowerer) scatter(node int64, acc bool, o, xs, ys [4]int, x int, y Arg) {
	n := size4(o)
	l.emit(node, "scatter", n, cat(ints(n, bools(acc), o[1], o[2], o[3]), ints(xs[:]...), ints(ys[:]...), []Arg{ptr(x), y})...)
}

func ptrAt(b, off int) Arg { return Arg{Type: ArgPtr, Buf: b, Off: off} }

// binary emits z (+)= f(a, b) over out dims o.
func (l *lowerer) binary(node int64, op int, acc bool, o, as, bs [4]int, a, b, z int) {
	n := size4(o)
	l.emit(node, "binary", n, cat(ints(op, n, bools(acc), o[1], o[2], o[3]), ints(as[:]...), ints(bs[:]...), []Arg{ptr(a), ptr(b), ptr(z)})...)
}

// reduce emits y (+)= scale·reduce(x) where x has dims o·r read with
// strides xs, and y has dims o.
func (l *lowerer) reduce(node int64, op int, acc bool, scale float64, o, r, xs [4]int, x, y int) {
	n := size4(o)
	l.emit(node, "reduce", n, cat(ints(op, n, bools(acc)), []Arg{sval(scale)}, ints(o[1], o[2], o[3]), ints(r[:]...), ints(xs[:]...), []Arg{ptr(x), ptr(y)})...)
}

// rowGemm emits C (m×n) = op(A)·op(B) + beta·C for row-major matrices,
// op(A) m×k and op(B) k×n, as the column-major cuBLAS call Cᵀ = op(B)ᵀ·op(A)ᵀ.
func (l *lowerer) rowGemm(node int64, c, a, b int, ta, tb bool, m, n, k int, beta float64) {
	lda, ldb := n, k
	if tb {
		lda = k
	}
	if ta {
		ldb = m
	}
	name := "sgemm"
	if l.dt == graph.Float64 {
		name = "dgemm"
	}
	l.cur = append(l.cur, Launch{Node: node, Kernel: name, Gemm: &Gemm{
		TransA: tb, TransB: ta, M: n, N: m, K: k, Alpha: 1, Beta: beta,
		A: b, Lda: max(lda, 1), B: a, Ldb: max(ldb, 1), C: c, Ldc: max(n, 1)}})
}

// forward lowers every node in graph order.
func (l *lowerer) forward() error {
	p := l.p
	l.learn = map[int64]int{}
	p.Learn = l.g.Learnables()
	for i, id := range p.Learn {
		l.learn[id] = i
		n, _ := l.g.Node(id)
		b := l.buf(BufParam, id, int(n.Shape.Size()), "")
		p.Params = append(p.Params, b)
		p.Accums = append(p.Accums, l.buf(BufAccum, id, int(n.Shape.Size()), ""))
		var st []int
		for _, s := range SolverSlots(l.spec.Solver) {
			st = append(st, l.buf(BufState, id, int(n.Shape.Size()), s))
		}
		p.States = append(p.States, st)
		p.Value[id] = b
	}
	nodes := l.g.Nodes()
	for i := range nodes {
		n := &nodes[i]
		switch n.Role {
		case graph.RoleLearnable:
			continue
		case graph.RoleInput:
			p.Value[n.ID] = l.buf(BufInput, n.ID, int(n.Shape.Size()), "")
			continue
		case graph.RoleConstant:
			if n.Value == nil {
				return l.unsupported(n, "constant without a value")
			}
			b := l.buf(BufConst, n.ID, int(n.Shape.Size()), "")
			p.Consts[b] = n.Value
			p.Value[n.ID] = b
			continue
		}
		if l.inConv[n.ID] {
			continue
		}
		if c := l.convs[n.ID]; c != nil {
			l.forwardConv(c)
			continue
		}
		if d := l.dense[n.ID]; d != nil {
			l.forwardDense(d)
			continue
		}
		if err := l.forwardOp(n); err != nil {
			return err
		}
	}
	p.Forward, l.cur = l.cur, nil
	return nil
}

func (l *lowerer) in(n *graph.Node, i int) *graph.Node {
	x, _ := l.g.Node(n.Inputs[i])
	return x
}

// forwardOp lowers one op node.
func (l *lowerer) forwardOp(n *graph.Node) error {
	p := l.p
	out := func() int {
		b := l.buf(BufActivation, n.ID, int(n.Shape.Size()), "")
		p.Value[n.ID] = b
		return b
	}
	k := n.Op.Kind
	o := shape4(n.Shape)
	switch {
	case k == graph.KindReshape:
		p.Value[n.ID] = p.Value[n.Inputs[0]]
		return nil
	case k == graph.KindDropout:
		if !l.spec.EvalMode && n.Op.Float("probability") != 0 {
			return l.unsupported(n, "dropout in training mode (its random mask is the tape machine's)")
		}
		p.Value[n.ID] = p.Value[n.Inputs[0]]
		return nil
	case k == graph.KindSizeOf:
		x := l.in(n, 0)
		ax := n.Op.Int("axis")
		if ax < 0 || ax >= len(x.Shape) {
			return l.unsupported(n, "axis %d of %v", ax, x.Shape)
		}
		dt, _ := l.dt.Tensor()
		v := tensor.New(tensor.Of(dt), tensor.WithShape(1))
		if l.dt == graph.Float64 {
			v.Float64s()[0] = float64(x.Shape[ax])
		} else {
			v.Float32s()[0] = float32(x.Shape[ax])
		}
		b := l.buf(BufConst, n.ID, 1, "")
		p.Consts[b] = v
		p.Value[n.ID] = b
		return nil
	}
	if code, ok := unaryCodes[k]; ok {
		y := out()
		l.unary(n.ID, code, false, o, strides4(o), p.Value[n.Inputs[0]], y)
		return nil
	}
	if code, ok := binaryCodes[k]; ok {
		as, bs, err := l.operandStrides(n)
		if err != nil {
			return err
		}
		z := out()
		l.binary(n.ID, code, false, o, as, bs, p.Value[n.Inputs[0]], p.Value[n.Inputs[1]], z)
		return nil
	}
	switch k {
	case graph.KindMatMul, graph.KindMatVec, graph.KindVecDot, graph.KindOuter:
		mm, err := l.matmul(n)
		if err != nil {
			return err
		}
		y := out()
		l.rowGemm(n.ID, y, p.Value[n.Inputs[0]], p.Value[n.Inputs[1]], mm.ta, mm.tb, mm.m, mm.n, mm.k, 0)
	case graph.KindSum, graph.KindMax:
		x := l.in(n, 0)
		ro, rr, err := l.reduction(n, x)
		if err != nil {
			return err
		}
		op := RSum
		if k == graph.KindMax {
			op = RMax
		}
		y := out()
		l.reduce(n.ID, op, false, 1, ro, rr, strides4(shape4(x.Shape)), p.Value[x.ID], y)
	case graph.KindTranspose:
		x := l.in(n, 0)
		perm, err := perm4(n.Op.Ints("perm"), len(x.Shape))
		if err != nil {
			return l.unsupported(n, "%v", err)
		}
		xs := strides4(shape4(x.Shape))
		var ps [4]int
		for j := range ps {
			ps[j] = xs[perm[j]]
		}
		y := out()
		l.unary(n.ID, UCopy, false, o, ps, p.Value[x.ID], y)
	case graph.KindConcat:
		y := out()
		ys := strides4(o)
		ax := n.Op.Int("axis") + 4 - len(n.Shape)
		for j, in := range n.Inputs {
			x4 := shape4(l.in(n, j).Shape)
			l.scatter(n.ID, false, x4, strides4(x4), ys, p.Value[in], ptrAt(y, l.concatOffset(n, j)*ys[ax]))
		}
	case graph.KindSlice:
		x := l.in(n, 0)
		v4, xs, off := l.sliceView(n, x)
		y := out()
		l.unaryAt(n.ID, UCopy, false, v4, xs, ptrAt(p.Value[x.ID], off), y)
	case graph.KindSoftmax:
		rows, cols, err := l.softmaxDims(n)
		if err != nil {
			return err
		}
		y := out()
		l.emit(n.ID, "softmax", rows, ival(rows), ival(cols), ival(bools(n.Op.Bool("log"))), ptr(p.Value[n.Inputs[0]]), ptr(y))
	case graph.KindIm2Col:
		c, err := l.conv(n)
		if err != nil {
			return err
		}
		y := out()
		l.emit(n.ID, "im2col", int(n.Shape.Size()), cat(ints(c[:]...), []Arg{ptr(p.Value[n.Inputs[0]]), ptr(y)})...)
	case graph.KindMaxPool2D:
		c := l.pool(n)
		y := out()
		l.emit(n.ID, "maxpool", int(n.Shape.Size()), cat(ints(int(n.Shape.Size())), ints(c[:]...), []Arg{ptr(p.Value[n.Inputs[0]]), ptr(y)})...)
	default:
		return l.unsupported(n, "no lowering for this op kind")
	}
	return nil
}

// concatOffset is where input j of a concat starts along its axis.
func (l *lowerer) concatOffset(n *graph.Node, j int) int {
	ax, pos := n.Op.Int("axis"), 0
	for i := 0; i < j; i++ {
		pos += l.in(n, i).Shape[ax]
	}
	return pos
}

// sliceView returns the dims (rank 4) of the elements a slice keeps, the
// strides that read them from its input, and the offset of the first.
func (l *lowerer) sliceView(n, x *graph.Node) (v4, xs [4]int, off int) {
	xs = strides4(shape4(x.Shape))
	if n.Op.Bool("all") {
		return shape4(x.Shape), xs, 0
	}
	ax := n.Op.Int("axis")
	start, end, step := n.Op.Int("start"), n.Op.Int("end"), n.Op.Int("step")
	cnt := min(end, x.Shape[ax]) - start
	if step > 0 {
		cnt = max(cnt/step, 1)
	}
	v := x.Shape.Clone()
	v[ax] = cnt
	a4 := ax + 4 - len(x.Shape)
	off = start * xs[a4]
	if step > 1 {
		xs[a4] *= step
	}
	return shape4(v), xs, off
}

// operandStrides returns the strides that read both operands of a binary
// or broadcasting op at each index of its output.
func (l *lowerer) operandStrides(n *graph.Node) (as, bs [4]int, err error) {
	a, b := l.in(n, 0), l.in(n, 1)
	o := shape4(n.Shape)
	sa, sb := a.Shape, b.Shape
	if left := n.Op.Ints("left"); len(left) > 0 {
		sa = bcastShape(sa, len(b.Shape), left)
	}
	if right := n.Op.Ints("right"); len(right) > 0 {
		sb = bcastShape(sb, len(a.Shape), right)
	}
	get := func(x *graph.Node, s graph.Shape) ([4]int, error) {
		switch {
		case s.Size() == n.Shape.Size() && (len(s) != len(n.Shape) || s.Eq(n.Shape)):
			return strides4(o), nil // same elements (or lenient (n)/(n,1) equality)
		case s.Size() == 1:
			return [4]int{}, nil
		case len(s) == len(n.Shape):
			s4 := shape4(s)
			for i := range s4 {
				if s4[i] != o[i] && s4[i] != 1 {
					return [4]int{}, l.unsupported(n, "operand %d of shape %v does not broadcast to %v", x.ID, x.Shape, n.Shape)
				}
			}
			return bstrides(s4, o), nil
		}
		return [4]int{}, l.unsupported(n, "operand %d of shape %v does not broadcast to %v", x.ID, x.Shape, n.Shape)
	}
	if as, err = get(a, sa); err != nil {
		return
	}
	bs, err = get(b, sb)
	return
}

// operandShape is the shape, of the output's rank padded to 4, in which
// operand i is broadcast: the output's dims where it is read along, 1
// where it is repeated.
func (l *lowerer) operandShape(n *graph.Node, st [4]int) [4]int {
	o := shape4(n.Shape)
	s := o
	for i := range st {
		if st[i] == 0 {
			s[i] = 1
		}
	}
	return s
}

// bcastShape is graph's broadcast reshape: an operand of another rank
// gets ones on the broadcast axes and its own dims, in order, elsewhere.
func bcastShape(s graph.Shape, dims int, along []int) graph.Shape {
	if len(s) == dims {
		return s.Clone()
	}
	ns := make(graph.Shape, dims)
	for _, ax := range along {
		if ax < dims {
			ns[ax] = 1
		}
	}
	j := 0
	for i := range ns {
		if ns[i] == 0 {
			if j < len(s) {
				ns[i] = s[j]
				j++
			} else {
				ns[i] = 1
			}
		}
	}
	return ns
}

type mmDims struct {
	m, n, k int
	ta, tb  bool
}

// matmul reads the row-major product a node computes.
func (l *lowerer) matmul(n *graph.Node) (mmDims, error) {
	a, b := l.in(n, 0).Shape, l.in(n, 1).Shape
	var d mmDims
	switch n.Op.Kind {
	case graph.KindMatMul:
		d.ta, d.tb = n.Op.Bool("trans_a"), n.Op.Bool("trans_b")
		if len(a) != 2 || len(b) != 2 {
			return d, l.unsupported(n, "operands %v and %v are not matrices", a, b)
		}
		d.m, d.k = a[0], a[1]
		if d.ta {
			d.m, d.k = a[1], a[0]
		}
		d.n = b[1]
		if d.tb {
			d.n = b[0]
		}
	case graph.KindMatVec:
		d.ta = n.Op.Bool("trans_a")
		if len(a) != 2 || len(b) != 1 {
			return d, l.unsupported(n, "operands %v and %v are not a matrix and a vector", a, b)
		}
		d.m, d.k, d.n = a[0], a[1], 1
		if d.ta {
			d.m, d.k = a[1], a[0]
		}
	case graph.KindVecDot:
		d.m, d.n, d.k = 1, 1, int(graph.Shape(a).Size())
	case graph.KindOuter:
		d.m, d.n, d.k = int(graph.Shape(a).Size()), int(graph.Shape(b).Size()), 1
	}
	return d, nil
}

// reduction returns the output dims and the reduced dims (rank 4) of a
// sum or max.
func (l *lowerer) reduction(n, x *graph.Node) (o, r [4]int, err error) {
	x4 := shape4(x.Shape)
	o, r = x4, [4]int{1, 1, 1, 1}
	off := 4 - len(x.Shape)
	for _, ax := range n.Op.Ints("axes") {
		if ax < 0 || ax >= len(x.Shape) {
			return o, r, l.unsupported(n, "axis %d of %v", ax, x.Shape)
		}
		o[ax+off], r[ax+off] = 1, x4[ax+off]
	}
	return o, r, nil
}

// perm4 pads a permutation of rank r to rank 4.
func perm4(perm []int, r int) ([4]int, error) {
	var p [4]int
	if len(perm) != r {
		return p, fmt.Errorf("permutation %v for rank %d", perm, r)
	}
	off := 4 - r
	for j := 0; j < off; j++ {
		p[j] = j
	}
	for j, v := range perm {
		if v < 0 || v >= r {
			return p, fmt.Errorf("permutation %v for rank %d", perm, r)
		}
		p[j+off] = v + off
	}
	return p, nil
}

func (l *lowerer) softmaxDims(n *graph.Node) (rows, cols int, err error) {
	ax := n.Op.Int("axis")
	if ax != -1 && ax != len(n.Shape)-1 {
		return 0, 0, l.unsupported(n, "softmax along axis %d of %v (the last axis only)", ax, n.Shape)
	}
	cols = n.Shape[len(n.Shape)-1]
	return int(n.Shape.Size()) / cols, cols, nil
}

// conv returns the im2col kernel's dims: c, h, w, oh, ow, kh, kw, ph, pw,
// sh, sw, dh, dw (with n = b·oh·ow·c·kh·kw first).
func (l *lowerer) conv(n *graph.Node) ([14]int, error) {
	x := l.in(n, 0).Shape
	kr, pad, st, dil := n.Op.Ints("kernel"), n.Op.Ints("pad"), n.Op.Ints("stride"), n.Op.Ints("dilation")
	return [14]int{int(n.Shape.Size()), x[1], x[2], x[3], n.Shape[1], n.Shape[2], kr[0], kr[1], pad[0], pad[1], st[0], st[1], dil[0], dil[1]}, nil
}

// pool returns the maxpool kernel's dims: c, h, w, oh, ow, kh, kw, pad
// top, pad left, sh, sw, as Gorgonia's max pool reads its pads.
func (l *lowerer) pool(n *graph.Node) [11]int {
	x := l.in(n, 0).Shape
	kr, pad, st := n.Op.Ints("kernel"), n.Op.Ints("pad"), n.Op.Ints("stride")
	ph, pw := pad[0], pad[2]
	if n.Op.Bool("explicit_pad") {
		ph, pw = pad[1], pad[3]
	}
	return [11]int{x[1], x[2], x[3], n.Shape[2], n.Shape[3], kr[0], kr[1], ph, pw, st[0], st[1]}
}

// SolverSlots are the solver state slots of a configuration.
func SolverSlots(c exec.SolverConfig) []string {
	switch c.Kind {
	case exec.SolverSGD, exec.SolverNesterov:
		if c.Momentum == 0 {
			return nil
		}
		return []string{"velocity"}
	case exec.SolverAdam, exec.SolverAdamW:
		return []string{"m", "v"}
	case exec.SolverRMSProp:
		return []string{"cache"}
	}
	return nil
}

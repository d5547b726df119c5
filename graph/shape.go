package graph

import (
	"fmt"
	"math"

	"gorgonia.org/tensor"
)

// infer computes the shape and dtype that op produces from its inputs. It
// answers what Gorgonia v0.9.18 answers for the same op (the Shape() and
// Dtype() of the node that the op's constructor builds), so that a graph
// read from Gorgonia validates and a validated graph lowers back.
//
// Where Gorgonia builds a node that can never run (a matrix-vector product
// whose inner sizes differ, a kernel larger than its padded input, a
// coordinate outside the tensor, ...) infer returns an error instead, and
// where Gorgonia panics or fails while building, infer returns an error
// too. Scalars have the empty shape, returned as nil.
//
// infer never panics, whatever its arguments.
func infer(op Op, in []*Node) (Shape, DType, error) {
	spec, ok := specs[op.Kind]
	if !ok {
		return nil, DTypeInvalid, fmt.Errorf("unknown op kind %q", op.Kind)
	}
	if spec.class == classSource {
		return nil, DTypeInvalid, fmt.Errorf("%s is a source: its shape is given, not computed", op.Kind)
	}
	if len(in) < spec.minIn || (spec.maxIn >= 0 && len(in) > spec.maxIn) {
		return nil, DTypeInvalid, fmt.Errorf("%s takes %s inputs, got %d", op.Kind, arityText(spec), len(in))
	}
	for i, n := range in {
		if n == nil {
			return nil, DTypeInvalid, fmt.Errorf("%s: input %d is missing", op.Kind, i)
		}
	}
	var (
		s   Shape
		dt  DType
		err error
	)
	switch spec.class {
	case classUnary:
		s, dt = in[0].Shape.Clone(), in[0].DType
	case classBinary:
		s, dt, err = inferElemBin(op, in[0], in[1])
	case classBroadcast:
		s, dt, err = inferBroadcast(op, in[0], in[1])
	case classLinAlg:
		s, dt, err = inferLinAlg(op, in[0], in[1])
	case classReduce:
		s, dt, err = inferReduce(op, in[0])
	case classShape:
		s, dt, err = inferShapeOp(op, in)
	case classNN:
		s, dt, err = inferNN(op, in[0])
	case classCustom:
		s, dt, err = customKinds[op.Kind].infer(op, in)
	default:
		err = fmt.Errorf("no shape rule for %s", op.Kind)
	}
	if err != nil {
		return nil, DTypeInvalid, fmt.Errorf("%s: %w", op.Kind, err)
	}
	if len(s) == 0 {
		s = nil
	}
	return s, dt, nil
}

// Infer returns the shape and dtype that op computes from the given
// inputs: what Add requires of a node with that op. It reads the inputs'
// Shape and DType, and the Op and Value of a repeat's count (Add also
// measures a size_of count in the graph). It returns an error for inputs
// or attributes the op does not accept, and never panics.
func Infer(op Op, in []*Node) (Shape, DType, error) { return infer(op, in) }

// inferNode is infer with the graph at hand, for check: the count of a
// repeat may be a size_of node, whose value is the size of the node it
// measures along its axis.
func (g *Graph) inferNode(op Op, in []*Node) (Shape, DType, error) {
	if op.Kind != KindRepeat || len(in) != 2 || in[0] == nil || in[1] == nil ||
		in[1].Op.Kind != KindSizeOf || len(in[1].Inputs) != 1 {
		return infer(op, in)
	}
	measured := 0
	if of, ok := g.Node(in[1].Inputs[0]); ok {
		if ax := in[1].Op.Int("axis"); ax >= 0 && ax < len(of.Shape) {
			measured = of.Shape[ax]
		}
	}
	s, dt, err := inferRepeat(op, in[0], in[1], measured)
	if err != nil {
		return nil, DTypeInvalid, fmt.Errorf("%s: %w", op.Kind, err)
	}
	return s, dt, nil
}

func arityText(s opSpec) string {
	switch {
	case s.maxIn < 0:
		return fmt.Sprintf("at least %d", s.minIn)
	case s.maxIn != s.minIn:
		return fmt.Sprintf("%d to %d", s.minIn, s.maxIn)
	}
	return fmt.Sprint(s.minIn)
}

// commonDType returns the dtype shared by all inputs: Gorgonia's type
// system unifies the operands of every multi-input op to one element type.
func commonDType(in ...*Node) (DType, error) {
	dt := in[0].DType
	for i, n := range in[1:] {
		if n.DType != dt {
			return DTypeInvalid, fmt.Errorf("input %d is %v but input 0 is %v", i+1, n.DType, dt)
		}
	}
	return dt, nil
}

// returnsBool reports whether k returns Bool unless "ret_same" is set.
func returnsBool(k OpKind) bool {
	switch k {
	case KindLt, KindGt, KindLte, KindGte, KindEq, KindNe,
		KindBroadcastLt, KindBroadcastGt, KindBroadcastLte, KindBroadcastGte, KindBroadcastEq, KindBroadcastNe:
		return true
	}
	return false
}

func binResultDType(op Op, dt DType) DType {
	if returnsBool(op.Kind) && !op.Bool("ret_same") {
		return Bool
	}
	return dt
}

func inferElemBin(op Op, a, b *Node) (Shape, DType, error) {
	dt, err := commonDType(a, b)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	s, err := elemBinShape(a.Shape, b.Shape)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	return s, binResultDType(op, dt), nil
}

// elemBinShape is Gorgonia's elemBinOp.InferShape: equal shapes (with
// tensor.Shape's lenient equality of (n), (n,1) and (1,n)), or a scalar
// against anything, or two all-ones shapes, of which the left one wins.
// The result must then fit the op's type, which has the rank of the
// operand with more dimensions (the right one on ties).
func elemBinShape(x, y Shape) (Shape, error) {
	var s Shape
	switch {
	case allOnes(x) && allOnes(y):
		switch {
		case len(x) > 0:
			s = x
		case len(y) > 0:
			s = y
		}
	case len(x) == 0:
		s = y
	case len(y) == 0:
		s = x
	default:
		if !vecEq(x, y) {
			return nil, fmt.Errorf("operand shapes %v and %v differ", x, y)
		}
		s = y
		if len(x) > len(y) {
			s = x
		}
	}
	return fitTypeRank(s, max(len(x), len(y)))
}

// fitTypeRank applies the check Gorgonia makes when a node of a given type
// rank receives an inferred shape: the ranks agree, or a vector type holds
// a row or column vector, or a scalar type holds an all-ones shape (which
// then becomes the scalar shape). Gorgonia panics otherwise.
func fitTypeRank(s Shape, typeDims int) (Shape, error) {
	switch {
	case typeDims == 0 && allOnes(s):
		return nil, nil
	case len(s) == typeDims, typeDims == 1 && (isColVecShape(s) || isRowVecShape(s)):
		return s.Clone(), nil
	}
	return nil, fmt.Errorf("shape %v does not fit the op's %d-dimensional result type (Gorgonia cannot build this node)", s, typeDims)
}

// allOnes reports whether every dimension is 1 (true for a scalar).
func allOnes(s Shape) bool {
	for _, d := range s {
		if d != 1 {
			return false
		}
	}
	return true
}

func isColVecShape(s Shape) bool { return len(s) == 2 && s[1] == 1 && s[0] > 1 }
func isRowVecShape(s Shape) bool { return len(s) == 2 && s[0] == 1 && s[1] > 1 }
func isVectorShape(s Shape) bool { return len(s) == 1 || isColVecShape(s) || isRowVecShape(s) }

// vecEq is tensor.Shape.Eq: a vector (n) equals the column vector (n,1)
// and the row vector (1,n).
func vecEq(s, o Shape) bool {
	if len(s) == 0 && len(o) == 0 {
		return true
	}
	if isVectorShape(s) && isVectorShape(o) {
		switch {
		case len(s) == 2 && len(o) == 1:
			return (isColVecShape(s) && s[0] == o[0]) || (isRowVecShape(s) && s[1] == o[0])
		case len(s) == 1 && len(o) == 2:
			return (isColVecShape(o) && o[0] == s[0]) || (isRowVecShape(o) && o[1] == s[0])
		}
	}
	return s.Eq(o)
}

// maxBroadcastAxis bounds the axes of a broadcast: Gorgonia's
// BroadcastPattern is one byte, a nibble for each operand.
const maxBroadcastAxis = 3

// patternAxes reads a "left" or "right" attribute the way Gorgonia's
// BroadcastPattern holds it: a set of axes, applied in increasing order.
func patternAxes(op Op, name string) ([]int, error) {
	var set [maxBroadcastAxis + 1]bool
	for _, a := range op.Ints(name) {
		if a < 0 || a > maxBroadcastAxis {
			return nil, fmt.Errorf("%s axis %d: broadcasting works on axes 0 to %d", name, a, maxBroadcastAxis)
		}
		set[a] = true
	}
	var axes []int
	for a, on := range set {
		if on {
			axes = append(axes, a)
		}
	}
	return axes, nil
}

// inferBroadcast follows Gorgonia's Broadcast: the left operand is
// reshaped to the right operand's rank (calcBroadcastShape) and repeated
// along each "left" axis by the right operand's size there; then the right
// operand is reshaped to the left operand's original rank and repeated
// along each "right" axis by the size of the (already expanded) left
// operand; finally the elementwise op applies to the two.
func inferBroadcast(op Op, a, b *Node) (Shape, DType, error) {
	dt, err := commonDType(a, b)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	left, err := patternAxes(op, "left")
	if err != nil {
		return nil, DTypeInvalid, err
	}
	right, err := patternAxes(op, "right")
	if err != nil {
		return nil, DTypeInvalid, err
	}
	xs, ys := a.Shape, b.Shape
	x, y := xs, ys
	if len(left) > 0 {
		for _, ax := range left {
			if ax >= len(ys) {
				return nil, DTypeInvalid, fmt.Errorf("cannot repeat the left operand along axis %d of the right operand %v", ax, ys)
			}
		}
		if x, err = bcastReshape(xs, len(ys), left, "left"); err != nil {
			return nil, DTypeInvalid, err
		}
		for _, ax := range left {
			x[ax] *= ys[ax]
		}
	}
	if len(right) > 0 {
		for _, ax := range right {
			if ax >= len(xs) || ax >= len(x) {
				return nil, DTypeInvalid, fmt.Errorf("cannot repeat the right operand along axis %d of the left operand %v", ax, x)
			}
		}
		if y, err = bcastReshape(ys, len(xs), right, "right"); err != nil {
			return nil, DTypeInvalid, err
		}
		for _, ax := range right {
			y[ax] *= x[ax]
		}
	}
	s, err := elemBinShape(x, y)
	if err != nil {
		return nil, DTypeInvalid, fmt.Errorf("after broadcasting %v and %v: %w", xs, ys, err)
	}
	return s, binResultDType(op, dt), nil
}

// bcastReshape is Gorgonia's calcBroadcastShape followed by the size
// check of Reshape: an operand of another rank gets ones on the broadcast
// axes and its own dimensions, in order, on the others.
func bcastReshape(s Shape, dims int, along []int, side string) (Shape, error) {
	if len(s) == dims {
		return s.Clone(), nil
	}
	ns := make(Shape, dims)
	for _, ax := range along {
		ns[ax] = 1
	}
	if len(s) == 0 {
		for i := range ns {
			ns[i] = 1
		}
		return ns, nil
	}
	for _, d := range s {
		for j := range ns {
			if ns[j] == 0 {
				ns[j] = d
				break
			}
		}
	}
	if n, ok := sizeChecked(ns); !ok || n != s.Size() {
		return nil, fmt.Errorf("cannot reshape the %s operand %v to %v for broadcasting", side, s, ns)
	}
	return ns, nil
}

// sizeChecked is the number of elements of s, and false if a dimension is
// not positive or the product overflows.
func sizeChecked(s Shape) (int64, bool) {
	n := int64(1)
	for _, d := range s {
		if d <= 0 || n > math.MaxInt64/int64(d) {
			return 0, false
		}
		n *= int64(d)
	}
	return n, true
}

func inferLinAlg(op Op, a, b *Node) (Shape, DType, error) {
	dt, err := commonDType(a, b)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	x, y := a.Shape, b.Shape
	switch op.Kind {
	case KindMatMul:
		if len(x) != 2 || len(y) != 2 {
			return nil, DTypeInvalid, fmt.Errorf("needs two matrices, got %v and %v", x, y)
		}
		x, y = swap2(x, op.Bool("trans_a")), swap2(y, op.Bool("trans_b"))
		if x[1] != y[0] {
			return nil, DTypeInvalid, fmt.Errorf("inner dimensions differ: %v × %v", x, y)
		}
		return Shape{x[0], y[1]}, dt, nil
	case KindMatVec:
		if len(x) != 2 || len(y) != 1 {
			return nil, DTypeInvalid, fmt.Errorf("needs a matrix and a vector, got %v and %v", x, y)
		}
		x = swap2(x, op.Bool("trans_a"))
		if x[1] != y[0] {
			return nil, DTypeInvalid, fmt.Errorf("inner dimensions differ: %v × %v", x, y)
		}
		return Shape{x[0]}, dt, nil
	case KindVecDot:
		if len(x) != 1 || len(y) != 1 || x[0] != y[0] {
			return nil, DTypeInvalid, fmt.Errorf("needs two vectors of one length, got %v and %v", x, y)
		}
		return nil, dt, nil
	case KindOuter:
		if len(x) != 1 || len(y) != 1 {
			return nil, DTypeInvalid, fmt.Errorf("needs two vectors, got %v and %v", x, y)
		}
		return Shape{x[0], y[0]}, dt, nil
	case KindBatchedMatMul:
		if len(x) < 2 || len(x) != len(y) {
			return nil, DTypeInvalid, fmt.Errorf("needs two tensors of one rank, at least 2, got %v and %v", x, y)
		}
		r := len(x)
		if !x[:r-2].Eq(y[:r-2]) {
			return nil, DTypeInvalid, fmt.Errorf("batch dimensions differ: %v and %v", x, y)
		}
		ix, iy := swap2(x[r-2:], op.Bool("trans_a")), swap2(y[r-2:], op.Bool("trans_b"))
		if ix[1] != iy[0] {
			return nil, DTypeInvalid, fmt.Errorf("inner dimensions differ: %v × %v", x, y)
		}
		s := append(x[:r-2].Clone(), ix[0], iy[1])
		return s, dt, nil
	case KindTensordot:
		return inferTensordot(op, x, y, dt)
	}
	return nil, DTypeInvalid, fmt.Errorf("no shape rule")
}

// swap2 swaps a matrix shape's two dimensions if t is set.
func swap2(s Shape, t bool) Shape {
	if t {
		return Shape{s[1], s[0]}
	}
	return s
}

// inferTensordot checks what Gorgonia's Tensordot checks and returns the
// free dimensions of a followed by the free dimensions of b.
func inferTensordot(op Op, x, y Shape, dt DType) (Shape, DType, error) {
	aAxes, bAxes := op.Ints("a_axes"), op.Ints("b_axes")
	if len(x) < 1 || len(y) < 1 {
		return nil, DTypeInvalid, fmt.Errorf("operands need at least one dimension, got %v and %v", x, y)
	}
	if len(aAxes) != len(bAxes) {
		return nil, DTypeInvalid, fmt.Errorf("contracts %d axes of a but %d of b", len(aAxes), len(bAxes))
	}
	if err := checkAxisList(aAxes, len(x), "a_axes"); err != nil {
		return nil, DTypeInvalid, err
	}
	if err := checkAxisList(bAxes, len(y), "b_axes"); err != nil {
		return nil, DTypeInvalid, err
	}
	for i := range aAxes {
		if x[aAxes[i]] != y[bAxes[i]] {
			return nil, DTypeInvalid, fmt.Errorf("axis %d of %v and axis %d of %v differ", aAxes[i], x, bAxes[i], y)
		}
	}
	s := make(Shape, 0, len(x)+len(y)-2*len(aAxes))
	for i, d := range x {
		if !hasAxis(aAxes, i) {
			s = append(s, d)
		}
	}
	for i, d := range y {
		if !hasAxis(bAxes, i) {
			s = append(s, d)
		}
	}
	return s, dt, nil
}

// checkAxisList checks that axes are distinct axes of a rank-dims tensor.
func checkAxisList(axes []int, dims int, what string) error {
	for i, a := range axes {
		if a < 0 || a >= dims {
			return fmt.Errorf("%s: axis %d is out of range for %d dimensions", what, a, dims)
		}
		if hasAxis(axes[:i], a) {
			return fmt.Errorf("%s: axis %d appears twice", what, a)
		}
	}
	return nil
}

func hasAxis(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// inferReduce is Gorgonia's reductionInferShape: the reduced axes go, no
// axes at all reduces everything, and nothing left is a scalar.
func inferReduce(op Op, a *Node) (Shape, DType, error) {
	axes := op.Ints("axes")
	x := a.Shape
	if err := checkAxisList(axes, len(x), "axes"); err != nil {
		return nil, DTypeInvalid, err
	}
	if len(axes) == 0 {
		return nil, a.DType, nil
	}
	var s Shape
	for i, d := range x {
		if !hasAxis(axes, i) {
			s = append(s, d)
		}
	}
	return s, a.DType, nil
}

func inferShapeOp(op Op, in []*Node) (Shape, DType, error) {
	x, dt := in[0].Shape, in[0].DType
	switch op.Kind {
	case KindReshape:
		to := Shape(op.Ints("shape"))
		n, ok := sizeChecked(to)
		if !ok {
			return nil, DTypeInvalid, fmt.Errorf("target shape %v needs positive dimensions", to)
		}
		if n != x.Size() {
			return nil, DTypeInvalid, fmt.Errorf("cannot reshape %v (%d elements) to %v (%d elements)", x, x.Size(), to, n)
		}
		return to.Clone(), dt, nil
	case KindTranspose:
		return inferTranspose(op, x, dt)
	case KindSlice:
		return inferSlice(op, x, dt)
	case KindConcat:
		return inferConcat(op, in)
	case KindAt:
		coords := op.Ints("coords")
		if len(x) == 0 {
			// Gorgonia's At returns a scalar itself for zero coordinates.
			for _, c := range coords {
				if c != 0 {
					return nil, DTypeInvalid, fmt.Errorf("coordinates %v of a scalar must be 0", coords)
				}
			}
			return nil, dt, nil
		}
		if len(coords) != len(x) {
			return nil, DTypeInvalid, fmt.Errorf("%d coordinates do not address one element of %v", len(coords), x)
		}
		for i, c := range coords {
			if c < 0 || c >= x[i] {
				return nil, DTypeInvalid, fmt.Errorf("coordinate %d is out of range for %v", c, x)
			}
		}
		return nil, dt, nil
	case KindRepeat:
		return inferRepeat(op, in[0], in[1], 0)
	case KindSizeOf:
		if ax := op.Int("axis"); ax < 0 || ax >= len(x) {
			return nil, DTypeInvalid, fmt.Errorf("axis %d is out of range for %v", ax, x)
		}
		return nil, dt, nil
	}
	return nil, DTypeInvalid, fmt.Errorf("no shape rule")
}

// inferTranspose permutes the dimensions: output axis i is input axis
// perm[i]. An empty perm reverses the axes, as Gorgonia's Transpose does.
func inferTranspose(op Op, x Shape, dt DType) (Shape, DType, error) {
	if len(x) == 0 {
		return nil, DTypeInvalid, fmt.Errorf("cannot transpose a scalar")
	}
	perm := op.Ints("perm")
	if len(perm) == 0 {
		s := make(Shape, len(x))
		for i := range x {
			s[i] = x[len(x)-1-i]
		}
		return s, dt, nil
	}
	if len(perm) != len(x) {
		return nil, DTypeInvalid, fmt.Errorf("permutation %v does not fit %v", perm, x)
	}
	if err := checkAxisList(perm, len(x), "perm"); err != nil {
		return nil, DTypeInvalid, err
	}
	s := make(Shape, len(x))
	for i, p := range perm {
		s[i] = x[p]
	}
	return s, dt, nil
}

// inferSlice is tensor.Shape.S for one slice along "axis", with the
// constraints of Gorgonia's sliceOp. The attributes are read as they
// travel, absent ones as 0, exactly as Lower passes them to gorgonia.S:
// Gorgonia writes a single index i as start i, end i+1, step 0.
//
// The kept size is floor((min(end, size)-start)/step) for a positive step
// and end-start for step 0 (Gorgonia's own rule, which drops a trailing
// partial step: 0:5:2 of 5 elements keeps 2). A size of 1 removes the
// axis; Gorgonia can build that only for end-start == 1, since the op's
// type keeps the axis otherwise.
func inferSlice(op Op, x Shape, dt DType) (Shape, DType, error) {
	axis := op.Int("axis")
	if len(x) == 0 {
		return nil, DTypeInvalid, fmt.Errorf("cannot slice a scalar")
	}
	if axis < 0 || axis >= len(x) {
		return nil, DTypeInvalid, fmt.Errorf("axis %d is out of range for %v", axis, x)
	}
	if op.Bool("all") {
		return x.Clone(), dt, nil
	}
	start, end, step := op.Int("start"), op.Int("end"), op.Int("step")
	size := x[axis]
	switch {
	case start < 0 || start > end:
		return nil, DTypeInvalid, fmt.Errorf("invalid range %d:%d", start, end)
	case start >= size:
		return nil, DTypeInvalid, fmt.Errorf("start %d is out of range for axis %d of %v", start, axis, x)
	case step < 0:
		return nil, DTypeInvalid, fmt.Errorf("negative step %d", step)
	case step == 0 && end-start > 1:
		return nil, DTypeInvalid, fmt.Errorf("step 0 over %d:%d (step 0 marks a single index)", start, end)
	}
	e := min(end, size)
	n := e - start
	if step > 0 {
		n = max(n/step, 1)
	}
	switch {
	case n <= 0:
		return nil, DTypeInvalid, fmt.Errorf("slice %d:%d of axis %d of %v is empty", start, end, axis, x)
	case n == 1 && end-start != 1:
		return nil, DTypeInvalid, fmt.Errorf("slice %d:%d:%d of axis %d of %v keeps one element; Gorgonia drops the axis but its type keeps it (use %d:%d)", start, end, step, axis, x, start, start+1)
	case n == 1:
		s := append(x[:axis:axis].Clone(), x[axis+1:]...)
		return s, dt, nil
	}
	s := x.Clone()
	s[axis] = n
	return s, dt, nil
}

func inferConcat(op Op, in []*Node) (Shape, DType, error) {
	dt, err := commonDType(in...)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	x := in[0].Shape
	axis := op.Int("axis")
	if len(x) == 0 {
		return nil, DTypeInvalid, fmt.Errorf("cannot concatenate scalars")
	}
	if axis < 0 || axis >= len(x) {
		return nil, DTypeInvalid, fmt.Errorf("axis %d is out of range for %v", axis, x)
	}
	s := x.Clone()
	for i, n := range in[1:] {
		y := n.Shape
		if len(y) != len(x) {
			return nil, DTypeInvalid, fmt.Errorf("input %d has shape %v, input 0 has %v", i+1, y, x)
		}
		for d := range y {
			if d == axis {
				if s[d] > math.MaxInt-y[d] {
					return nil, DTypeInvalid, fmt.Errorf("concatenated axis overflows")
				}
				s[d] += y[d]
			} else if y[d] != x[d] {
				return nil, DTypeInvalid, fmt.Errorf("input %d has shape %v, input 0 has %v: only axis %d may differ", i+1, y, x, axis)
			}
		}
	}
	return s, dt, nil
}

// inferRepeat is Gorgonia's repeatOp.InferShape. The count is a value, not
// a shape: infer reads it from the count node's Value, which a constant
// always has; (*Graph).inferNode reads a size_of count off the node it
// measures. A size_of count must be along the repeat's own axis, the only
// axis along which Gorgonia reads its size. Without a value the count
// cannot be known, and infer says so.
func inferRepeat(op Op, a, count *Node, measured int) (Shape, DType, error) {
	dt, err := commonDType(a, count)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	axis := op.Int("axis")
	if axis < 0 {
		return nil, DTypeInvalid, fmt.Errorf("negative axis %d", axis)
	}
	if len(count.Shape) != 0 {
		return nil, DTypeInvalid, fmt.Errorf("the repeat count must be a scalar, got shape %v", count.Shape)
	}
	if count.Op.Kind == KindSizeOf && count.Op.Int("axis") != axis {
		return nil, DTypeInvalid, fmt.Errorf("count is the size along axis %d but repeats along axis %d", count.Op.Int("axis"), axis)
	}
	rep := measured
	if count.Value != nil {
		v, err := repeatCount(count.Value)
		if err != nil {
			return nil, DTypeInvalid, err
		}
		if measured > 0 && v != measured {
			return nil, DTypeInvalid, fmt.Errorf("the count node %d says %d but measures %d", count.ID, v, measured)
		}
		rep = v
	}
	if rep <= 0 {
		return nil, DTypeInvalid, fmt.Errorf("the repeat count of node %d (%s) is not known from shapes: give it a value", count.ID, count.Op.Kind)
	}
	s := a.Shape.Clone()
	if isVectorShape(s) && len(s) <= axis {
		for len(s) <= axis {
			s = append(s, 1)
		}
	}
	if len(s) == 0 {
		s = Shape{1}
	}
	if axis >= len(s) {
		return nil, DTypeInvalid, fmt.Errorf("axis %d is out of range for %v", axis, a.Shape)
	}
	if s[axis] > math.MaxInt/rep {
		return nil, DTypeInvalid, fmt.Errorf("repeating %v %d times overflows", a.Shape, rep)
	}
	s[axis] *= rep
	typeDims := max(len(a.Shape), 1)
	s, err = fitTypeRank(s, typeDims)
	return s, dt, err
}

// repeatCount reads a positive whole repeat count from a one-element value.
func repeatCount(v *tensor.Dense) (int, error) {
	if v.Size() != 1 {
		return 0, fmt.Errorf("the repeat count has %d elements, want 1", v.Size())
	}
	var f float64
	switch d := v.Data().(type) {
	case float64:
		f = d
	case float32:
		f = float64(d)
	case int:
		f = float64(d)
	case int64:
		f = float64(d)
	case []float64:
		f = d[0]
	case []float32:
		f = float64(d[0])
	case []int:
		f = float64(d[0])
	case []int64:
		f = float64(d[0])
	default:
		return 0, fmt.Errorf("the repeat count is %v, want a number", v.Dtype())
	}
	if f < 1 || f != math.Trunc(f) || f > math.MaxInt32 {
		return 0, fmt.Errorf("the repeat count is %v, want a positive whole number", f)
	}
	return int(f), nil
}

func inferNN(op Op, a *Node) (Shape, DType, error) {
	x, dt := a.Shape, a.DType
	switch op.Kind {
	case KindSoftmax:
		if len(x) == 0 {
			return nil, DTypeInvalid, fmt.Errorf("needs a tensor, got a scalar")
		}
		if ax := op.Int("axis"); ax < -1 || ax >= len(x) {
			return nil, DTypeInvalid, fmt.Errorf("axis %d is out of range for %v (-1 is the last axis)", ax, x)
		}
		return x.Clone(), dt, nil
	case KindDropout:
		if len(x) == 0 {
			return nil, DTypeInvalid, fmt.Errorf("needs a tensor, got a scalar")
		}
		if p := op.Float("probability"); !(p >= 0 && p <= 1) {
			return nil, DTypeInvalid, fmt.Errorf("probability %v is outside [0, 1]", p)
		}
		return x.Clone(), dt, nil
	case KindBatchNorm:
		if len(x) < 2 {
			return nil, DTypeInvalid, fmt.Errorf("needs at least (batch, channels), got %v", x)
		}
		for _, name := range []string{"running_mean", "running_var"} {
			t := op.Tensor(name)
			if t == nil {
				return nil, DTypeInvalid, fmt.Errorf("%s is missing", name)
			}
			if t.Size() != x[1] {
				return nil, DTypeInvalid, fmt.Errorf("%s has %d elements for %d channels", name, t.Size(), x[1])
			}
			if tdt, err := DTypeOf(t.Dtype()); err != nil || tdt != dt {
				return nil, DTypeInvalid, fmt.Errorf("%s is %v, input is %v", name, t.Dtype(), dt)
			}
		}
		return x.Clone(), dt, nil
	}
	if len(x) != 4 {
		return nil, DTypeInvalid, fmt.Errorf("needs a (batch, channels, height, width) input, got %v", x)
	}
	b, c, h, w := x[0], x[1], x[2], x[3]
	switch op.Kind {
	case KindGlobalAvgPool2D:
		return Shape{b, c, 1, 1}, dt, nil
	case KindIm2Col:
		kernel, pad, stride, dil := op.Ints("kernel"), op.Ints("pad"), op.Ints("stride"), op.Ints("dilation")
		if err := checkPairs(map[string][]int{"kernel": kernel, "pad": pad, "stride": stride, "dilation": dil}); err != nil {
			return nil, DTypeInvalid, err
		}
		if err := checkPositive(map[string][]int{"kernel": kernel, "stride": stride, "dilation": dil}); err != nil {
			return nil, DTypeInvalid, err
		}
		if pad[0] < 0 || pad[1] < 0 {
			return nil, DTypeInvalid, fmt.Errorf("negative pad %v", pad)
		}
		oh, err := poolExtent(h, pad[0]+pad[0], dil[0]*(kernel[0]-1)+1, stride[0], "height")
		if err != nil {
			return nil, DTypeInvalid, err
		}
		ow, err := poolExtent(w, pad[1]+pad[1], dil[1]*(kernel[1]-1)+1, stride[1], "width")
		if err != nil {
			return nil, DTypeInvalid, err
		}
		return Shape{b, oh, ow, c * kernel[0] * kernel[1]}, dt, nil
	case KindMaxPool2D, KindAvgPool2D:
		kernel, pad, stride := op.Ints("kernel"), op.Ints("pad"), op.Ints("stride")
		if err := checkPairs(map[string][]int{"kernel": kernel, "stride": stride}); err != nil {
			return nil, DTypeInvalid, err
		}
		if len(pad) != 4 {
			return nil, DTypeInvalid, fmt.Errorf("pad needs 4 values (north, south, west, east), got %v", pad)
		}
		if err := checkPositive(map[string][]int{"kernel": kernel, "stride": stride}); err != nil {
			return nil, DTypeInvalid, err
		}
		for _, p := range pad {
			if p < 0 {
				return nil, DTypeInvalid, fmt.Errorf("negative pad %v", pad)
			}
		}
		oh, err := poolExtent(h, pad[0]+pad[1], kernel[0], stride[0], "height")
		if err != nil {
			return nil, DTypeInvalid, err
		}
		ow, err := poolExtent(w, pad[2]+pad[3], kernel[1], stride[1], "width")
		if err != nil {
			return nil, DTypeInvalid, err
		}
		return Shape{b, c, oh, ow}, dt, nil
	}
	return nil, DTypeInvalid, fmt.Errorf("no shape rule")
}

// poolExtent is the number of positions of a window of extent k moved by
// stride over size elements plus pad padding: (size+pad-k)/stride + 1.
func poolExtent(size, pad, k, stride int, what string) (int, error) {
	if size+pad < k {
		return 0, fmt.Errorf("the kernel's %s %d exceeds the padded input's %d", what, k, size+pad)
	}
	return (size+pad-k)/stride + 1, nil
}

// checkPairs checks that each attribute has two values (height, width), in
// sorted name order for a stable message.
func checkPairs(attrs map[string][]int) error {
	for _, name := range []string{"dilation", "kernel", "pad", "stride"} {
		if v, ok := attrs[name]; ok && len(v) != 2 {
			return fmt.Errorf("%s needs 2 values (height, width), got %v", name, v)
		}
	}
	return nil
}

// checkPositive checks that each attribute's values are positive.
func checkPositive(attrs map[string][]int) error {
	for _, name := range []string{"dilation", "kernel", "stride"} {
		for _, v := range attrs[name] {
			if v <= 0 {
				return fmt.Errorf("%s %v needs positive values", name, attrs[name])
			}
		}
	}
	return nil
}

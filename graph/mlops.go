package graph

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"
	"sort"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Op kinds for classic machine-learning jobs (ravml). Gorgonia has no
// equivalent, so each is implemented here by a forward-only Gorgonia op;
// none is differentiable. Every index they read or return is carried as a
// float of the input's dtype, exact up to 2⁵³ (float64) or 2²⁴ (float32).
const (
	// KindTopK takes a matrix (m,n) and returns, per row, the k smallest
	// values in ascending order (ties: lower column first), or with bool
	// "indices" their column indexes: (m,k). Int "k" (1 ≤ k ≤ n).
	KindTopK OpKind = "top_k"
	// KindArgMin takes a matrix (m,n) and returns, per row, the column of
	// its smallest value (the first on ties): (m).
	KindArgMin OpKind = "argmin"
	// KindOneHot takes a vector of class indexes (n) and returns (n,depth)
	// with a 1 at each row's class; an index outside [0,depth) gives a row
	// of zeros. Int "depth".
	KindOneHot OpKind = "one_hot"
	// KindTake takes a table (t) and indexes (n) and returns (n) with
	// table[index]; an index outside [0,t) gives -1.
	KindTake OpKind = "take"
	// KindTreeRoute takes rows (n,d) and a tree (t,3) whose node i is
	// [feature, threshold, left]: an inner node sends a row to left when
	// x[feature] ≤ threshold and to left+1 otherwise; a node with a negative
	// feature is a leaf. It returns the leaf each row reaches from node 0:
	// (n).
	KindTreeRoute OpKind = "tree_route"
	// KindHistogram takes bin codes (n,d) in [0,bins), a group per row (n)
	// and weights (n,c), and returns (groups,d,bins,c): for every group,
	// feature and bin the sum of the weights of the rows of that group whose
	// feature falls in that bin. Rows with a group outside [0,groups) and
	// codes outside [0,bins) are skipped. Ints "groups", "bins".
	KindHistogram OpKind = "histogram"
	// KindSegmentSum takes rows (n,d) and a group per row (n) and returns
	// (groups,d): the sum of the rows of each group (a weighted bincount).
	// With groups (n,m) — m independent groupings, say m k-means restarts —
	// it returns (m·groups,d), grouping j in rows j·groups onwards. Rows
	// with a group outside [0,groups) are skipped. Int "groups"; with bool
	// "square" it sums the squares of the rows instead (the second moments
	// of naive Bayes, without the squares of every row in memory).
	KindSegmentSum OpKind = "segment_sum"
	// KindGatherRows takes rows (n,d) and indexes (b) and returns (b,d)
	// with row index of the input at each position; an index outside
	// [0,n) gives a row of zeros (padding of a short mini-batch).
	KindGatherRows OpKind = "gather_rows"
	// KindGroupRows takes a group per row (n) and returns (groups,limit):
	// for every group the indexes of its first limit rows in order, padded
	// with −1 (the rows of small tree nodes, to gather). Ints "groups",
	// "limit".
	KindGroupRows OpKind = "group_rows"
	// KindLogSoftmaxRows takes a matrix (m,n) and returns (m,n): the
	// log-softmax of each row, x − max − log Σ exp(x − max). It is
	// KindSoftmax with "log" along the last axis, as a plain loop:
	// Gorgonia's kernel starts a goroutine per row, which dominates the
	// per-shard gradient of a multinomial logistic regression over tens of
	// thousands of rows and a few classes. Not differentiable, like the
	// other kinds here.
	KindLogSoftmaxRows OpKind = "log_softmax_rows"
	// KindMatMulTopK takes a (m,d) and b (d,n) and returns (m,2k): for
	// each row of a·b its k smallest values in ascending order (ties: lower
	// column first), then their columns. It is KindTopK of KindMatMul
	// without the (m,n) product in memory: a nearest-neighbour search with
	// the data set in the columns of b computes the product a block of
	// columns at a time, each block still in cache when it is searched.
	// Int "k" (1 ≤ k ≤ n); n at most 2²⁴ in float32.
	KindMatMulTopK OpKind = "matmul_top_k"
)

func init() {
	registerKind(KindTopK, opSpec{1, 1, []attrSpec{req("k", AttrInt), opt("indices", AttrBool)}, 0},
		kindImpl{infer: inferTopK, flops: flopsTopK, lower: lowerML})
	registerKind(KindArgMin, opSpec{1, 1, nil, 0},
		kindImpl{infer: inferArgMin, flops: flopsIn0, lower: lowerML})
	registerKind(KindOneHot, opSpec{1, 1, []attrSpec{req("depth", AttrInt)}, 0},
		kindImpl{infer: inferOneHot, flops: flopsOut, lower: lowerML})
	registerKind(KindTake, opSpec{2, 2, nil, 0},
		kindImpl{infer: inferTake, flops: flopsOut, lower: lowerML})
	registerKind(KindTreeRoute, opSpec{2, 2, nil, 0},
		kindImpl{infer: inferTreeRoute, flops: flopsTreeRoute, lower: lowerML})
	registerKind(KindHistogram, opSpec{3, 3, []attrSpec{req("groups", AttrInt), req("bins", AttrInt)}, 0},
		kindImpl{infer: inferHistogram, flops: flopsHistogram, lower: lowerML})
	registerKind(KindSegmentSum, opSpec{2, 2, []attrSpec{req("groups", AttrInt), opt("square", AttrBool)}, 0},
		kindImpl{infer: inferSegmentSum, flops: flopsIn0, lower: lowerML})
	registerKind(KindGatherRows, opSpec{2, 2, nil, 0},
		kindImpl{infer: inferGatherRows, flops: flopsOut, lower: lowerML})
	registerKind(KindGroupRows, opSpec{1, 1, []attrSpec{req("groups", AttrInt), req("limit", AttrInt)}, 0},
		kindImpl{infer: inferGroupRows, flops: flopsIn0, lower: lowerML})
	registerKind(KindLogSoftmaxRows, opSpec{1, 1, nil, 0},
		kindImpl{infer: inferLogSoftmaxRows, flops: flopsLogSoftmaxRows, lower: lowerML})
	registerKind(KindMatMulTopK, opSpec{2, 2, []attrSpec{req("k", AttrInt)}, 0},
		kindImpl{infer: inferMatMulTopK, flops: flopsMatMulTopK, lower: lowerML})
}

func inferMatMulTopK(op Op, in []*Node) (Shape, DType, error) {
	dt, err := sameFloat(in)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	a, b := in[0], in[1]
	if len(a.Shape) != 2 || len(b.Shape) != 2 || a.Shape[1] != b.Shape[0] {
		return nil, DTypeInvalid, fmt.Errorf("needs (m,d) and (d,n), got %v and %v", a.Shape, b.Shape)
	}
	n := b.Shape[1]
	if k := op.Int("k"); k < 1 || k > n {
		return nil, DTypeInvalid, fmt.Errorf("k = %d outside [1, %d]", k, n)
	}
	if dt == Float32 && n > 1<<24 {
		return nil, DTypeInvalid, fmt.Errorf("%d columns: float32 carries column indexes exactly only up to 2^24", n)
	}
	return Shape{a.Shape[0], 2 * op.Int("k")}, dt, nil
}

// flopsMatMulTopK counts the product, 2·m·d·n, and a comparison per value.
func flopsMatMulTopK(op Op, n *Node, in []*Node) int64 {
	if len(in) < 2 || in[0] == nil || in[1] == nil || len(in[0].Shape) != 2 || len(in[1].Shape) != 2 {
		return 0
	}
	m, d, c := int64(in[0].Shape[0]), int64(in[0].Shape[1]), int64(in[1].Shape[1])
	return addSat(mulSat(mulSat(2*m, d), c), mulSat(m, c))
}

func inferLogSoftmaxRows(op Op, in []*Node) (Shape, DType, error) {
	x := in[0]
	if err := floatDType(x); err != nil {
		return nil, DTypeInvalid, err
	}
	if len(x.Shape) != 2 || x.Shape[1] < 1 {
		return nil, DTypeInvalid, fmt.Errorf("input must be a matrix with columns, is %v", x.Shape)
	}
	return x.Shape.Clone(), x.DType, nil
}

// flopsLogSoftmaxRows counts a max, a subtraction, an exp and a sum per
// element: 4 per element (the log per row is left out).
func flopsLogSoftmaxRows(op Op, n *Node, in []*Node) int64 { return 4 * elems(in[0]) }

func inferGroupRows(op Op, in []*Node) (Shape, DType, error) {
	if err := floatDType(in[0]); err != nil {
		return nil, DTypeInvalid, err
	}
	if len(in[0].Shape) != 1 {
		return nil, DTypeInvalid, fmt.Errorf("groups must be a vector, are %v", in[0].Shape)
	}
	g, l := op.Int("groups"), op.Int("limit")
	if g < 1 || l < 1 {
		return nil, DTypeInvalid, fmt.Errorf("groups %d and limit %d must be positive", g, l)
	}
	out := Shape{g, l}
	if _, ok := sizeChecked(out); !ok {
		return nil, DTypeInvalid, fmt.Errorf("output %v is too large", out)
	}
	return out, in[0].DType, nil
}

func inferGatherRows(op Op, in []*Node) (Shape, DType, error) {
	dt, err := sameFloat(in)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	x, idx := in[0].Shape, in[1].Shape
	if len(x) != 2 || len(idx) != 1 {
		return nil, DTypeInvalid, fmt.Errorf("want rows (n,d) and indexes (b), got %v and %v", x, idx)
	}
	return Shape{idx[0], x[1]}, dt, nil
}

func inferSegmentSum(op Op, in []*Node) (Shape, DType, error) {
	dt, err := sameFloat(in)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	x, g := in[0].Shape, in[1].Shape
	if len(x) != 2 || len(g) < 1 || len(g) > 2 || g[0] != x[0] {
		return nil, DTypeInvalid, fmt.Errorf("want rows (n,d) and groups (n) or (n,m), got %v and %v", x, g)
	}
	groups := op.Int("groups")
	if groups < 1 {
		return nil, DTypeInvalid, fmt.Errorf("groups %d must be positive", groups)
	}
	m := 1
	if len(g) == 2 {
		m = g[1]
	}
	out := Shape{m * groups, x[1]}
	if _, ok := sizeChecked(out); !ok || m*groups/m != groups {
		return nil, DTypeInvalid, fmt.Errorf("output %v is too large", out)
	}
	return out, dt, nil
}

func floatDType(n *Node) error {
	if n.DType != Float64 && n.DType != Float32 {
		return fmt.Errorf("input dtype %v is not a float", n.DType)
	}
	return nil
}

func sameFloat(in []*Node) (DType, error) {
	for _, n := range in {
		if err := floatDType(n); err != nil {
			return DTypeInvalid, err
		}
		if n.DType != in[0].DType {
			return DTypeInvalid, fmt.Errorf("inputs have dtypes %v and %v", in[0].DType, n.DType)
		}
	}
	return in[0].DType, nil
}

func inferTopK(op Op, in []*Node) (Shape, DType, error) {
	x := in[0]
	if err := floatDType(x); err != nil {
		return nil, DTypeInvalid, err
	}
	if len(x.Shape) != 2 {
		return nil, DTypeInvalid, fmt.Errorf("input must be a matrix, is %v", x.Shape)
	}
	k := op.Int("k")
	if k < 1 || k > x.Shape[1] {
		return nil, DTypeInvalid, fmt.Errorf("k = %d outside [1, %d]", k, x.Shape[1])
	}
	return Shape{x.Shape[0], k}, x.DType, nil
}

func inferArgMin(op Op, in []*Node) (Shape, DType, error) {
	x := in[0]
	if err := floatDType(x); err != nil {
		return nil, DTypeInvalid, err
	}
	if len(x.Shape) != 2 {
		return nil, DTypeInvalid, fmt.Errorf("input must be a matrix, is %v", x.Shape)
	}
	return Shape{x.Shape[0]}, x.DType, nil
}

func inferOneHot(op Op, in []*Node) (Shape, DType, error) {
	x := in[0]
	if err := floatDType(x); err != nil {
		return nil, DTypeInvalid, err
	}
	if len(x.Shape) != 1 {
		return nil, DTypeInvalid, fmt.Errorf("input must be a vector, is %v", x.Shape)
	}
	d := op.Int("depth")
	if d < 1 {
		return nil, DTypeInvalid, fmt.Errorf("depth %d must be positive", d)
	}
	return Shape{x.Shape[0], d}, x.DType, nil
}

func inferTake(op Op, in []*Node) (Shape, DType, error) {
	dt, err := sameFloat(in)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	if len(in[0].Shape) != 1 || len(in[1].Shape) != 1 {
		return nil, DTypeInvalid, fmt.Errorf("table and indexes must be vectors, are %v and %v", in[0].Shape, in[1].Shape)
	}
	return Shape{in[1].Shape[0]}, dt, nil
}

func inferTreeRoute(op Op, in []*Node) (Shape, DType, error) {
	dt, err := sameFloat(in)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	if len(in[0].Shape) != 2 {
		return nil, DTypeInvalid, fmt.Errorf("rows must be a matrix, are %v", in[0].Shape)
	}
	if len(in[1].Shape) != 2 || in[1].Shape[1] != 3 {
		return nil, DTypeInvalid, fmt.Errorf("tree must be (t,3), is %v", in[1].Shape)
	}
	return Shape{in[0].Shape[0]}, dt, nil
}

func inferHistogram(op Op, in []*Node) (Shape, DType, error) {
	dt, err := sameFloat(in)
	if err != nil {
		return nil, DTypeInvalid, err
	}
	codes, group, w := in[0].Shape, in[1].Shape, in[2].Shape
	if len(codes) != 2 || len(group) != 1 || len(w) != 2 || group[0] != codes[0] || w[0] != codes[0] {
		return nil, DTypeInvalid, fmt.Errorf("want codes (n,d), groups (n), weights (n,c); got %v, %v, %v", codes, group, w)
	}
	g, b := op.Int("groups"), op.Int("bins")
	if g < 1 || b < 1 {
		return nil, DTypeInvalid, fmt.Errorf("groups %d and bins %d must be positive", g, b)
	}
	out := Shape{g, codes[1], b, w[1]}
	if _, ok := sizeChecked(out); !ok {
		return nil, DTypeInvalid, fmt.Errorf("output %v is too large", out)
	}
	return out, dt, nil
}

func elems(n *Node) int64 {
	if n == nil {
		return 0
	}
	return shapeElems(n.Shape)
}

func flopsIn0(op Op, n *Node, in []*Node) int64 { return elems(in[0]) }
func flopsOut(op Op, n *Node, in []*Node) int64 { return elems(n) }

// flopsTopK counts a comparison per element plus a heap update per kept
// element: n·m + m·k·log2(k).
func flopsTopK(op Op, n *Node, in []*Node) int64 {
	k := int64(op.Int("k"))
	lg := int64(1)
	for v := k; v > 1; v >>= 1 {
		lg++
	}
	return addSat(elems(in[0]), mulSat(elems(n), lg))
}

// flopsTreeRoute assumes a path of log2(t) comparisons per row.
func flopsTreeRoute(op Op, n *Node, in []*Node) int64 {
	depth := int64(1)
	if len(in) > 1 && in[1] != nil && len(in[1].Shape) > 0 {
		for v := in[1].Shape[0]; v > 1; v >>= 1 {
			depth++
		}
	}
	return mulSat(elems(n), depth)
}

// flopsHistogram counts one addition per row, feature and weight channel.
func flopsHistogram(op Op, n *Node, in []*Node) int64 {
	if len(in) < 3 || in[0] == nil || in[2] == nil || len(in[2].Shape) != 2 {
		return 0
	}
	return mulSat(elems(in[0]), int64(in[2].Shape[1]))
}

// lowerML applies the op's own Gorgonia implementation.
func lowerML(op Op, in []*gorgonia.Node) (*gorgonia.Node, error) {
	irIn := make([]*Node, len(in))
	types := make([]hm.Type, len(in))
	for i, n := range in {
		dt, err := DTypeOf(n.Dtype())
		if err != nil {
			return nil, err
		}
		irIn[i] = &Node{Shape: irShape(n.Shape()), DType: dt}
		types[i] = n.Type()
	}
	shape, dt, err := infer(op, irIn)
	if err != nil {
		return nil, err
	}
	tdt, err := dt.Tensor()
	if err != nil {
		return nil, err
	}
	m := &mlOp{op: op, in: types, shape: tensor.Shape(clone(shape)), dt: tdt}
	return gorgonia.ApplyOp(m, in...)
}

// mlOp is the Gorgonia op behind the kinds of this file.
type mlOp struct {
	op    Op
	in    []hm.Type
	shape tensor.Shape
	dt    tensor.Dtype
}

func (m *mlOp) Arity() int { return len(m.in) }

func (m *mlOp) Type() hm.Type {
	ts := append(append([]hm.Type{}, m.in...), gorgonia.TensorType{Dims: len(m.shape), Of: m.dt})
	return hm.NewFnType(ts...)
}

func (m *mlOp) InferShape(...gorgonia.DimSizer) (tensor.Shape, error) { return m.shape.Clone(), nil }

func (m *mlOp) ReturnsPtr() bool     { return false }
func (m *mlOp) CallsExtern() bool    { return false }
func (m *mlOp) OverwritesInput() int { return -1 }
func (m *mlOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "rookery.%v%v", m.op, m.shape)
	for _, t := range m.in {
		fmt.Fprintf(h, ",%v", t)
	}
}
func (m *mlOp) Hashcode() uint32 {
	h := fnv.New32a()
	m.WriteHash(h)
	return h.Sum32()
}
func (m *mlOp) String() string { return "rookery." + m.op.String() }

// DiffWRT says that no input is differentiable.
func (m *mlOp) DiffWRT(n int) []bool { return make([]bool, n) }

// SymDiff is never called: the op is not differentiable.
func (m *mlOp) SymDiff(gorgonia.Nodes, *gorgonia.Node, *gorgonia.Node) (gorgonia.Nodes, error) {
	return nil, fmt.Errorf("graph: %s is not differentiable", m.op.Kind)
}

func (m *mlOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	if len(vals) != len(m.in) {
		return nil, fmt.Errorf("graph: %s: got %d inputs, want %d", m.op.Kind, len(vals), len(m.in))
	}
	in := make([]*tensor.Dense, len(vals))
	for i, v := range vals {
		d, ok := v.(*tensor.Dense)
		if !ok {
			return nil, fmt.Errorf("graph: %s: input %d is %T, want a tensor", m.op.Kind, i, v)
		}
		if !d.IsNativelyAccessible() || d.RequiresIterator() {
			d = d.Materialize().(*tensor.Dense)
		}
		if d.Dtype() != m.dt {
			return nil, fmt.Errorf("graph: %s: input %d is %v, want %v", m.op.Kind, i, d.Dtype(), m.dt)
		}
		in[i] = d
	}
	out := tensor.New(tensor.Of(m.dt), tensor.WithShape(m.shape.Clone()...))
	var err error
	switch m.dt {
	case tensor.Float64:
		err = runML(m.op, in, out, (*tensor.Dense).Float64s)
	case tensor.Float32:
		err = runML(m.op, in, out, (*tensor.Dense).Float32s)
	default:
		err = fmt.Errorf("dtype %v", m.dt)
	}
	if err != nil {
		return nil, fmt.Errorf("graph: %s: %w", m.op.Kind, err)
	}
	return out, nil
}

func runML[T float32 | float64](op Op, in []*tensor.Dense, out *tensor.Dense, data func(*tensor.Dense) []T) error {
	o := data(out)
	x := data(in[0])
	s0 := in[0].Shape()
	switch op.Kind {
	case KindTopK:
		TopK(x, s0[0], s0[1], op.Int("k"), op.Bool("indices"), o)
	case KindArgMin:
		ArgMin(x, s0[0], s0[1], o)
	case KindOneHot:
		OneHot(x, op.Int("depth"), o)
	case KindTake:
		Take(x, data(in[1]), o)
	case KindTreeRoute:
		return TreeRoute(x, s0[1], data(in[1]), o)
	case KindHistogram:
		Histogram(x, s0[1], data(in[1]), data(in[2]), in[2].Shape()[1], op.Int("groups"), op.Int("bins"), o)
	case KindGroupRows:
		GroupRows(x, op.Int("groups"), op.Int("limit"), o)
	case KindGatherRows:
		GatherRows(x, s0[1], data(in[1]), o)
	case KindLogSoftmaxRows:
		LogSoftmaxRows(x, s0[0], s0[1], o)
	case KindMatMulTopK:
		MatMulTopK(x, data(in[1]), s0[0], s0[1], in[1].Shape()[1], op.Int("k"), o)
	case KindSegmentSum:
		m := 1
		if s1 := in[1].Shape(); len(s1) == 2 {
			m = s1[1]
		}
		SegmentSum(x, s0[1], data(in[1]), m, op.Int("groups"), op.Bool("square"), o)
	default:
		return fmt.Errorf("no kernel")
	}
	return nil
}

// The kernels below are exported so that a requester can run the same
// computation on its side (a reduction, a prediction) as a provider runs
// in a graph. x is row-major throughout.

// TopK writes into out (m×k) the k smallest values of each row of x (m×n)
// in ascending order, ties broken by the lower column, or with indices set
// their columns.
func TopK[T float32 | float64](x []T, m, n, k int, indices bool, out []T) {
	vals := make([]T, k)
	idx := make([]int, k)
	for r := 0; r < m; r++ {
		row := x[r*n : (r+1)*n]
		c := topKRow(row, k, vals, idx)
		o := out[r*k : (r+1)*k]
		for j := 0; j < c; j++ {
			if indices {
				o[j] = T(idx[j])
			} else {
				o[j] = vals[j]
			}
		}
	}
}

// topKRow keeps the k smallest (value, column) pairs of row sorted by
// insertion: fine for the small k of nearest-neighbour searches. A NaN
// counts as +Inf.
func topKRow[T float32 | float64](row []T, k int, vals []T, idx []int) int {
	return topKMerge(row, 0, k, vals, idx, 0)
}

// ArgMin writes into out (m) the column of the smallest value of each row
// of x (m×n), the first one on ties.
func ArgMin[T float32 | float64](x []T, m, n int, out []T) {
	for r := 0; r < m; r++ {
		row := x[r*n : (r+1)*n]
		best, bj := row[0], 0
		for j, v := range row {
			if v < best || best != best {
				best, bj = v, j
			}
		}
		out[r] = T(bj)
	}
}

// OneHot writes into out (n×depth) a 1 at column x[i] of row i.
func OneHot[T float32 | float64](x []T, depth int, out []T) {
	clear(out)
	for i, v := range x {
		if c := int(v); v >= 0 && c < depth && T(c) == v {
			out[i*depth+c] = 1
		}
	}
}

// Take writes table[idx[i]] into out[i], or -1 for an index outside the
// table.
func Take[T float32 | float64](table, idx, out []T) {
	for i, v := range idx {
		if c := int(v); v >= 0 && c < len(table) {
			out[i] = table[c]
		} else {
			out[i] = -1
		}
	}
}

// TreeRoute writes into out the leaf that each row of x (rows of d
// features) reaches in tree (t×3: feature, threshold, left child).
func TreeRoute[T float32 | float64](x []T, d int, tree []T, out []T) error {
	t := len(tree) / 3
	for i := range out {
		row := x[i*d : (i+1)*d]
		node := 0
		for steps := 0; ; steps++ {
			if steps > t {
				return fmt.Errorf("tree has a cycle at node %d", node)
			}
			f := int(tree[node*3])
			if tree[node*3] < 0 {
				break
			}
			if f >= d {
				return fmt.Errorf("node %d splits on feature %d of %d", node, f, d)
			}
			next := int(tree[node*3+2])
			if !(row[f] <= tree[node*3+1]) {
				next++
			}
			if next <= 0 || next >= t {
				return fmt.Errorf("node %d has child %d outside [1,%d)", node, next, t)
			}
			node = next
		}
		out[i] = T(node)
	}
	return nil
}

// Histogram adds into out (groups×d×bins×c, cleared first) the weights
// (rows of c) of each row of codes (rows of d) to its group, feature and
// bin.
func Histogram[T float32 | float64](codes []T, d int, group, w []T, c, groups, bins int, out []T) {
	clear(out)
	nz := make([]int, 0, c)
	for i, gv := range group {
		g := int(gv)
		if gv < 0 || g >= groups {
			continue
		}
		wi := w[i*c : (i+1)*c]
		nz = nz[:0]
		for j, v := range wi {
			if v != 0 {
				nz = append(nz, j)
			}
		}
		if len(nz) == 0 {
			continue
		}
		row := codes[i*d : (i+1)*d]
		base := g * d * bins * c
		if len(nz) == 1 {
			j, v := nz[0], wi[nz[0]]
			for f, bv := range row {
				b := int(bv)
				if bv >= 0 && b < bins {
					out[base+(f*bins+b)*c+j] += v
				}
			}
			continue
		}
		for f, bv := range row {
			b := int(bv)
			if bv < 0 || b >= bins {
				continue
			}
			o := out[base+(f*bins+b)*c : base+(f*bins+b+1)*c]
			for _, j := range nz {
				o[j] += wi[j]
			}
		}
	}
}

// SegmentSum writes into out (m·groups×d, cleared first) the sum of the
// rows of x (rows of d) of each group, or of their squares; group holds m
// groups per row, and grouping j uses rows j·groups onwards of out.
func SegmentSum[T float32 | float64](x []T, d int, group []T, m, groups int, square bool, out []T) {
	clear(out)
	for i := 0; i < len(group)/m; i++ {
		row := x[i*d : (i+1)*d]
		for j, gv := range group[i*m : (i+1)*m] {
			g := int(gv)
			if gv < 0 || g >= groups {
				continue
			}
			o := out[(j*groups+g)*d : (j*groups+g+1)*d]
			o = o[:len(row)]
			if square {
				for f, v := range row {
					o[f] += v * v
				}
				continue
			}
			for f, v := range row {
				o[f] += v
			}
		}
	}
}

// GatherRows writes row idx[i] of x (rows of d) into row i of out, or
// zeros for an index outside x.
func GatherRows[T float32 | float64](x []T, d int, idx []T, out []T) {
	n := len(x) / d
	for i, v := range idx {
		o := out[i*d : (i+1)*d]
		if r := int(v); v >= 0 && r < n {
			copy(o, x[r*d:(r+1)*d])
		} else {
			clear(o)
		}
	}
}

// GroupRows writes into out (groups×limit) the first limit rows of each
// group, padded with −1.
func GroupRows[T float32 | float64](group []T, groups, limit int, out []T) {
	for i := range out {
		out[i] = -1
	}
	fill := make([]int, groups)
	for i, gv := range group {
		g := int(gv)
		if gv < 0 || g >= groups || fill[g] == limit {
			continue
		}
		out[g*limit+fill[g]] = T(i)
		fill[g]++
	}
}

// LogSoftmaxRows writes into out (m×n) the log-softmax of each row of x
// (m×n), shifted by the row's maximum so that exp never overflows. A row
// holding +Inf or NaN gives NaN, as the unshifted formula would.
func LogSoftmaxRows[T float32 | float64](x []T, m, n int, out []T) {
	for r := 0; r < m; r++ {
		row, o := x[r*n:(r+1)*n], out[r*n:(r+1)*n]
		mx := row[0]
		for _, v := range row[1:] {
			if v > mx || v != v {
				mx = v
			}
		}
		var sum float64
		for j, v := range row {
			o[j] = v - mx
			sum += math.Exp(float64(o[j]))
		}
		ls := T(math.Log(sum))
		for j := range o {
			o[j] -= ls
		}
	}
}

// MLKinds lists the kinds of this file, sorted.
func MLKinds() []OpKind {
	ks := []OpKind{KindTopK, KindArgMin, KindOneHot, KindTake, KindTreeRoute, KindHistogram, KindSegmentSum, KindGatherRows, KindGroupRows, KindLogSoftmaxRows}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

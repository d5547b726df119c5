package graph

import (
	"fmt"
	"sort"
)

// Op kinds for classic machine-learning jobs (ravml). Gorgonia has no
// equivalent: the kernels of package exec/kernels compute them, and
// exec.Lower builds each as a forward-only Gorgonia op (see LowerFunc);
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
		kindImpl{infer: inferTopK, flops: flopsTopK})
	registerKind(KindArgMin, opSpec{1, 1, nil, 0},
		kindImpl{infer: inferArgMin, flops: flopsIn0})
	registerKind(KindOneHot, opSpec{1, 1, []attrSpec{req("depth", AttrInt)}, 0},
		kindImpl{infer: inferOneHot, flops: flopsOut})
	registerKind(KindTake, opSpec{2, 2, nil, 0},
		kindImpl{infer: inferTake, flops: flopsOut})
	registerKind(KindTreeRoute, opSpec{2, 2, nil, 0},
		kindImpl{infer: inferTreeRoute, flops: flopsTreeRoute})
	registerKind(KindHistogram, opSpec{3, 3, []attrSpec{req("groups", AttrInt), req("bins", AttrInt)}, 0},
		kindImpl{infer: inferHistogram, flops: flopsHistogram})
	registerKind(KindSegmentSum, opSpec{2, 2, []attrSpec{req("groups", AttrInt), opt("square", AttrBool)}, 0},
		kindImpl{infer: inferSegmentSum, flops: flopsIn0})
	registerKind(KindGatherRows, opSpec{2, 2, nil, 0},
		kindImpl{infer: inferGatherRows, flops: flopsOut})
	registerKind(KindGroupRows, opSpec{1, 1, []attrSpec{req("groups", AttrInt), req("limit", AttrInt)}, 0},
		kindImpl{infer: inferGroupRows, flops: flopsIn0})
	registerKind(KindLogSoftmaxRows, opSpec{1, 1, nil, 0},
		kindImpl{infer: inferLogSoftmaxRows, flops: flopsLogSoftmaxRows})
	registerKind(KindMatMulTopK, opSpec{2, 2, []attrSpec{req("k", AttrInt)}, 0},
		kindImpl{infer: inferMatMulTopK, flops: flopsMatMulTopK})
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

// MLKinds lists the kinds of this file, sorted.
func MLKinds() []OpKind {
	ks := []OpKind{KindTopK, KindArgMin, KindOneHot, KindTake, KindTreeRoute, KindHistogram, KindSegmentSum, KindGatherRows, KindGroupRows, KindLogSoftmaxRows}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

package kernels

import (
	"fmt"
	"math"
)

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

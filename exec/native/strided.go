package native

// Elementwise kernels address their operands through rank-4 dims and
// per-operand strides (0 where an operand is broadcast). nd collapses
// those into as few dims as the strides allow, so that most launches run
// as one long contiguous loop, or as rows of one, rather than paying an
// index decomposition per element.

// nd is an iteration space of rows × inner elements: rows are indexed by
// the outer dims, the inner dim is the last collapsed one.
type nd struct {
	outer   [3]int    // outer dims, slowest first (1 where unused)
	st      [3][4]int // st[k][j]: operand k's stride along outer dim j; [3] the inner one
	inner   int
	nops    int
	rows    int
	instrid [3]int // operands' strides along the inner dim
}

// newND collapses dims d (rank 4, d[0] slowest) for operands with
// strides st[0..nops-1].
func newND(d [4]int, st [][4]int) nd {
	// Drop dims of size 1, then merge neighbours that are contiguous for
	// every operand.
	var dims [4]int
	var strides [3][4]int
	n := 0
	for j := 0; j < 4; j++ {
		if d[j] == 1 {
			continue
		}
		if n > 0 {
			merge := true
			for k := range st {
				if strides[k][n-1] != st[k][j]*d[j] {
					merge = false
					break
				}
			}
			if merge {
				dims[n-1] *= d[j]
				for k := range st {
					strides[k][n-1] = st[k][j]
				}
				continue
			}
		}
		dims[n] = d[j]
		for k := range st {
			strides[k][n] = st[k][j]
		}
		n++
	}
	if n == 0 { // a single element
		dims[0], n = 1, 1
	}
	var it nd
	it.nops = len(st)
	it.inner = dims[n-1]
	for k := range st {
		it.instrid[k] = strides[k][n-1]
	}
	it.outer = [3]int{1, 1, 1}
	it.rows = 1
	for j := 0; j < n-1; j++ {
		o := 3 - (n - 1) + j
		it.outer[o] = dims[j]
		it.rows *= dims[j]
		for k := range st {
			it.st[k][o] = strides[k][j]
		}
	}
	return it
}

// rowOffsets returns the offsets of row r for each operand.
func (it *nd) rowOffsets(r int) (o [3]int) {
	i2 := r % it.outer[2]
	t := r / it.outer[2]
	i1 := t % it.outer[1]
	i0 := t / it.outer[1]
	for k := 0; k < it.nops; k++ {
		o[k] = i0*it.st[k][0] + i1*it.st[k][1] + i2*it.st[k][2]
	}
	return o
}

// span returns the rows of part p of parts.
func span(rows, p, parts int) (lo, hi int) {
	return rows * p / parts, rows * (p + 1) / parts
}

// contiguous are the strides of a dense rank-4 array of dims d.
func contiguous(d [4]int) [4]int {
	return [4]int{d[1] * d[2] * d[3], d[2] * d[3], d[3], 1}
}

// each calls f for the chunks of part p of parts: the offsets of each
// operand at the chunk's first element, and its length along the inner
// dim. Rows are split among the parts; where there are fewer rows than
// parts, each row's inner dim is.
func (it *nd) each(p, parts int, f func(off [3]int, n int)) {
	if it.rows >= parts {
		lo, hi := span(it.rows, p, parts)
		for r := lo; r < hi; r++ {
			f(it.rowOffsets(r), it.inner)
		}
		return
	}
	lo, hi := span(it.inner, p, parts)
	if hi <= lo {
		return
	}
	for r := 0; r < it.rows; r++ {
		off := it.rowOffsets(r)
		for k := 0; k < it.nops; k++ {
			off[k] += lo * it.instrid[k]
		}
		f(off, hi-lo)
	}
}

package native

import (
	"math"

	"gonum.org/v1/gonum/blas"

	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/internal/gemm"
)

// The kernels compute what exec/plan's kernels compute (the CUDA C
// sources of exec/cuda, and the reference device of its tests), with the
// same argument lists, on Go slices: ptrs hold the buffer arguments in
// order, ints and scalars are read from the launch.

// kernelFor returns the kernel of a base name, from a table made once
// (a generic function value would be allocated on every lookup).
func kernelFor[T float](name string) (kernelFunc[T], bool) {
	var t any = tables32
	var z T
	if _, ok := any(z).(float64); ok {
		t = tables64
	}
	k, ok := t.(map[string]kernelFunc[T])[name]
	return k, ok
}

var (
	tables32 = kernelTable[float32]()
	tables64 = kernelTable[float64]()
)

func kernelTable[T float]() map[string]kernelFunc[T] {
	return map[string]kernelFunc[T]{
		"unary": kUnary[T], "unary_grad": kUnaryGrad[T], "scatter": kScatter[T], "binary": kBinary[T],
		"reduce": kReduce[T], "fill": kFill[T], "softmax": kSoftmax[T], "softmax_grad": kSoftmaxGrad[T],
		"im2col": kIm2Col[T], "col2im": kCol2Im[T], "maxpool": kMaxPool[T], "maxpool_grad": kMaxPoolGrad[T],
		"update": kUpdate[T], "conv": kConv[T], "conv_filter_grad": kConvFilterGrad[T], "conv_input_grad": kConvInputGrad[T],
		"bias_relu": kBiasReLU[T], "bias_relu_rows": kBiasReLURows[T], "bias_relu_rows_grad": kBiasReLURowsGrad[T], "bias_relu_grad": kBiasReLUGrad[T], "conv_bias_relu_pool": kConvBiasReLUPool[T],
		"bias_relu_pool_grad": kBiasReLUPoolGrad[T],
	}
}

func (x *launch[T]) int(i int) int  { return x.l.Args[i].Int }
func (x *launch[T]) scalar(i int) T { return T(x.l.Args[i].Scalar) }
func (x *launch[T]) ints4(i int) [4]int {
	return [4]int{x.int(i), x.int(i + 1), x.int(i + 2), x.int(i + 3)}
}

// dims4 returns the rank-4 dims (d0 implied by n) of an elementwise
// launch whose n is argument ni and whose d1..d3 start at argument di.
func (x *launch[T]) dims4(ni, di int) [4]int {
	d1, d2, d3 := x.int(di), x.int(di+1), x.int(di+2)
	inner := max(d1*d2*d3, 1)
	return [4]int{x.int(ni) / inner, d1, d2, d3}
}

// workOf returns the elements launch x touches and the units its kernel
// splits them in.
func workOf[T float](x *launch[T]) (work int64, units int) {
	switch plan.KernelBase(x.l.Kernel) {
	case "unary", "binary", "unary_grad", "update":
		return int64(x.int(1)), x.int(1)
	case "scatter", "fill", "im2col":
		return int64(x.int(0)), x.int(0)
	case "reduce":
		r := x.ints4(7)
		return int64(x.int(1)) * int64(r[0]*r[1]*r[2]*r[3]), max(x.int(1), 1)
	case "softmax", "softmax_grad":
		return int64(x.int(0)) * int64(x.int(1)), x.int(0)
	case "col2im":
		return int64(x.int(0)), x.int(0) / max(x.int(3)*x.int(4), 1)
	case "conv", "conv_filter_grad", "conv_input_grad", "conv_bias_relu_pool":
		g := x.geom()
		return int64(g.b) * int64(g.c*g.kh*g.kw) * int64(g.oh*g.ow), g.chunks()
	case "bias_relu":
		return int64(x.int(0)), x.int(1) * x.int(2)
	case "bias_relu_grad":
		return int64(x.int(0)), x.int(2)
	case "bias_relu_rows":
		return int64(x.int(0)), x.int(0) / max(x.int(1), 1)
	case "bias_relu_rows_grad":
		return int64(x.int(0)), x.int(1)
	case "bias_relu_pool_grad":
		return 4 * int64(x.int(0)), x.int(2)
	case "maxpool":
		return int64(x.int(0)) * int64(x.int(6)*x.int(7)), x.int(0) / max(x.int(4)*x.int(5), 1)
	case "maxpool_grad":
		return int64(x.int(0)), x.int(0) / max(x.int(3)*x.int(4), 1)
	}
	return 0, 1
}

// A gemm whose result is small and whose k is long (the weight gradient
// of a convolution: a few filters by a patch, summed over every position
// of the batch) has too few tiles of C to split; it is split along k
// instead, each part's product summed at the end (sumParts).
const (
	maxSplitMN = 64 * 64
	minSplitK  = 2048
)

// runGemm runs part p of parts of a plan's gemm, given in cuBLAS's
// column-major terms, as the row-major product it is: the row-major view
// of a column-major matrix is its transpose, so C = op(A)·op(B) is the
// row-major Cᵀ = op(B)ᵀ·op(A)ᵀ. Split along k, part p computes its slice
// of k into x.scratch[p].
func runGemm[T float](x *launch[T], p, parts int) {
	g := x.l.Gemm
	tr := func(t bool) blas.Transpose {
		if t {
			return blas.Trans
		}
		return blas.NoTrans
	}
	// Row-major: C' (m×n) = P (m×k) · Q (k×n), P from buffer B, Q from A.
	m, n, k := g.N, g.M, g.K
	pb, qa, c := x.ptrs[1], x.ptrs[0], x.ptrs[2]
	beta, ldc := g.Beta, g.Ldc
	if parts > 1 {
		k0, k1 := span(g.K, p, parts)
		k = k1 - k0
		if g.TransB {
			pb = pb[k0*g.Ldb:]
		} else {
			pb = pb[k0:]
		}
		if g.TransA {
			qa = qa[k0:]
		} else {
			qa = qa[k0*g.Lda:]
		}
		c, beta, ldc = x.scratch[p], 0, n
	}
	var impl gemm.Implementation
	switch c := any(c).(type) {
	case []float32:
		impl.Sgemm(tr(g.TransB), tr(g.TransA), m, n, k, float32(g.Alpha), any(pb).([]float32), g.Ldb, any(qa).([]float32), g.Lda, float32(beta), c, ldc)
	case []float64:
		impl.Dgemm(tr(g.TransB), tr(g.TransA), m, n, k, g.Alpha, any(pb).([]float64), g.Ldb, any(qa).([]float64), g.Lda, beta, c, ldc)
	}
}

// sumParts adds the parts of a gemm split along k into C (C = β·C + Σ).
func sumParts[T float](x *launch[T]) {
	g := x.l.Gemm
	m, n := g.N, g.M
	c, beta := x.ptrs[2], T(g.Beta)
	for i := range m {
		row := c[i*g.Ldc : i*g.Ldc+n]
		for j := range row {
			var s T
			for _, part := range x.scratch {
				s += part[i*n+j]
			}
			if beta == 0 {
				row[j] = s
			} else {
				row[j] = beta*row[j] + s
			}
		}
	}
}

// kFill: fill(n, v, y).
func kFill[T float](x *launch[T], p, parts int) {
	lo, hi := span(x.int(0), p, parts)
	v := x.scalar(1)
	y := x.ptrs[0][lo:hi]
	for i := range y {
		y[i] = v
	}
}

// kUnary: unary(op, n, acc, d1, d2, d3, xs0..xs3, x, y): y[i] (+)= f(x[strided i]).
func kUnary[T float](x *launch[T], p, parts int) {
	op, acc := x.int(0), x.int(2) != 0
	d := x.dims4(1, 3)
	it := newND(d, [][4]int{x.ints4(6), contiguous(d)})
	src, dst := x.ptrs[0], x.ptrs[1]
	sx := it.instrid[0]
	it.each(p, parts, func(off [3]int, n int) {
		unaryRow(op, acc, src[off[0]:], sx, dst[off[1]:off[1]+n])
	})
}

// unaryRow computes y[i] (+)= f(x[i·sx]) over len(y) elements.
func unaryRow[T float](op int, acc bool, x []T, sx int, y []T) {
	n := len(y)
	if n == 0 {
		return
	}
	if sx == 1 {
		x = x[:n]
		switch {
		case op == plan.UCopy && !acc:
			copy(y, x)
			return
		case op == plan.UCopy:
			for i, v := range x {
				y[i] += v
			}
			return
		case op == plan.UNeg && !acc:
			for i, v := range x {
				y[i] = -v
			}
			return
		case op == plan.USquare && !acc:
			for i, v := range x {
				y[i] = v * v
			}
			return
		}
	}
	if sx == 0 {
		v := unaryF(op, x[0])
		for i := range y {
			if acc {
				y[i] += v
			} else {
				y[i] = v
			}
		}
		return
	}
	if op == plan.UCopy {
		j := 0
		if acc {
			for i := range y {
				y[i] += x[j]
				j += sx
			}
		} else {
			for i := range y {
				y[i] = x[j]
				j += sx
			}
		}
		return
	}
	j := 0
	for i := range y {
		v := unaryF(op, x[j])
		if acc {
			y[i] += v
		} else {
			y[i] = v
		}
		j += sx
	}
}

// kScatter: scatter(n, acc, d1, d2, d3, xs0..xs3, ys0..ys3, x, y):
// y[strided i] (+)= x[strided i].
func kScatter[T float](x *launch[T], p, parts int) {
	acc := x.int(1) != 0
	d := x.dims4(0, 2)
	it := newND(d, [][4]int{x.ints4(5), x.ints4(9)})
	src, dst := x.ptrs[0], x.ptrs[1]
	sx, sy := it.instrid[0], it.instrid[1]
	it.each(p, parts, func(off [3]int, n int) {
		xs, ys := src[off[0]:], dst[off[1]:]
		i, j := 0, 0
		for range n {
			if acc {
				ys[j] += xs[i]
			} else {
				ys[j] = xs[i]
			}
			i += sx
			j += sy
		}
	})
}

// kUnaryGrad: unary_grad(op, n, acc, x, y, dy, dx): dx (+)= dy·f'(x).
func kUnaryGrad[T float](x *launch[T], p, parts int) {
	op, acc := x.int(0), x.int(2) != 0
	lo, hi := span(x.int(1), p, parts)
	xs, ys, dys, dxs := x.ptrs[0][lo:hi], x.ptrs[1][lo:hi], x.ptrs[2][lo:hi], x.ptrs[3][lo:hi]
	for i := range dxs {
		v := unaryGradF(op, xs[i], ys[i], dys[i])
		if acc {
			dxs[i] += v
		} else {
			dxs[i] = v
		}
	}
}

// kBinary: binary(op, n, acc, d1, d2, d3, as0..as3, bs0..bs3, a, b, z).
func kBinary[T float](x *launch[T], p, parts int) {
	op, acc := x.int(0), x.int(2) != 0
	d := x.dims4(1, 3)
	it := newND(d, [][4]int{x.ints4(6), x.ints4(10), contiguous(d)})
	a, b, z := x.ptrs[0], x.ptrs[1], x.ptrs[2]
	sa, sb := it.instrid[0], it.instrid[1]
	it.each(p, parts, func(off [3]int, n int) {
		binaryRow(op, acc, a[off[0]:], sa, b[off[1]:], sb, z[off[2]:off[2]+n])
	})
}

// binaryRow computes z[i] (+)= f(a[i·sa], b[i·sb]) over len(z) elements.
func binaryRow[T float](op int, acc bool, a []T, sa int, b []T, sb int, z []T) {
	n := len(z)
	if n == 0 {
		return
	}
	if !acc {
		switch {
		case sa == 1 && sb == 1:
			a, b := a[:n], b[:n]
			switch op {
			case plan.BAdd:
				for i := range z {
					z[i] = a[i] + b[i]
				}
				return
			case plan.BSub:
				for i := range z {
					z[i] = a[i] - b[i]
				}
				return
			case plan.BMul:
				for i := range z {
					z[i] = a[i] * b[i]
				}
				return
			case plan.BDiv:
				for i := range z {
					z[i] = a[i] / b[i]
				}
				return
			}
		case sa == 1 && sb == 0:
			a, v := a[:n], b[0]
			switch op {
			case plan.BAdd:
				for i := range z {
					z[i] = a[i] + v
				}
				return
			case plan.BSub:
				for i := range z {
					z[i] = a[i] - v
				}
				return
			case plan.BMul:
				for i := range z {
					z[i] = a[i] * v
				}
				return
			case plan.BDiv:
				for i := range z {
					z[i] = a[i] / v
				}
				return
			case plan.BGte:
				for i := range z {
					z[i] = bit[T](a[i] >= v)
				}
				return
			case plan.BGt:
				for i := range z {
					z[i] = bit[T](a[i] > v)
				}
				return
			}
		case sa == 0 && sb == 1:
			v, b := a[0], b[:n]
			switch op {
			case plan.BAdd:
				for i := range z {
					z[i] = v + b[i]
				}
				return
			case plan.BMul:
				for i := range z {
					z[i] = v * b[i]
				}
				return
			}
		}
	}
	i, j := 0, 0
	for k := range z {
		v := binaryF(op, a[i], b[j])
		if acc {
			z[k] += v
		} else {
			z[k] = v
		}
		i += sa
		j += sb
	}
}

// bit is 1 where c holds, else 0, without a branch (a comparison of
// data is a coin toss to the branch predictor).
func bit[T float](c bool) T { return T(bit32(c)) }

func bit32(c bool) int32 {
	var k int32
	if c { // compiled to a SETcc, not a jump
		k = 1
	}
	return k
}

// kReduce: reduce(op, nOut, acc, scale, o1, o2, o3, r0..r3, xs0..xs3, x, y):
// y (+)= scale·reduce(x) where x has dims o·r read with strides xs.
func kReduce[T float](x *launch[T], p, parts int) {
	op, nOut, acc := x.int(0), x.int(1), x.int(2) != 0
	scale := x.scalar(3)
	o := [4]int{0, x.int(4), x.int(5), x.int(6)}
	o[0] = nOut / max(o[1]*o[2]*o[3], 1)
	r, xs := x.ints4(7), x.ints4(11)
	src, dst := x.ptrs[0], x.ptrs[1]
	// The reduced elements of one output: a collapsed space over r.
	rit := newND(r, [][4]int{xs})
	lo, hi := span(nOut, p, parts)
	for i := lo; i < hi; i++ {
		i3 := i % o[3]
		t := i / o[3]
		i2 := t % o[2]
		t /= o[2]
		base := (t/o[1])*xs[0] + (t%o[1])*xs[1] + i2*xs[2] + i3*xs[3]
		var s T
		var s64 float64
		if op == plan.RMax {
			s = lowest[T]()
		}
		sx := rit.instrid[0]
		for row := 0; row < rit.rows; row++ {
			off := rit.rowOffsets(row)
			v := src[base+off[0]:]
			switch op {
			case plan.RSum:
				if sx == 1 {
					var t T
					for _, e := range v[:rit.inner] {
						t += e
					}
					s += t
				} else {
					for j := 0; j < rit.inner; j++ {
						s += v[j*sx]
					}
				}
			case plan.RMax:
				for j := 0; j < rit.inner; j++ {
					if e := v[j*sx]; e > s {
						s = e
					}
				}
			case plan.RSumSquares:
				for j := 0; j < rit.inner; j++ {
					e := float64(v[j*sx])
					s64 += e * e
				}
			}
		}
		if op == plan.RSumSquares {
			s = T(s64)
		}
		if acc {
			dst[i] += scale * s
		} else {
			dst[i] = scale * s
		}
	}
}

// kSoftmax: softmax(rows, cols, log, x, y) along the last axis.
func kSoftmax[T float](x *launch[T], p, parts int) {
	cols, lg := x.int(1), x.int(2) != 0
	src, dst := x.ptrs[0], x.ptrs[1]
	lo, hi := span(x.int(0), p, parts)
	for r := lo; r < hi; r++ {
		xr, yr := src[r*cols:(r+1)*cols], dst[r*cols:(r+1)*cols]
		m := xr[0]
		for _, v := range xr[1:] {
			if v > m {
				m = v
			}
		}
		var s T
		for _, v := range xr {
			s += T(math.Exp(float64(v - m)))
		}
		if lg {
			ls := T(math.Log(float64(s)))
			for j, v := range xr {
				yr[j] = v - m - ls
			}
		} else {
			for j, v := range xr {
				yr[j] = T(math.Exp(float64(v-m))) / s
			}
		}
	}
}

// kSoftmaxGrad: softmax_grad(rows, cols, log, acc, y, dy, dx).
func kSoftmaxGrad[T float](x *launch[T], p, parts int) {
	cols, lg, acc := x.int(1), x.int(2) != 0, x.int(3) != 0
	y, dy, dx := x.ptrs[0], x.ptrs[1], x.ptrs[2]
	lo, hi := span(x.int(0), p, parts)
	for r := lo; r < hi; r++ {
		o := r * cols
		yr, dyr, dxr := y[o:o+cols], dy[o:o+cols], dx[o:o+cols]
		var s T
		for j := range dyr {
			if lg {
				s += dyr[j]
			} else {
				s += dyr[j] * yr[j]
			}
		}
		for j := range dxr {
			var v T
			if lg {
				v = dyr[j] - T(math.Exp(float64(yr[j])))*s
			} else {
				v = yr[j] * (dyr[j] - s)
			}
			if acc {
				dxr[j] += v
			} else {
				dxr[j] = v
			}
		}
	}
}

// convDims are the dims of im2col and col2im.
type convDims struct{ c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw int }

func (x *launch[T]) conv(i int) convDims {
	return convDims{x.int(i), x.int(i + 1), x.int(i + 2), x.int(i + 3), x.int(i + 4), x.int(i + 5), x.int(i + 6),
		x.int(i + 7), x.int(i + 8), x.int(i + 9), x.int(i + 10), x.int(i + 11), x.int(i + 12)}
}

// kIm2Col: im2col(n, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, x, col):
// col is (b, oh, ow, c, kh, kw). Split by output rows (b, oy).
func kIm2Col[T float](x *launch[T], p, parts int) {
	d := x.conv(1)
	src, col := x.ptrs[0], x.ptrs[1]
	patch := d.c * d.kh * d.kw
	rows := x.int(0) / max(d.ow*patch, 1) // b·oh
	lo, hi := span(rows, p, parts)
	for row := lo; row < hi; row++ {
		b, oy := row/d.oh, row%d.oh
		out := col[row*d.ow*patch:]
		k := 0
		for ox := 0; ox < d.ow; ox++ {
			for ch := 0; ch < d.c; ch++ {
				plane := src[(b*d.c+ch)*d.h*d.w:]
				for ki := 0; ki < d.kh; ki++ {
					iy := oy*d.sh - d.ph + ki*d.dh
					if iy < 0 || iy >= d.h {
						clear(out[k : k+d.kw])
						k += d.kw
						continue
					}
					line := plane[iy*d.w:]
					ix := ox*d.sw - d.pw
					if d.dw == 1 && ix >= 0 && ix+d.kw <= d.w {
						// A loop: copy would call memmove for a few elements.
						o, l := out[k:k+d.kw], line[ix:ix+d.kw]
						for j := range o {
							o[j] = l[j]
						}
						k += d.kw
						continue
					}
					for kj := 0; kj < d.kw; kj++ {
						if jx := ix + kj*d.dw; jx >= 0 && jx < d.w {
							out[k] = line[jx]
						} else {
							out[k] = 0
						}
						k++
					}
				}
			}
		}
	}
}

// kCol2Im: col2im(n, acc, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, col, dx):
// dx (b, c, h, w) (+)= the sum of the columns that read each pixel. Split
// by planes (b, c); each part adds into its own planes.
func kCol2Im[T float](x *launch[T], p, parts int) {
	acc := x.int(1) != 0
	d := x.conv(2)
	col, dx := x.ptrs[0], x.ptrs[1]
	plane := d.h * d.w
	patch := d.c * d.kh * d.kw
	lo, hi := span(x.int(0)/max(plane, 1), p, parts)
	for bc := lo; bc < hi; bc++ {
		b, ch := bc/d.c, bc%d.c
		out := dx[bc*plane : (bc+1)*plane]
		if !acc {
			clear(out)
		}
		for oy := 0; oy < d.oh; oy++ {
			for ox := 0; ox < d.ow; ox++ {
				src := col[((b*d.oh+oy)*d.ow+ox)*patch+ch*d.kh*d.kw:]
				for ki := 0; ki < d.kh; ki++ {
					iy := oy*d.sh - d.ph + ki*d.dh
					if iy < 0 || iy >= d.h {
						continue
					}
					line := out[iy*d.w : (iy+1)*d.w]
					s := src[ki*d.kw : (ki+1)*d.kw]
					ix := ox*d.sw - d.pw
					if d.dw == 1 && ix >= 0 && ix+d.kw <= d.w {
						l := line[ix : ix+d.kw]
						for kj, v := range s {
							l[kj] += v
						}
						continue
					}
					for kj, v := range s {
						if jx := ix + kj*d.dw; jx >= 0 && jx < d.w {
							line[jx] += v
						}
					}
				}
			}
		}
	}
}

// kBiasReLU: bias_relu(n, b, cout, hw, y, bias, mask, out): with a =
// y[co, bi, r] + bias[co], mask = a >= 0 and out = a·mask, both (b,
// cout, hw). Split by (bi, co) rows.
func kBiasReLU[T float](x *launch[T], p, parts int) {
	b, cout, hw := x.int(1), x.int(2), x.int(3)
	y, bias, mask, out := x.ptrs[0], x.ptrs[1], x.ptrs[2], x.ptrs[3]
	lo, hi := span(b*cout, p, parts)
	for row := lo; row < hi; row++ {
		bi, co := row/cout, row%cout
		src := y[(co*b+bi)*hw : (co*b+bi+1)*hw]
		m, o := mask[row*hw:(row+1)*hw], out[row*hw:(row+1)*hw]
		bv := bias[co]
		m, o = m[:len(src)], o[:len(src)]
		for j, v := range src {
			a := v + bv
			k := T(bit32(a >= 0))
			m[j], o[j] = k, a*k
		}
	}
}

// kBiasReLURows: bias_relu_rows(n, cols, x, bias, mask, out): a = x +
// bias along the cols of rows × cols, mask = a >= 0, out = a·mask. Split
// by rows.
func kBiasReLURows[T float](x *launch[T], p, parts int) {
	cols := x.int(1)
	src, bias, mask, out := x.ptrs[0], x.ptrs[1][:cols], x.ptrs[2], x.ptrs[3]
	lo, hi := span(x.int(0)/max(cols, 1), p, parts)
	for r := lo; r < hi; r++ {
		xs, m, o := src[r*cols:(r+1)*cols], mask[r*cols:(r+1)*cols], out[r*cols:(r+1)*cols]
		for j, v := range xs {
			a := v + bias[j]
			k := T(bit32(a >= 0))
			m[j], o[j] = k, a*k
		}
	}
}

// kBiasReLURowsGrad: bias_relu_rows_grad(n, cols, hasBias, accBias, hasX,
// accX, dy, mask, dbias, dx): g = dy·mask; dx (+)= g where hasX; dbias
// (+)= the sum of g over the rows where hasBias. Split by columns, each
// part summing its columns over every row.
func kBiasReLURowsGrad[T float](x *launch[T], p, parts int) {
	n, cols := x.int(0), x.int(1)
	hasBias, accB, hasX, accX := x.int(2) != 0, x.int(3) != 0, x.int(4) != 0, x.int(5) != 0
	dy, mask, dbias, dx := x.ptrs[0], x.ptrs[1], x.ptrs[2], x.ptrs[3]
	rows := n / max(cols, 1)
	c0, c1 := span(cols, p, parts)
	// Columns in blocks whose sums stay on the stack: each column's sum
	// runs over the rows in order from 0 and is then added to dbias, as
	// the reduce it replaces adds them, so that the two agree to the bit.
	const block = 64
	var sums [block]T
	for b0 := c0; b0 < c1; b0 += block {
		b1 := min(b0+block, c1)
		clear(sums[:])
		for r := 0; r < rows; r++ {
			g, m := dy[r*cols+b0:r*cols+b1], mask[r*cols+b0:r*cols+b1]
			var d []T
			if hasX {
				d = dx[r*cols+b0 : r*cols+b1]
			}
			for j := range g {
				v := g[j] * m[j]
				if hasX {
					if accX {
						d[j] += v
					} else {
						d[j] = v
					}
				}
				sums[j] += v
			}
		}
		if hasBias {
			for j := b0; j < b1; j++ {
				if accB {
					dbias[j] += sums[j-b0]
				} else {
					dbias[j] = sums[j-b0]
				}
			}
		}
	}
}

// kBiasReLUGrad: bias_relu_grad(n, b, cout, hw, hasBias, accBias, dy,
// mask, dbias, dyc): g = dy·mask; dyc[co, bi, r] = g; dbias[co] (+)= Σ g
// when hasBias. Split by filters.
func kBiasReLUGrad[T float](x *launch[T], p, parts int) {
	b, cout, hw := x.int(1), x.int(2), x.int(3)
	hasBias, acc := x.int(4) != 0, x.int(5) != 0
	dy, mask, dbias, dyc := x.ptrs[0], x.ptrs[1], x.ptrs[2], x.ptrs[3]
	lo, hi := span(cout, p, parts)
	for co := lo; co < hi; co++ {
		var s T
		for bi := 0; bi < b; bi++ {
			row := (bi*cout + co) * hw
			g, m := dy[row:row+hw], mask[row:row+hw]
			d := dyc[(co*b+bi)*hw : (co*b+bi+1)*hw]
			var rs T
			for j := range d {
				v := g[j] * m[j]
				d[j] = v
				rs += v
			}
			s += rs
		}
		if hasBias {
			if acc {
				dbias[co] += s
			} else {
				dbias[co] = s
			}
		}
	}
}

// poolPlanes is the bias, ReLU and 2×2 max pool of conv_bias_relu_pool
// on planes of y: for each filter co and image bi of the chunk b0..b1, a
// = y[co, bi-b0] + bias[co] (y holds (cout, (b1-b0)·oh·ow)), r = a·(a >=
// 0), out = the 2×2 max of r, route = which of the window's four pixels
// maxpool sends the gradient to (its first maximum), or -1 where the ReLU
// stops it there; out and route are (b, cout, oh/2, ow/2). Infinite or
// NaN inputs aside, this is what the three ops compute, but for the sign
// of a zero output.
func poolPlanes[T float](y, bias, route, out []T, cout, oh, ow, b0, b1 int) {
	if y32, ok := any(y).([]float32); ok {
		poolPlanes32(y32, any(bias).([]float32), any(route).([]float32), any(out).([]float32), cout, oh, ow, b0, b1)
		return
	}
	ph, pw := oh/2, ow/2
	m := (b1 - b0) * oh * ow
	for bi := b0; bi < b1; bi++ {
		for co := 0; co < cout; co++ {
			src := y[co*m+(bi-b0)*oh*ow : co*m+(bi-b0+1)*oh*ow]
			bv := bias[co]
			row := bi*cout + co
			rt, o := route[row*ph*pw:(row+1)*ph*pw], out[row*ph*pw:(row+1)*ph*pw]
			for py := 0; py < ph; py++ {
				r0, r1 := src[2*py*ow:(2*py+1)*ow], src[(2*py+1)*ow:(2*py+2)*ow]
				r0, r1 = r0[:2*pw], r1[:2*pw]
				for px := 0; px < pw; px++ {
					a0, a1, a2, a3 := r0[2*px]+bv, r0[2*px+1]+bv, r1[2*px]+bv, r1[2*px+1]+bv
					// The ReLU is monotone: the window's largest output is
					// relu of its largest input. Where that is above 0 the
					// gradient goes to the first input that equals it; else
					// every output is ±0, maxpool picks the first pixel and
					// the ReLU passes its gradient only where its input is 0.
					mx := max(max(a0, a1), max(a2, a3))
					f1 := bit32(a1 == mx) &^ bit32(a0 == mx)
					f2 := bit32(a2 == mx) &^ bit32(a0 == mx || a1 == mx)
					f3 := bit32(a3 == mx) &^ bit32(a0 == mx || a1 == mx || a2 == mx)
					pos := bit32(mx > 0)
					rt[py*pw+px] = T(pos*(f1+2*f2+3*f3) + (1-pos)*(bit32(a0 >= 0)-1))
					o[py*pw+px] = max(mx, 0)
				}
			}
		}
	}
}

// poolPlanes32 is poolPlanes for float32, comparing the floats as
// ordered ints (a positive float's bits, a negative one's with all but
// the sign flipped), which compile to conditional moves rather than
// float compares and jumps.
func poolPlanes32(y, bias, route, out []float32, cout, oh, ow, b0, b1 int) {
	ph, pw := oh/2, ow/2
	m := (b1 - b0) * oh * ow
	key := func(v float32) int32 {
		k := int32(math.Float32bits(v))
		return k ^ (k >> 31 & 0x7fffffff)
	}
	for bi := b0; bi < b1; bi++ {
		for co := 0; co < cout; co++ {
			src := y[co*m+(bi-b0)*oh*ow : co*m+(bi-b0+1)*oh*ow]
			bv := bias[co]
			row := bi*cout + co
			rt, o := route[row*ph*pw:(row+1)*ph*pw], out[row*ph*pw:(row+1)*ph*pw]
			for py := 0; py < ph; py++ {
				r0, r1 := src[2*py*ow:(2*py+1)*ow], src[(2*py+1)*ow:(2*py+2)*ow]
				r0, r1 = r0[:2*pw], r1[:2*pw]
				rr, oo := rt[py*pw:(py+1)*pw], o[py*pw:(py+1)*pw]
				for px := range rr {
					a0 := r0[2*px] + bv
					k0, k1, k2, k3 := key(a0), key(r0[2*px+1]+bv), key(r1[2*px]+bv), key(r1[2*px+1]+bv)
					mk := max(max(k0, k1), max(k2, k3))
					e0, e1, e2 := bit32(k0 == mk), bit32(k1 == mk), bit32(k2 == mk)
					f1 := e1 &^ e0
					f2 := e2 &^ (e0 | e1)
					f3 := bit32(k3 == mk) &^ (e0 | e1 | e2)
					pos := bit32(mk > 0)
					rr[px] = float32(pos*(f1+2*f2+3*f3) + (1-pos)*(bit32(a0 >= 0)-1))
					oo[px] = math.Float32frombits(uint32(max(mk, 0)))
				}
			}
		}
	}
}

// kBiasReLUPoolGrad: bias_relu_pool_grad(n, b, cout, oh, ow, hasBias,
// accBias, dy, route, dbias, dyc): each window's gradient dy goes to its
// routed pixel of dyc (cout, b, oh·ow), 0 to the others; dbias[co] (+)=
// the sum of what was routed. Split by filters.
func kBiasReLUPoolGrad[T float](x *launch[T], p, parts int) {
	b, cout, oh, ow := x.int(1), x.int(2), x.int(3), x.int(4)
	hasBias, acc := x.int(5) != 0, x.int(6) != 0
	dy, route, dbias, dyc := x.ptrs[0], x.ptrs[1], x.ptrs[2], x.ptrs[3]
	ph, pw := oh/2, ow/2
	lo, hi := span(cout, p, parts)
	for co := lo; co < hi; co++ {
		var s T
		for bi := 0; bi < b; bi++ {
			row := bi*cout + co
			g, rt := dy[row*ph*pw:(row+1)*ph*pw], route[row*ph*pw:(row+1)*ph*pw]
			d := dyc[(co*b+bi)*oh*ow : (co*b+bi+1)*oh*ow]
			// This image's sum, added to s. (The convolution before it
			// is not the unfused one to the bit either, so the order of
			// the sum within an image is the windows'.)
			var rs T
			for py := 0; py < ph; py++ {
				d0, d1 := d[2*py*ow:(2*py+1)*ow], d[(2*py+1)*ow:(2*py+2)*ow]
				d0, d1 = d0[:2*pw], d1[:2*pw]
				for px := 0; px < pw; px++ {
					gv, r := g[py*pw+px], int32(rt[py*pw+px])
					d0[2*px], d0[2*px+1], d1[2*px], d1[2*px+1] = 0, 0, 0, 0
					// the routed pixel, or pixel 0 (written 0) for none
					pass := bit32(r >= 0)
					k := r & -pass
					v := gv * T(pass)
					d[(2*py+int(k>>1))*ow+2*px+int(k&1)] = v
					rs += v
				}
			}
			s += rs
		}
		if hasBias {
			if acc {
				dbias[co] += s
			} else {
				dbias[co] = s
			}
		}
	}
}

// poolDims are the dims of maxpool and maxpool_grad.
type poolDims struct{ c, h, w, oh, ow, kh, kw, ph, pw, sh, sw int }

func (x *launch[T]) pool(i int) poolDims {
	return poolDims{x.int(i), x.int(i + 1), x.int(i + 2), x.int(i + 3), x.int(i + 4), x.int(i + 5), x.int(i + 6),
		x.int(i + 7), x.int(i + 8), x.int(i + 9), x.int(i + 10)}
}

// window is the clipped window of output position (oy, ox).
func (d *poolDims) window(oy, ox int) (hs, he, ws, we int) {
	hs, ws = oy*d.sh-d.ph, ox*d.sw-d.pw
	he, we = min(hs+d.kh, d.h), min(ws+d.kw, d.w)
	return max(hs, 0), he, max(ws, 0), we
}

func lowest[T float]() T {
	var z T
	if _, ok := any(z).(float32); ok {
		return T(-math.MaxFloat32)
	}
	m := -math.MaxFloat64
	return T(m)
}

// kMaxPool: maxpool(n, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, x, y), n
// = b·c·oh·ow. Split by planes.
func kMaxPool[T float](x *launch[T], p, parts int) {
	d := x.pool(1)
	src, dst := x.ptrs[0], x.ptrs[1]
	lo, hi := span(x.int(0)/max(d.oh*d.ow, 1), p, parts)
	low := lowest[T]()
	for bc := lo; bc < hi; bc++ {
		in := src[bc*d.h*d.w : (bc+1)*d.h*d.w]
		out := dst[bc*d.oh*d.ow : (bc+1)*d.oh*d.ow]
		if d.kh == 2 && d.kw == 2 && d.sh == 2 && d.sw == 2 && d.ph == 0 && d.pw == 0 && 2*d.oh <= d.h && 2*d.ow <= d.w {
			for oy := 0; oy < d.oh; oy++ {
				r0, r1 := in[2*oy*d.w:], in[(2*oy+1)*d.w:]
				o := out[oy*d.ow : (oy+1)*d.ow]
				r0, r1 = r0[:2*len(o)], r1[:2*len(o)]
				for ox := range o {
					// max, not comparisons and jumps; floored at low as the
					// general path is (a window of -Inf gives low).
					o[ox] = max(max(r0[2*ox], r0[2*ox+1]), max(r1[2*ox], r1[2*ox+1]), low)
				}
			}
			continue
		}
		for oy := 0; oy < d.oh; oy++ {
			for ox := 0; ox < d.ow; ox++ {
				hs, he, ws, we := d.window(oy, ox)
				m := low
				for hi := hs; hi < he; hi++ {
					for _, v := range in[hi*d.w+ws : hi*d.w+we] {
						if v > m {
							m = v
						}
					}
				}
				out[oy*d.ow+ox] = m
			}
		}
	}
}

// kMaxPoolGrad: maxpool_grad(n, acc, c, h, w, oh, ow, kh, kw, ph, pw, sh,
// sw, x, y, dy, dx), n = b·c·h·w: each output's gradient goes to the
// first position of its window that holds the maximum. Split by planes.
func kMaxPoolGrad[T float](x *launch[T], p, parts int) {
	acc := x.int(1) != 0
	d := x.pool(2)
	src, dy, dx := x.ptrs[0], x.ptrs[2], x.ptrs[3]
	plane, oplane := d.h*d.w, d.oh*d.ow
	lo, hi := span(x.int(0)/max(plane, 1), p, parts)
	low := lowest[T]()
	for bc := lo; bc < hi; bc++ {
		in := src[bc*plane : (bc+1)*plane]
		out := dx[bc*plane : (bc+1)*plane]
		g := dy[bc*oplane : (bc+1)*oplane]
		if d.kh == 2 && d.kw == 2 && d.sh == 2 && d.sw == 2 && d.ph == 0 && d.pw == 0 && 2*d.oh == d.h && 2*d.ow == d.w {
			maxPoolGrad2(in, g, out, d.oh, d.ow, acc, low)
			continue
		}
		if !acc {
			clear(out)
		}
		for oy := 0; oy < d.oh; oy++ {
			for ox := 0; ox < d.ow; ox++ {
				hs, he, ws, we := d.window(oy, ox)
				m, arg := low, -1
				for hi := hs; hi < he; hi++ {
					for wi := ws; wi < we; wi++ {
						if v := in[hi*d.w+wi]; v > m {
							m, arg = v, hi*d.w+wi
						}
					}
				}
				if arg >= 0 {
					out[arg] += g[oy*d.ow+ox]
				}
			}
		}
	}
}

// maxPoolGrad2 is maxpool_grad for 2×2 windows that tile a plane
// exactly: each pixel is in one window, so dx is written once, without
// clearing, and each window's gradient goes to the first of its four
// pixels holding the maximum, found without jumps. A window whose
// maximum is not above low (all -Inf) passes no gradient, as in the
// general path.
func maxPoolGrad2[T float](in, g, out []T, oh, ow int, acc bool, low T) {
	w := 2 * ow
	for oy := 0; oy < oh; oy++ {
		r0, r1 := in[2*oy*w:(2*oy+1)*w], in[(2*oy+1)*w:(2*oy+2)*w]
		d0, d1 := out[2*oy*w:(2*oy+1)*w], out[(2*oy+1)*w:(2*oy+2)*w]
		gr := g[oy*ow : (oy+1)*ow]
		for ox, gv := range gr {
			a, b, c, e := r0[2*ox], r0[2*ox+1], r1[2*ox], r1[2*ox+1]
			m := max(max(a, b), max(c, e))
			live := bit32(m > low)
			fa := bit32(a == m) & live
			fb := bit32(b == m) & live &^ fa
			fc := bit32(c == m) & live &^ (fa | fb)
			fe := bit32(e == m) & live &^ (fa | fb | fc)
			va, vb, vc, ve := gv*T(fa), gv*T(fb), gv*T(fc), gv*T(fe)
			if acc {
				d0[2*ox] += va
				d0[2*ox+1] += vb
				d1[2*ox] += vc
				d1[2*ox+1] += ve
			} else {
				d0[2*ox], d0[2*ox+1], d1[2*ox], d1[2*ox+1] = va, vb, vc, ve
			}
		}
	}
}

// kUpdate: update(op, n, lr, scale, wd, decay, mu, b1, b2, c1, c2, eps,
// clip, p, g, s0, s1): one solver step on n elements.
// momentum32 is the momentum update for float32, its velocity set to 0
// under tinyVelocity (see kUpdate), on gemm's vector kernel.
func momentum32(p, g, s0 []float32, lr, mu, scale float32) {
	gemm.Momentum32(p, g, s0, lr, mu, scale, tinyVelocity)
}

// tinyVelocity is the size under which a momentum update sets the
// velocity to 0 (see kUpdate): far above the subnormals of float32
// (below 1.2e-38), far below anything that moves a weight.
const tinyVelocity = 1e-30

func kUpdate[T float](x *launch[T], part, parts int) {
	op := x.int(0)
	lr, scale, wd, decay, mu := x.scalar(2), x.scalar(3), x.scalar(4), x.scalar(5), x.scalar(6)
	b1, b2, c1, c2, eps, clip := x.scalar(7), x.scalar(8), x.scalar(9), x.scalar(10), x.scalar(11), x.scalar(12)
	lo, hi := span(x.int(1), part, parts)
	p, g, s0, s1 := x.ptrs[0][lo:hi], x.ptrs[1][lo:hi], x.ptrs[2][lo:hi], x.ptrs[3][lo:hi]
	if clip <= 0 {
		// The common cases: a tight loop each, float32 on gemm's vector
		// kernels (the same bits as the general loop below).
		p32, is32 := any(p).([]float32)
		var g32, a32, b32 []float32
		if is32 {
			g32, a32, b32 = any(g).([]float32), any(s0).([]float32), any(s1).([]float32)
		}
		switch {
		case op == plan.SSGD && wd == 0 && scale == 1:
			// p − lr·g, as (−lr)·g + 1·p rounds it.
			gemm.AddScaled(p, g, -lr, 1)
			return
		case op == plan.SSGD && wd == 0:
			for i := range p {
				p[i] -= lr * (g[i] * scale)
			}
			return
		case op == plan.SMomentum && wd == 0 && is32:
			momentum32(p32, g32, a32, float32(lr), float32(mu), float32(scale))
			return
		case op == plan.SMomentum && wd == 0:
			for i := range p {
				v := mu*s0[i] + g[i]*scale
				// A weight whose gradient stays 0 (an input that is
				// always 0: MNIST's border pixels) has a velocity that
				// decays by mu a step into subnormal numbers, on which
				// every multiply costs some hundred cycles; that small,
				// it moves the weight by nothing a float holds, so it is
				// set to 0 (without a jump: the test is on the data).
				v *= T(bit32(max(v, -v) > tinyVelocity))
				s0[i] = v
				p[i] -= lr * v
			}
			return
		case op == plan.SMomentum && is32:
			gemm.MomentumWD32(p32, g32, a32, float32(lr), float32(mu), float32(scale), float32(wd))
			return
		case op == plan.SNesterov && wd == 0 && is32:
			gemm.Nesterov32(p32, g32, a32, float32(lr), float32(mu), float32(scale))
			return
		case op == plan.SAdam && wd == 0 && is32:
			gemm.Adam32(p32, g32, a32, b32, gemm.AdamConsts{
				Scale: float32(scale), Decay: float32(decay), B1: float32(b1), B2: float32(b2),
				C1: float32(c1), C2: float32(c2), LR: float32(lr), Eps: float32(eps)})
			return
		}
	}
	for i := range p {
		gi := g[i] * scale
		if clip > 0 {
			gi = max(-clip, min(clip, gi))
		}
		if wd != 0 {
			gi += wd * p[i]
		}
		switch op {
		case plan.SSGD:
			p[i] -= lr * gi
		case plan.SMomentum:
			s0[i] = mu*s0[i] + gi
			p[i] -= lr * s0[i]
		case plan.SNesterov:
			s0[i] = mu*s0[i] + gi
			p[i] -= lr * (gi + mu*s0[i])
		case plan.SAdam:
			p[i] *= decay
			s0[i] = b1*s0[i] + (1-b1)*gi
			s1[i] = b2*s1[i] + (1-b2)*gi*gi
			mh := s0[i] / c1
			vh := s1[i] / c2
			p[i] -= lr * mh / (T(math.Sqrt(float64(vh))) + eps)
		case plan.SRMSProp:
			s0[i] = mu*s0[i] + (1-mu)*gi*gi
			p[i] -= lr * gi / (T(math.Sqrt(float64(s0[i]))) + eps)
		}
	}
}

func unaryF[T float](op int, x T) T {
	f := float64(x)
	switch op {
	case plan.UCopy:
		return x
	case plan.UNeg:
		return -x
	case plan.UAbs:
		return T(math.Abs(f))
	case plan.USign:
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	case plan.UCeil:
		return T(math.Ceil(f))
	case plan.UFloor:
		return T(math.Floor(f))
	case plan.USin:
		return T(math.Sin(f))
	case plan.UCos:
		return T(math.Cos(f))
	case plan.UExp:
		return T(math.Exp(f))
	case plan.ULog:
		return T(math.Log(f))
	case plan.ULog2:
		return T(math.Log2(f))
	case plan.USquare:
		return x * x
	case plan.USqrt:
		return T(math.Sqrt(f))
	case plan.UInverse:
		return 1 / x
	case plan.UInverseSqrt:
		return 1 / T(math.Sqrt(f))
	case plan.UCube:
		return x * x * x
	case plan.UTanh:
		return T(math.Tanh(f))
	case plan.USigmoid:
		return 1 / (1 + T(math.Exp(-f)))
	case plan.ULog1p:
		return T(math.Log1p(f))
	case plan.UExpm1:
		return T(math.Expm1(f))
	case plan.USoftplus:
		if f > 20 {
			return x
		}
		return T(math.Log1p(math.Exp(f)))
	}
	return T(math.NaN())
}

func unaryGradF[T float](op int, x, y, dy T) T {
	f := float64(x)
	switch op {
	case plan.UCopy:
		return dy
	case plan.UNeg:
		return -dy
	case plan.UAbs:
		return dy * unaryF(plan.USign, x)
	case plan.USin:
		return dy * T(math.Cos(f))
	case plan.UCos:
		return -dy * T(math.Sin(f))
	case plan.UExp:
		return dy * y
	case plan.ULog:
		return dy / x
	case plan.ULog2:
		return dy / (x * T(math.Ln2))
	case plan.USquare:
		return dy * 2 * x
	case plan.USqrt:
		return dy / (2 * y)
	case plan.UInverse:
		return -dy * y * y
	case plan.UInverseSqrt:
		return -dy * y * y * y / 2
	case plan.UCube:
		return dy * 3 * x * x
	case plan.UTanh:
		return dy * (1 - y*y)
	case plan.USigmoid:
		return dy * y * (1 - y)
	case plan.ULog1p:
		return dy / (1 + x)
	case plan.UExpm1:
		return dy * (y + 1)
	case plan.USoftplus:
		return dy / (1 + T(math.Exp(-f)))
	}
	return 0 // sign, ceil, floor
}

func binaryF[T float](op int, a, b T) T {
	switch op {
	case plan.BAdd:
		return a + b
	case plan.BSub:
		return a - b
	case plan.BMul:
		return a * b
	case plan.BDiv:
		return a / b
	case plan.BPow:
		return T(math.Pow(float64(a), float64(b)))
	case plan.BLt:
		return bit[T](a < b)
	case plan.BGt:
		return bit[T](a > b)
	case plan.BLte:
		return bit[T](a <= b)
	case plan.BGte:
		return bit[T](a >= b)
	case plan.BEq:
		return bit[T](a == b)
	case plan.BNe:
		return bit[T](a != b)
	case plan.BPowGradA:
		return b * T(math.Pow(float64(a), float64(b-1)))
	case plan.BPowGradB:
		return T(math.Pow(float64(a), float64(b))) * T(math.Log(float64(a)))
	}
	return T(math.NaN())
}

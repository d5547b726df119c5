package native

import (
	"gonum.org/v1/gonum/blas"

	"github.com/rookery-ml/rookery/internal/gemm"
)

// The convolution kernels (exec/plan's conv, conv_filter_grad and
// conv_input_grad) work through the batch a few images at a time: a
// chunk's patches are made in a scratch buffer that stays in cache, and
// multiplied there, so no patch matrix for the whole batch is written to
// memory and read back, forward or backward. Chunks are split across
// threads.

// scratchElems bounds a chunk's patch matrix: 256 KiB of float32.
const scratchElems = 1 << 16

// geom is a convolution's dims: batch, the im2col dims, filters.
type geom struct {
	b int
	convDims
	cout int
}

func (x *launch[T]) geom() geom { return geom{b: x.int(0), convDims: x.conv(1), cout: x.int(14)} }

// z is the size of a patch, hw the pixels of an output plane.
func (g *geom) z() int  { return g.c * g.kh * g.kw }
func (g *geom) hw() int { return g.oh * g.ow }

// per is the images in a chunk; chunks the chunks in the batch, as many
// as the scratch bound asks for, rounded up to a multiple of 4 so that
// 2 or 4 threads get equal shares.
func (g *geom) per() int {
	most := max(1, scratchElems/max(g.z()*g.hw(), 1))
	n := (g.b + most - 1) / most
	n = min((n+3)/4*4, g.b)
	return (g.b + n - 1) / n
}
func (g *geom) chunks() int { return (g.b + g.per() - 1) / g.per() }

// rowMajor runs C = alpha·op(A)·op(B) + beta·C on row-major matrices.
func rowMajor[T float](ta, tb bool, m, n, k int, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	tr := func(t bool) blas.Transpose {
		if t {
			return blas.Trans
		}
		return blas.NoTrans
	}
	var impl gemm.Implementation
	switch c := any(c).(type) {
	case []float32:
		impl.Sgemm(tr(ta), tr(tb), m, n, k, 1, any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), c, ldc)
	case []float64:
		impl.Dgemm(tr(ta), tr(tb), m, n, k, 1, any(a).([]float64), lda, any(b).([]float64), ldb, float64(beta), c, ldc)
	}
}

// patchRows writes the patches of images b0..b1 as rows: col is (c·kh·kw,
// (b1-b0)·oh·ow), each row a run of contiguous reads of the image where
// the stride is 1.
func patchRows[T float](src, col []T, d *convDims, b0, b1 int) {
	rows := d.c * d.kh * d.kw
	n := (b1 - b0) * d.oh * d.ow
	if d.sh == 1 && d.sw == 1 && d.dh == 1 && d.dw == 1 && d.ph == 0 && d.pw == 0 {
		// Every run lies inside the image: offsets only.
		c, h, w, oh, ow, kh, kw := d.c, d.h, d.w, d.oh, d.ow, d.kh, d.kw
		for row := 0; row < rows; row++ {
			kj, ki, ch := row%kw, (row/kw)%kh, row/(kw*kh)
			o := row * n
			for bi := b0; bi < b1; bi++ {
				s := ((bi*c+ch)*h+ki)*w + kj
				for range oh {
					copyRun(col[o:], src[s:], ow)
					o += ow
					s += w
				}
			}
		}
		return
	}
	for row := 0; row < rows; row++ {
		kj := row % d.kw
		ki := (row / d.kw) % d.kh
		ch := row / (d.kw * d.kh)
		out := col[row*n : (row+1)*n]
		ix0 := kj*d.dw - d.pw
		for bi := b0; bi < b1; bi++ {
			plane := src[(bi*d.c+ch)*d.h*d.w : (bi*d.c+ch+1)*d.h*d.w]
			for oy := 0; oy < d.oh; oy++ {
				o := out[((bi-b0)*d.oh+oy)*d.ow : ((bi-b0)*d.oh+oy+1)*d.ow]
				iy := oy*d.sh - d.ph + ki*d.dh
				if iy < 0 || iy >= d.h {
					clear(o)
					continue
				}
				line := plane[iy*d.w : (iy+1)*d.w]
				if d.sw == 1 && ix0 >= 0 && ix0+d.ow <= d.w {
					in := line[ix0 : ix0+len(o)]
					if len(o) >= 16 {
						copy(o, in)
						continue
					}
					for j := range o { // copy would call memmove for a few values
						o[j] = in[j]
					}
					continue
				}
				for ox := range o {
					if ix := ox*d.sw + ix0; ix >= 0 && ix < d.w {
						o[ox] = line[ix]
					} else {
						o[ox] = 0
					}
				}
			}
		}
	}
}

// kConv: conv(b, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, cout, x,
// f, y): y (cout, b, oh·ow) = f (cout, c·kh·kw) · the patches of x.
func kConv[T float](x *launch[T], p, parts int) {
	g := x.geom()
	z, hw, per := g.z(), g.hw(), g.per()
	lo, hi := span(g.chunks(), p, parts)
	if lo >= hi {
		return
	}
	src, f, y := x.ptrs[0], x.ptrs[1], x.ptrs[2]
	buf := x.dev.scratch(z * per * hw)
	defer x.dev.release(buf)
	col := scratchOf[T](buf)
	for ch := lo; ch < hi; ch++ {
		b0, b1 := ch*per, min(g.b, (ch+1)*per)
		m := (b1 - b0) * hw
		patchRows(src, col[:z*m], &g.convDims, b0, b1)
		rowMajor(false, false, g.cout, m, z, f, z, col[:z*m], m, 0, y[b0*hw:], g.b*hw)
	}
}

// kConvBiasReLUPool: conv_bias_relu_pool(b, ..., cout, x, f, bias, route,
// out): for each chunk, y = f·patches in scratch, then its bias, ReLU and
// 2×2 max pool (poolPlanes) into out and route while y is in cache.
func kConvBiasReLUPool[T float](x *launch[T], p, parts int) {
	g := x.geom()
	z, hw, per := g.z(), g.hw(), g.per()
	lo, hi := span(g.chunks(), p, parts)
	if lo >= hi {
		return
	}
	src, f, bias, route, out := x.ptrs[0], x.ptrs[1], x.ptrs[2], x.ptrs[3], x.ptrs[4]
	buf := x.dev.scratch((z + g.cout) * per * hw)
	defer x.dev.release(buf)
	s := scratchOf[T](buf)
	col, y := s[:z*per*hw], s[z*per*hw:(z+g.cout)*per*hw]
	for ch := lo; ch < hi; ch++ {
		b0, b1 := ch*per, min(g.b, (ch+1)*per)
		m := (b1 - b0) * hw
		patchRows(src, col[:z*m], &g.convDims, b0, b1)
		rowMajor(false, false, g.cout, m, z, f, z, col[:z*m], m, 0, y[:g.cout*m], m)
		poolPlanes(y[:g.cout*m], bias, route, out, g.cout, g.oh, g.ow, b0, b1)
	}
}

// kConvFilterGrad: conv_filter_grad(b, ..., cout, acc, x, dy, df): df
// (cout, c·kh·kw) (+)= dy (cout, b, oh·ow) · patchesᵀ. Split across
// threads, each part sums its chunks into x.scratch[p], and
// sumFilterGrad adds the parts.
func kConvFilterGrad[T float](x *launch[T], p, parts int) {
	g := x.geom()
	z, hw, per := g.z(), g.hw(), g.per()
	src, dy, df := x.ptrs[0], x.ptrs[1], x.ptrs[2]
	beta := T(bit32(x.int(15) != 0))
	if parts > 1 {
		df, beta = x.scratch[p], 0
		clear(df)
	}
	lo, hi := span(g.chunks(), p, parts)
	if lo >= hi {
		return
	}
	buf := x.dev.scratch(z * per * hw)
	defer x.dev.release(buf)
	col := scratchOf[T](buf)
	for ch := lo; ch < hi; ch++ {
		b0, b1 := ch*per, min(g.b, (ch+1)*per)
		m := (b1 - b0) * hw
		patchRows(src, col[:z*m], &g.convDims, b0, b1)
		productNT(g.cout, z, m, dy[b0*hw:], g.b*hw, col[:z*m], m, beta, df, z)
		beta = 1
	}
}

// sumFilterGrad adds the parts of a split conv_filter_grad into df.
func sumFilterGrad[T float](x *launch[T]) {
	acc := x.int(15) != 0
	df := x.ptrs[2]
	for i := range x.scratch[0] {
		var s T
		for _, part := range x.scratch {
			s += part[i]
		}
		if acc {
			df[i] += s
		} else {
			df[i] = s
		}
	}
}

// kConvInputGrad: conv_input_grad(b, ..., cout, acc, dy, f, dx): for
// each chunk, dpatches (c·kh·kw, (b1-b0)·oh·ow) = fᵀ · dy, then dx (+)=
// their col2im into the chunk's images.
func kConvInputGrad[T float](x *launch[T], p, parts int) {
	g := x.geom()
	z, hw, per := g.z(), g.hw(), g.per()
	acc := x.int(15) != 0
	dy, f, dx := x.ptrs[0], x.ptrs[1], x.ptrs[2]
	lo, hi := span(g.chunks(), p, parts)
	if lo >= hi {
		return
	}
	buf := x.dev.scratch(z * per * hw)
	defer x.dev.release(buf)
	col := scratchOf[T](buf)
	for ch := lo; ch < hi; ch++ {
		b0, b1 := ch*per, min(g.b, (ch+1)*per)
		m := (b1 - b0) * hw
		rowMajor(true, false, z, m, g.cout, f, z, dy[b0*hw:], g.b*hw, 0, col[:z*m], m)
		col2imRows(col[:z*m], dx, &g.convDims, b0, b1, acc)
	}
}

// col2imRows adds patches given as rows ((c, kh, kw) rows of (b1-b0)·oh·ow
// values, as patchRows makes them) into images b0..b1 of dx, which it
// first clears unless acc: each row adds runs of ow values into rows of
// the image where the stride is 1.
func col2imRows[T float](col, dx []T, d *convDims, b0, b1 int, acc bool) {
	plane := d.h * d.w
	n := (b1 - b0) * d.oh * d.ow
	if !acc {
		clear(dx[b0*d.c*plane : b1*d.c*plane])
	}
	if d.sh == 1 && d.sw == 1 && d.dh == 1 && d.dw == 1 && d.ph == 0 && d.pw == 0 {
		// Every run lies inside the image: offsets only.
		c, h, w, oh, ow, kh, kw := d.c, d.h, d.w, d.oh, d.ow, d.kh, d.kw
		for row := 0; row < c*kh*kw; row++ {
			kj, ki, ch := row%kw, (row/kw)%kh, row/(kw*kh)
			o := row * n
			for bi := b0; bi < b1; bi++ {
				t := ((bi*c+ch)*h+ki)*w + kj
				for range oh {
					addRun(dx[t:], col[o:], ow)
					o += ow
					t += w
				}
			}
		}
		return
	}
	for row := 0; row < d.c*d.kh*d.kw; row++ {
		kj := row % d.kw
		ki := (row / d.kw) % d.kh
		ch := row / (d.kw * d.kh)
		src := col[row*n : (row+1)*n]
		ix0 := kj*d.dw - d.pw
		for bi := b0; bi < b1; bi++ {
			out := dx[(bi*d.c+ch)*plane : (bi*d.c+ch+1)*plane]
			for oy := 0; oy < d.oh; oy++ {
				iy := oy*d.sh - d.ph + ki*d.dh
				if iy < 0 || iy >= d.h {
					continue
				}
				s := src[((bi-b0)*d.oh+oy)*d.ow : ((bi-b0)*d.oh+oy+1)*d.ow]
				line := out[iy*d.w : (iy+1)*d.w]
				if d.sw == 1 && ix0 >= 0 && ix0+d.ow <= d.w {
					l := line[ix0 : ix0+len(s)]
					for j, v := range s {
						l[j] += v
					}
					continue
				}
				for ox, v := range s {
					if ix := ox*d.sw + ix0; ix >= 0 && ix < d.w {
						line[ix] += v
					}
				}
			}
		}
	}
}

// productNT runs C = A·Bᵀ + beta·C on row-major matrices, A m×k and B
// n×k: on gemm.SgemmNT's dot products in float32 (a small C and a long k
// is what it is for), on the blocked product in float64.
func productNT[T float](m, n, k int, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if c, ok := any(c).([]float32); ok {
		gemm.SgemmNT(m, n, k, any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), c, ldc)
		return
	}
	rowMajor(false, true, m, n, k, a, lda, b, ldb, beta, c, ldc)
}

// copyRun copies n values from src to dst, as whole arrays where n is a
// usual width (moved in vector registers, where copy would call memmove
// for a few values).
func copyRun[T float](dst, src []T, n int) {
	switch n {
	case 8:
		*(*[8]T)(dst) = *(*[8]T)(src)
	case 12:
		*(*[12]T)(dst) = *(*[12]T)(src)
	case 16:
		*(*[16]T)(dst) = *(*[16]T)(src)
	case 24:
		*(*[24]T)(dst) = *(*[24]T)(src)
	case 32:
		*(*[32]T)(dst) = *(*[32]T)(src)
	default:
		copy(dst[:n], src[:n])
	}
}

// addRun adds n values of src into dst, unrolled where n is 8.
func addRun[T float](dst, src []T, n int) {
	if n == 8 {
		d, s := (*[8]T)(dst), (*[8]T)(src)
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
		d[4] += s[4]
		d[5] += s[5]
		d[6] += s[6]
		d[7] += s[7]
		return
	}
	d := dst[:n]
	for j, v := range src[:n] {
		d[j] += v
	}
}

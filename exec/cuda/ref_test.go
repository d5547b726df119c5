package cuda

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// refDevice is the reference device: memory is Go memory, kernels are
// Go functions that mirror kernels/*.cu index for index, gemms run on
// gonum's BLAS.
type refDevice struct {
	mu   sync.Mutex
	next uint64
	mem  map[uint64][]byte
}

func newRefDevice() *refDevice { return &refDevice{next: 1, mem: map[uint64][]byte{}} }

func (d *refDevice) Alloc(bytes int64) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.next
	d.next++
	d.mem[p] = make([]byte, bytes+8) // room for alignment, never read
	return p, nil
}

func (d *refDevice) get(p uint64) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.mem[p]
	if !ok {
		return nil, fmt.Errorf("reference device: no allocation %d", p)
	}
	return b, nil
}

func (d *refDevice) Free(p uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.mem[p]; !ok {
		return fmt.Errorf("reference device: double free of %d", p)
	}
	delete(d.mem, p)
	return nil
}

func (d *refDevice) Upload(dst uint64, src []byte) error {
	b, err := d.get(dst)
	if err != nil {
		return err
	}
	if len(src) > len(b)-8 {
		return fmt.Errorf("reference device: upload of %d bytes into %d", len(src), len(b)-8)
	}
	copy(b, src)
	return nil
}

func (d *refDevice) Download(dst []byte, src uint64) error {
	b, err := d.get(src)
	if err != nil {
		return err
	}
	if len(dst) > len(b)-8 {
		return fmt.Errorf("reference device: download of %d bytes from %d", len(dst), len(b)-8)
	}
	copy(dst, b)
	return nil
}

func (d *refDevice) Close() error { return nil }

func (d *refDevice) Run(dt graph.DType, ls []Launch, bufs []uint64) error {
	for i := range ls {
		var err error
		if dt == graph.Float64 {
			err = refLaunch[float64](d, &ls[i], bufs)
		} else {
			err = refLaunch[float32](d, &ls[i], bufs)
		}
		if err != nil {
			return fmt.Errorf("launch %d (%s, node %d): %w", i, ls[i].Kernel, ls[i].Node, err)
		}
	}
	return nil
}

type float interface{ float32 | float64 }

// view returns the elements of buffer arg a, from its offset on.
func view[T float](d *refDevice, a Arg, bufs []uint64) ([]T, error) {
	if a.Type != ArgPtr || a.Buf < 0 || a.Buf >= len(bufs) {
		return nil, fmt.Errorf("argument %v is not a buffer of the plan", a)
	}
	b, err := d.get(bufs[a.Buf])
	if err != nil {
		return nil, err
	}
	var z T
	n := (len(b) - 8) / int(unsafe.Sizeof(z))
	if a.Off > n {
		return nil, fmt.Errorf("offset %d past %d elements", a.Off, n)
	}
	s := unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
	return s[a.Off:], nil
}

func refLaunch[T float](d *refDevice, l *Launch, bufs []uint64) error {
	if l.Gemm != nil {
		return refGemm[T](d, l.Gemm, bufs)
	}
	sig, ok := plan.KernelSig(base(l.Kernel))
	if !ok {
		return fmt.Errorf("no kernel %q", l.Kernel)
	}
	if len(sig) != len(l.Args) {
		return fmt.Errorf("%d arguments for %d parameters", len(l.Args), len(sig))
	}
	if l.Block.X < 1 || l.Block.X > 1024 || l.Grid.X < 1 || l.Grid.X > plan.MaxGrid || l.Block.Y != 1 || l.Grid.Y != 1 {
		return fmt.Errorf("launch configuration grid %v block %v", l.Grid, l.Block)
	}
	in := make([]int, len(l.Args))
	sc := make([]T, len(l.Args))
	ps := make([][]T, len(l.Args))
	for i, t := range sig {
		a := l.Args[i]
		if a.Type != t {
			return fmt.Errorf("argument %d is %v, want %v", i, a.Type, t)
		}
		switch t {
		case ArgInt:
			in[i] = a.Int
		case ArgScalar:
			sc[i] = T(a.Scalar)
		case ArgPtr:
			v, err := view[T](d, a, bufs)
			if err != nil {
				return err
			}
			ps[i] = v
		}
	}
	switch base(l.Kernel) {
	case "unary":
		kUnary(in, ps)
	case "unary_grad":
		kUnaryGrad(in, ps)
	case "scatter":
		kScatter(in, ps)
	case "binary":
		kBinary(in, ps)
	case "reduce":
		kReduce(in, sc, ps)
	case "fill":
		for i := 0; i < in[0]; i++ {
			ps[2][i] = sc[1]
		}
	case "softmax":
		kSoftmax(in, ps)
	case "softmax_grad":
		kSoftmaxGrad(in, ps)
	case "im2col":
		kIm2Col(in, ps)
	case "col2im":
		kCol2Im(in, ps)
	case "maxpool":
		kMaxPool(in, ps)
	case "maxpool_grad":
		kMaxPoolGrad(in, ps)
	case "update":
		kUpdate(in, sc, ps)
	default:
		return fmt.Errorf("no reference for kernel %q", l.Kernel)
	}
	return nil
}

// refGemm runs a column-major cuBLAS gemm on gonum's row-major BLAS: the
// row-major view of a column-major matrix is its transpose, so
// C = op(A)·op(B) is the row-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
func refGemm[T float](d *refDevice, g *Gemm, bufs []uint64) error {
	a, err := view[T](d, Arg{Type: ArgPtr, Buf: g.A}, bufs)
	if err != nil {
		return err
	}
	b, err := view[T](d, Arg{Type: ArgPtr, Buf: g.B}, bufs)
	if err != nil {
		return err
	}
	c, err := view[T](d, Arg{Type: ArgPtr, Buf: g.C}, bufs)
	if err != nil {
		return err
	}
	tr := func(t bool) blas.Transpose {
		if t {
			return blas.Trans
		}
		return blas.NoTrans
	}
	// Bound the slices to what a column-major matrix with its leading
	// dimension spans, so that a wrong ld fails instead of reading on.
	span := func(rows, cols, ld int, t bool) int {
		if t {
			rows, cols = cols, rows
		}
		if rows > ld {
			return -1
		}
		return ld*(cols-1) + rows
	}
	na, nb, nc := span(g.M, g.K, g.Lda, g.TransA), span(g.K, g.N, g.Ldb, g.TransB), span(g.M, g.N, g.Ldc, false)
	if na < 0 || nb < 0 || nc < 0 || na > len(a) || nb > len(b) || nc > len(c) {
		return fmt.Errorf("gemm %+v does not fit its buffers (%d, %d, %d elements)", *g, len(a), len(b), len(c))
	}
	var impl gonum.Implementation
	switch a := any(a).(type) {
	case []float32:
		impl.Sgemm(tr(g.TransB), tr(g.TransA), g.N, g.M, g.K, float32(g.Alpha), any(b).([]float32), g.Ldb, a, g.Lda, float32(g.Beta), any(c).([]float32), g.Ldc)
	case []float64:
		impl.Dgemm(tr(g.TransB), tr(g.TransA), g.N, g.M, g.K, g.Alpha, any(b).([]float64), g.Ldb, a, g.Lda, g.Beta, any(c).([]float64), g.Ldc)
	}
	return nil
}

func put[T float](y []T, i int, acc int, v T) {
	if acc != 0 {
		y[i] += v
	} else {
		y[i] = v
	}
}

// index4 splits a flat index over dims (·, d1, d2, d3).
func index4(i, d1, d2, d3 int) (int, int, int, int) {
	i3 := i % d3
	t := i / d3
	i2 := t % d2
	t /= d2
	return t / d1, t % d1, i2, i3
}

func unaryF[T float](op int, x T) T {
	f := float64(x)
	switch op {
	case uCopy:
		return x
	case uNeg:
		return -x
	case uAbs:
		return T(math.Abs(f))
	case uSign:
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	case uCeil:
		return T(math.Ceil(f))
	case uFloor:
		return T(math.Floor(f))
	case uSin:
		return T(math.Sin(f))
	case uCos:
		return T(math.Cos(f))
	case uExp:
		return T(math.Exp(f))
	case uLog:
		return T(math.Log(f))
	case uLog2:
		return T(math.Log2(f))
	case uSquare:
		return x * x
	case uSqrt:
		return T(math.Sqrt(f))
	case uInverse:
		return 1 / x
	case uInverseSqrt:
		return 1 / T(math.Sqrt(f))
	case uCube:
		return x * x * x
	case uTanh:
		return T(math.Tanh(f))
	case uSigmoid:
		return 1 / (1 + T(math.Exp(-f)))
	case uLog1p:
		return T(math.Log1p(f))
	case uExpm1:
		return T(math.Expm1(f))
	case uSoftplus:
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
	case uCopy:
		return dy
	case uNeg:
		return -dy
	case uAbs:
		return dy * unaryF(uSign, x)
	case uSin:
		return dy * T(math.Cos(f))
	case uCos:
		return -dy * T(math.Sin(f))
	case uExp:
		return dy * y
	case uLog:
		return dy / x
	case uLog2:
		return dy / (x * T(math.Ln2))
	case uSquare:
		return dy * 2 * x
	case uSqrt:
		return dy / (2 * y)
	case uInverse:
		return -dy * y * y
	case uInverseSqrt:
		return -dy * y * y * y / 2
	case uCube:
		return dy * 3 * x * x
	case uTanh:
		return dy * (1 - y*y)
	case uSigmoid:
		return dy * y * (1 - y)
	case uLog1p:
		return dy / (1 + x)
	case uExpm1:
		return dy * (y + 1)
	case uSoftplus:
		return dy / (1 + T(math.Exp(-f)))
	}
	return 0 // sign, ceil, floor
}

func binaryF[T float](op int, a, b T) T {
	bit := func(c bool) T {
		if c {
			return 1
		}
		return 0
	}
	switch op {
	case bAdd:
		return a + b
	case bSub:
		return a - b
	case bMul:
		return a * b
	case bDiv:
		return a / b
	case bPow:
		return T(math.Pow(float64(a), float64(b)))
	case bLt:
		return bit(a < b)
	case bGt:
		return bit(a > b)
	case bLte:
		return bit(a <= b)
	case bGte:
		return bit(a >= b)
	case bEq:
		return bit(a == b)
	case bNe:
		return bit(a != b)
	case bPowGradA:
		return b * T(math.Pow(float64(a), float64(b-1)))
	case bPowGradB:
		return T(math.Pow(float64(a), float64(b))) * T(math.Log(float64(a)))
	}
	return T(math.NaN())
}

// kUnary mirrors kernels/elementwise.cu unary.
func kUnary[T float](in []int, ps [][]T) {
	op, n, acc, d1, d2, d3 := in[0], in[1], in[2], in[3], in[4], in[5]
	xs := in[6:10]
	x, y := ps[10], ps[11]
	for i := 0; i < n; i++ {
		i0, i1, i2, i3 := index4(i, d1, d2, d3)
		put(y, i, acc, unaryF(op, x[i0*xs[0]+i1*xs[1]+i2*xs[2]+i3*xs[3]]))
	}
}

func kScatter[T float](in []int, ps [][]T) {
	n, acc, d1, d2, d3 := in[0], in[1], in[2], in[3], in[4]
	xs, ys := in[5:9], in[9:13]
	x, y := ps[13], ps[14]
	for i := 0; i < n; i++ {
		i0, i1, i2, i3 := index4(i, d1, d2, d3)
		xi := i0*xs[0] + i1*xs[1] + i2*xs[2] + i3*xs[3]
		yi := i0*ys[0] + i1*ys[1] + i2*ys[2] + i3*ys[3]
		put(y, yi, acc, x[xi])
	}
}

func kUnaryGrad[T float](in []int, ps [][]T) {
	op, n, acc := in[0], in[1], in[2]
	x, y, dy, dx := ps[3], ps[4], ps[5], ps[6]
	for i := 0; i < n; i++ {
		put(dx, i, acc, unaryGradF(op, x[i], y[i], dy[i]))
	}
}

func kBinary[T float](in []int, ps [][]T) {
	op, n, acc, d1, d2, d3 := in[0], in[1], in[2], in[3], in[4], in[5]
	as, bs := in[6:10], in[10:14]
	a, b, z := ps[14], ps[15], ps[16]
	for i := 0; i < n; i++ {
		i0, i1, i2, i3 := index4(i, d1, d2, d3)
		ai := i0*as[0] + i1*as[1] + i2*as[2] + i3*as[3]
		bi := i0*bs[0] + i1*bs[1] + i2*bs[2] + i3*bs[3]
		put(z, i, acc, binaryF(op, a[ai], b[bi]))
	}
}

func kReduce[T float](in []int, sc []T, ps [][]T) {
	op, n, acc := in[0], in[1], in[2]
	scale := sc[3]
	o1, o2, o3 := in[4], in[5], in[6]
	r := in[7:11]
	xs := in[11:15]
	x, y := ps[15], ps[16]
	rn := r[0] * r[1] * r[2] * r[3]
	for i := 0; i < n; i++ {
		i0, i1, i2, i3 := index4(i, o1, o2, o3)
		b := i0*xs[0] + i1*xs[1] + i2*xs[2] + i3*xs[3]
		var s T
		var s64 float64
		if op == rMax {
			s = lowest[T]()
		}
		for j := 0; j < rn; j++ {
			j0, j1, j2, j3 := index4(j, r[1], r[2], r[3])
			v := x[b+j0*xs[0]+j1*xs[1]+j2*xs[2]+j3*xs[3]]
			switch op {
			case rSum:
				s += v
			case rMax:
				if v > s {
					s = v
				}
			case rSumSquares:
				s64 += float64(v) * float64(v)
			}
		}
		if op == rSumSquares {
			s = T(s64)
		}
		put(y, i, acc, scale*s)
	}
}

func kSoftmax[T float](in []int, ps [][]T) {
	rows, cols, lg := in[0], in[1], in[2]
	x, y := ps[3], ps[4]
	for r := 0; r < rows; r++ {
		xr, yr := x[r*cols:(r+1)*cols], y[r*cols:(r+1)*cols]
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
		for j, v := range xr {
			if lg != 0 {
				yr[j] = v - m - T(math.Log(float64(s)))
			} else {
				yr[j] = T(math.Exp(float64(v-m))) / s
			}
		}
	}
}

func kSoftmaxGrad[T float](in []int, ps [][]T) {
	rows, cols, lg, acc := in[0], in[1], in[2], in[3]
	y, dy, dx := ps[4], ps[5], ps[6]
	for r := 0; r < rows; r++ {
		o := r * cols
		var s T
		for j := 0; j < cols; j++ {
			if lg != 0 {
				s += dy[o+j]
			} else {
				s += dy[o+j] * y[o+j]
			}
		}
		for j := 0; j < cols; j++ {
			var v T
			if lg != 0 {
				v = dy[o+j] - T(math.Exp(float64(y[o+j])))*s
			} else {
				v = y[o+j] * (dy[o+j] - s)
			}
			put(dx, o+j, acc, v)
		}
	}
}

func kIm2Col[T float](in []int, ps [][]T) {
	n, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw := in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9], in[10], in[11], in[12], in[13]
	x, col := ps[14], ps[15]
	for i := 0; i < n; i++ {
		kj := i % kw
		t := i / kw
		ki := t % kh
		t /= kh
		ch := t % c
		t /= c
		ox := t % ow
		t /= ow
		oy := t % oh
		b := t / oh
		iy, ix := oy*sh-ph+ki*dh, ox*sw-pw+kj*dw
		var v T
		if iy >= 0 && iy < h && ix >= 0 && ix < w {
			v = x[((b*c+ch)*h+iy)*w+ix]
		}
		col[i] = v
	}
}

func kCol2Im[T float](in []int, ps [][]T) {
	n, acc, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw := in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9], in[10], in[11], in[12], in[13], in[14]
	col, dx := ps[15], ps[16]
	for i := 0; i < n; i++ {
		ix := i % w
		t := i / w
		iy := t % h
		t /= h
		ch := t % c
		b := t / c
		var s T
		for ki := 0; ki < kh; ki++ {
			ty := iy + ph - ki*dh
			if ty < 0 || ty%sh != 0 || ty/sh >= oh {
				continue
			}
			oy := ty / sh
			for kj := 0; kj < kw; kj++ {
				tx := ix + pw - kj*dw
				if tx < 0 || tx%sw != 0 || tx/sw >= ow {
					continue
				}
				ox := tx / sw
				s += col[(((b*oh+oy)*ow+ox)*c+ch)*kh*kw+ki*kw+kj]
			}
		}
		put(dx, i, acc, s)
	}
}

// window is the clipped window of a max-pool output position.
func window(oy, ox, h, w, kh, kw, ph, pw, sh, sw int) (hs, he, ws, we int) {
	hs, ws = oy*sh-ph, ox*sw-pw
	he, we = min(hs+kh, h), min(ws+kw, w)
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

func kMaxPool[T float](in []int, ps [][]T) {
	n, h, w, oh, ow, kh, kw, ph, pw, sh, sw := in[0], in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9], in[10], in[11]
	x, y := ps[12], ps[13]
	for i := 0; i < n; i++ {
		ox := i % ow
		t := i / ow
		oy := t % oh
		bc := t / oh
		hs, he, ws, we := window(oy, ox, h, w, kh, kw, ph, pw, sh, sw)
		m := lowest[T]()
		for hi := hs; hi < he; hi++ {
			for wi := ws; wi < we; wi++ {
				if v := x[bc*h*w+hi*w+wi]; v > m {
					m = v
				}
			}
		}
		y[i] = m
	}
}

func kMaxPoolGrad[T float](in []int, ps [][]T) {
	n, acc, h, w, oh, ow, kh, kw, ph, pw, sh, sw := in[0], in[1], in[3], in[4], in[5], in[6], in[7], in[8], in[9], in[10], in[11], in[12]
	x, dy, dx := ps[13], ps[15], ps[16]
	for i := 0; i < n; i++ {
		ix := i % w
		t := i / w
		iy := t % h
		bc := t / h
		var s T
		oy0 := 0
		if lo := iy + ph - kh + 1; lo > 0 {
			oy0 = (lo + sh - 1) / sh
		}
		ox0 := 0
		if lo := ix + pw - kw + 1; lo > 0 {
			ox0 = (lo + sw - 1) / sw
		}
		for oy := oy0; oy < oh && oy*sh-ph <= iy; oy++ {
			for ox := ox0; ox < ow && ox*sw-pw <= ix; ox++ {
				hs, he, ws, we := window(oy, ox, h, w, kh, kw, ph, pw, sh, sw)
				m, arg := lowest[T](), -1
				for hi := hs; hi < he; hi++ {
					for wi := ws; wi < we; wi++ {
						if v := x[bc*h*w+hi*w+wi]; v > m {
							m, arg = v, hi*w+wi
						}
					}
				}
				if arg == iy*w+ix {
					s += dy[(bc*oh+oy)*ow+ox]
				}
			}
		}
		put(dx, i, acc, s)
	}
}

func kUpdate[T float](in []int, sc []T, ps [][]T) {
	op, n := in[0], in[1]
	lr, scale, wd, decay, mu, b1, b2, c1, c2, eps, clip := sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], sc[8], sc[9], sc[10], sc[11], sc[12]
	p, g, s0, s1 := ps[13], ps[14], ps[15], ps[16]
	for i := 0; i < n; i++ {
		gi := g[i] * scale
		if clip > 0 {
			gi = max(-clip, min(clip, gi))
		}
		if wd != 0 {
			gi += wd * p[i]
		}
		switch op {
		case sSGD:
			p[i] -= lr * gi
		case sMomentum:
			s0[i] = mu*s0[i] + gi
			p[i] -= lr * s0[i]
		case sNesterov:
			s0[i] = mu*s0[i] + gi
			p[i] -= lr * (gi + mu*s0[i])
		case sAdam:
			p[i] *= decay
			s0[i] = b1*s0[i] + (1-b1)*gi
			s1[i] = b2*s1[i] + (1-b2)*gi*gi
			mh := s0[i] / c1
			vh := s1[i] / c2
			p[i] -= lr * mh / (T(math.Sqrt(float64(vh))) + eps)
		case sRMSProp:
			s0[i] = mu*s0[i] + (1-mu)*gi*gi
			p[i] -= lr * gi / (T(math.Sqrt(float64(s0[i]))) + eps)
		}
	}
}

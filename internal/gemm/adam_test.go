package gemm

import (
	"math"
	"testing"
)

// r32 rounds to float32. Every operation of adamRef runs in float64 and
// is rounded at once: for +, −, ×, ÷ and √ of float32 operands that gives
// the float32 operation's own result, so the reference does not share
// Adam32's code.
func r32(x float64) float64 { return float64(float32(x)) }

func adamRef(p, g, m, v []float32, c AdamConsts) {
	f := func(x float32) float64 { return float64(x) }
	om1, om2 := r32(1-f(c.B1)), r32(1-f(c.B2))
	for i := range p {
		gi := r32(f(g[i]) * f(c.Scale))
		pi := r32(f(p[i]) * f(c.Decay))
		mi := r32(r32(f(c.B1)*f(m[i])) + r32(om1*gi))
		vi := r32(r32(f(c.B2)*f(v[i])) + r32(r32(om2*gi)*gi))
		mh := r32(mi / f(c.C1))
		vh := r32(vi / f(c.C2))
		den := r32(r32(math.Sqrt(vh)) + f(c.Eps))
		p[i] = float32(pi - r32(r32(f(c.LR)*mh)/den))
		m[i], v[i] = float32(mi), float32(vi)
	}
}

func TestAdam32(t *testing.T) {
	draw := drawer(5, 8, 0, negZero, 1, -1, inf, -inf, nan, 1e-40, -3e-39, 1e-20, 3e38)
	consts := []AdamConsts{
		{Scale: 1, Decay: 1, B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8},
		{Scale: 0.25, Decay: 0.9999, B1: 0.9, B2: 0.999, C1: 0.6513216, C2: 0.009955, LR: 3e-4, Eps: 1e-7},
		{Scale: 1.0 / 3, Decay: 1, B1: 0.5, B2: 0.75, C1: 1, C2: 1, LR: 0.1, Eps: 0},
		{Scale: inf, Decay: 1, B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8},
		{Scale: 1, Decay: nan, B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8},
	}
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 100, 4099} {
		for _, c := range consts {
			op := filled(draw, n, n+1, n+2, n+3)
			p, g, m, v := op[0], op[1], op[2], op[3]
			for i := range v {
				v[i] = float32(math.Abs(float64(v[i]))) // second moments are not negative
			}
			want := copies(p, m, v)
			adamRef(want[0], g, want[1], want[2], c)
			bothPaths(t, describe(n, c), [][]float32{p, m, v}, want, func(st [][]float32) {
				Adam32(st[0], g, st[1], st[2], c)
			})
		}
	}
}

// BenchmarkAdam32 is one Adam update of the 784-1024-1024-10 MLP.
func BenchmarkAdam32(b *testing.B) {
	p, g, m := mlpUpdate(0)
	v := make([]float32, len(p))
	c := AdamConsts{Scale: 1, Decay: 1, B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8}
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(int64(28 * len(p)))
		for b.Loop() {
			Adam32(p, g, m, v, c)
		}
	})
}

package gemm

import (
	"math"
	"math/rand"
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
	rng := rand.New(rand.NewSource(5))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-40, -3e-39, 1e-20, 3e38}
	draw := func() float32 {
		if rng.Intn(8) == 0 {
			return special[rng.Intn(len(special))]
		}
		return float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(9)-4)))
	}
	drawPos := func() float32 { return float32(math.Abs(float64(draw()))) }
	consts := []AdamConsts{
		{Scale: 1, Decay: 1, B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8},
		{Scale: 0.25, Decay: 0.9999, B1: 0.9, B2: 0.999, C1: 0.6513216, C2: 0.009955, LR: 3e-4, Eps: 1e-7},
		{Scale: 1.0 / 3, Decay: 1, B1: 0.5, B2: 0.75, C1: 1, C2: 1, LR: 0.1, Eps: 0},
		{Scale: float32(math.Inf(1)), Decay: 1, B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8},
		{Scale: 1, Decay: float32(math.NaN()), B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8},
	}
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 100, 4099} {
		for _, c := range consts {
			p, g, m, v := make([]float32, n), make([]float32, n+1), make([]float32, n+2), make([]float32, n+3)
			for i := range p {
				p[i], m[i], v[i] = draw(), draw(), drawPos()
			}
			for i := range g {
				g[i] = draw()
			}
			wp, wm, wv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
			adamRef(wp, g, wm, wv, c)
			for _, vec := range []bool{true, false} {
				if vec && !axpbyOK {
					continue
				}
				saved := axpbyOK
				axpbyOK = vec
				gp, gm, gv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
				Adam32(gp, g, gm, gv, c)
				axpbyOK = saved
				for i := range gp {
					if !sameBits(gp[i], wp[i]) || !sameBits(gm[i], wm[i]) || !sameBits(gv[i], wv[i]) {
						t.Fatalf("n=%d %+v vector=%v: element %d: p, m, v = %v, %v, %v; want %v, %v, %v (g %v; before: %v, %v, %v)",
							n, c, vec, i, gp[i], gm[i], gv[i], wp[i], wm[i], wv[i], g[i], p[i], m[i], v[i])
					}
				}
			}
		}
	}
}

// BenchmarkAdam32 is one Adam update of the 784-1024-1024-10 MLP.
func BenchmarkAdam32(b *testing.B) {
	const n = 1863690
	p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range p {
		p[i], g[i] = float32(i%7)*0.1, float32(i%5)*0.01
	}
	c := AdamConsts{Scale: 1, Decay: 1, B1: 0.9, B2: 0.999, C1: 0.1, C2: 0.001, LR: 1e-3, Eps: 1e-8}
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(28 * n)
		for b.Loop() {
			Adam32(p, g, m, v, c)
		}
	})
}

package gemm

import (
	"math"
	"math/rand"
	"testing"
)

// momentumRef is Momentum32's definition, one element at a time.
func momentumRef(p, g, s []float32, lr, mu, scale, tiny float32) {
	for i := range p {
		// Each product rounded: no fused multiply-add.
		v := float32(mu*s[i]) + float32(g[i]*scale)
		if tiny >= 0 && math.Abs(float64(v)) <= float64(tiny) {
			v = 0
		}
		s[i] = v
		p[i] -= float32(lr * v)
	}
}

func TestMomentum32(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-31, -1e-31, 1e-30, -1e-30, 2e-30, 1e-40, 3e38}
	draw := func() float32 {
		if rng.Intn(8) == 0 {
			return special[rng.Intn(len(special))]
		}
		return float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(9)-4)))
	}
	type cfg struct{ lr, mu, scale, tiny float32 }
	cfgs := []cfg{{0.05, 0.9, 1, 1e-30}, {0.1, 0.99, 0.25, 1e-30}, {1e-3, 0.5, 1.0 / 3, 0}, {0.05, 0.9, 1, 1e-3}, {0.05, 0.9, 1, -1}, {0.1, 0.5, 0.125, -1},
		{0.05, 0.9, 1, float32(math.Copysign(0, -1))}, {0.05, 0.9, 1, 0}, {0.05, 0.9, float32(math.Inf(1)), 1e-30},
		{float32(math.NaN()), 0.9, 1, 1e-30}}
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 100, 4099} {
		for _, c := range cfgs {
			p, g, s := make([]float32, n), make([]float32, n+2), make([]float32, n+1)
			for i := range p {
				p[i], s[i] = draw(), draw()
			}
			for i := range g {
				g[i] = draw()
			}
			wp, ws := append([]float32(nil), p...), append([]float32(nil), s...)
			momentumRef(wp, g, ws, c.lr, c.mu, c.scale, c.tiny)
			for _, vec := range []bool{true, false} {
				if vec && !axpbyOK {
					continue
				}
				saved := axpbyOK
				axpbyOK = vec
				gp, gs := append([]float32(nil), p...), append([]float32(nil), s...)
				Momentum32(gp, g, gs, c.lr, c.mu, c.scale, c.tiny)
				axpbyOK = saved
				for i := range gp {
					if !sameBits(gp[i], wp[i]) || !sameBits(gs[i], ws[i]) {
						t.Fatalf("n=%d %+v vector=%v: element %d: p %v, s %v; want %v, %v (g %v, s0 %v, p0 %v)",
							n, c, vec, i, gp[i], gs[i], wp[i], ws[i], g[i], s[i], p[i])
					}
				}
			}
		}
	}
}

// BenchmarkMomentum32 is one update of the 784-1024-1024-10 MLP.
func BenchmarkMomentum32(b *testing.B) {
	const n = 1863690
	p, g, s := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range p {
		p[i], g[i], s[i] = float32(i%7)*0.1, float32(i%5)*0.01, float32(i%3)*0.001
	}
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(20 * n)
		for b.Loop() {
			Momentum32(p, g, s, 0.05, 0.9, 1, 1e-30)
		}
	})
}

func TestMomentumWD32(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-40, -3e-39, 3e38}
	draw := func() float32 {
		if rng.Intn(8) == 0 {
			return special[rng.Intn(len(special))]
		}
		return float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(9)-4)))
	}
	// Every operation in float64, rounded at once (r32, adam_test.go):
	// the float32 operation's own result, from code Momentum32 does not share.
	ref := func(p, g, s []float32, lr, mu, scale, wd float32) {
		f := func(x float32) float64 { return float64(x) }
		for i := range p {
			gi := r32(r32(f(g[i])*f(scale)) + r32(f(wd)*f(p[i])))
			v := r32(r32(f(mu)*f(s[i])) + gi)
			s[i] = float32(v)
			p[i] = float32(f(p[i]) - r32(f(lr)*v))
		}
	}
	type cfg struct{ lr, mu, scale, wd float32 }
	for _, n := range []int{0, 1, 15, 16, 17, 33, 100, 4099} {
		for _, c := range []cfg{{0.05, 0.9, 1, 5e-4}, {0.1, 0.99, 0.25, 1e-2}, {1e-3, 0.5, 1.0 / 3, 1e-4}, {0.05, 0.9, 1, float32(math.Inf(1))}} {
			p, g, s := make([]float32, n), make([]float32, n+1), make([]float32, n+2)
			for i := range p {
				p[i], s[i] = draw(), draw()
			}
			for i := range g {
				g[i] = draw()
			}
			wp, ws := append([]float32(nil), p...), append([]float32(nil), s...)
			ref(wp, g, ws, c.lr, c.mu, c.scale, c.wd)
			for _, vec := range []bool{true, false} {
				if vec && !axpbyOK {
					continue
				}
				saved := axpbyOK
				axpbyOK = vec
				gp, gs := append([]float32(nil), p...), append([]float32(nil), s...)
				MomentumWD32(gp, g, gs, c.lr, c.mu, c.scale, c.wd)
				axpbyOK = saved
				for i := range gp {
					if !sameBits(gp[i], wp[i]) || !sameBits(gs[i], ws[i]) {
						t.Fatalf("n=%d %+v vector=%v: element %d: p %v, s %v; want %v, %v (g %v, s0 %v, p0 %v)",
							n, c, vec, i, gp[i], gs[i], wp[i], ws[i], g[i], s[i], p[i])
					}
				}
			}
		}
	}
}

// BenchmarkMomentumWD32 is one update with weight decay of the
// 784-1024-1024-10 MLP.
func BenchmarkMomentumWD32(b *testing.B) {
	const n = 1863690
	p, g, s := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range p {
		p[i], g[i], s[i] = float32(i%7)*0.1, float32(i%5)*0.01, float32(i%3)*0.001
	}
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(20 * n)
		for b.Loop() {
			MomentumWD32(p, g, s, 0.05, 0.9, 1, 5e-4)
		}
	})
}

func TestNesterov32(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-40, -3e-39, 3e38}
	draw := func() float32 {
		if rng.Intn(8) == 0 {
			return special[rng.Intn(len(special))]
		}
		return float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(9)-4)))
	}
	// Every operation in float64, rounded at once (r32, adam_test.go).
	ref := func(p, g, s []float32, lr, mu, scale float32) {
		f := func(x float32) float64 { return float64(x) }
		for i := range p {
			gi := r32(f(g[i]) * f(scale))
			v := r32(r32(f(mu)*f(s[i])) + gi)
			s[i] = float32(v)
			p[i] = float32(f(p[i]) - r32(f(lr)*r32(gi+r32(f(mu)*v))))
		}
	}
	type cfg struct{ lr, mu, scale float32 }
	for _, n := range []int{0, 1, 7, 8, 9, 17, 100, 4099} {
		for _, c := range []cfg{{0.05, 0.9, 1}, {0.1, 0.99, 0.25}, {1e-3, 0.5, 1.0 / 3}, {0.05, float32(math.Inf(1)), 1}} {
			p, g, s := make([]float32, n), make([]float32, n+1), make([]float32, n+2)
			for i := range p {
				p[i], s[i] = draw(), draw()
			}
			for i := range g {
				g[i] = draw()
			}
			wp, ws := append([]float32(nil), p...), append([]float32(nil), s...)
			ref(wp, g, ws, c.lr, c.mu, c.scale)
			for _, vec := range []bool{true, false} {
				if vec && !axpbyOK {
					continue
				}
				saved := axpbyOK
				axpbyOK = vec
				gp, gs := append([]float32(nil), p...), append([]float32(nil), s...)
				Nesterov32(gp, g, gs, c.lr, c.mu, c.scale)
				axpbyOK = saved
				for i := range gp {
					if !sameBits(gp[i], wp[i]) || !sameBits(gs[i], ws[i]) {
						t.Fatalf("n=%d %+v vector=%v: element %d: p %v, s %v; want %v, %v (g %v, s0 %v, p0 %v)",
							n, c, vec, i, gp[i], gs[i], wp[i], ws[i], g[i], s[i], p[i])
					}
				}
			}
		}
	}
}

// BenchmarkNesterov32 is one Nesterov update of the 784-1024-1024-10 MLP.
func BenchmarkNesterov32(b *testing.B) {
	const n = 1863690
	p, g, s := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range p {
		// No zero gradient: its velocity would decay into subnormals.
		p[i], g[i], s[i] = float32(i%7)*0.1, float32(i%5+1)*0.01, float32(i%3)*0.001
	}
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(20 * n)
		for b.Loop() {
			Nesterov32(p, g, s, 0.05, 0.9, 1)
		}
	})
}

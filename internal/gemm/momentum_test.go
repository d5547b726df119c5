package gemm

import (
	"math"
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
	draw := drawer(3, 8, 0, negZero, 1, -1, inf, -inf, nan, 1e-31, -1e-31, 1e-30, -1e-30, 2e-30, 1e-40, 3e38)
	type cfg struct{ lr, mu, scale, tiny float32 }
	cfgs := []cfg{{0.05, 0.9, 1, 1e-30}, {0.1, 0.99, 0.25, 1e-30}, {1e-3, 0.5, 1.0 / 3, 0}, {0.05, 0.9, 1, 1e-3}, {0.05, 0.9, 1, -1}, {0.1, 0.5, 0.125, -1},
		{0.05, 0.9, 1, negZero}, {0.05, 0.9, 1, 0}, {0.05, 0.9, inf, 1e-30}, {nan, 0.9, 1, 1e-30}}
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 100, 4099} {
		for _, c := range cfgs {
			op := filled(draw, n, n+2, n+1)
			p, g, s := op[0], op[1], op[2]
			want := copies(p, s)
			momentumRef(want[0], g, want[1], c.lr, c.mu, c.scale, c.tiny)
			bothPaths(t, describe(n, c), [][]float32{p, s}, want, func(st [][]float32) {
				Momentum32(st[0], g, st[1], c.lr, c.mu, c.scale, c.tiny)
			})
		}
	}
}

func TestMomentumWD32(t *testing.T) {
	draw := drawer(9, 8, 0, negZero, 1, -1, inf, -inf, nan, 1e-40, -3e-39, 3e38)
	// Every operation in float64, rounded at once (r32, adam_test.go):
	// the float32 operation's own result, from code MomentumWD32 does not
	// share.
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
		for _, c := range []cfg{{0.05, 0.9, 1, 5e-4}, {0.1, 0.99, 0.25, 1e-2}, {1e-3, 0.5, 1.0 / 3, 1e-4}, {0.05, 0.9, 1, inf}} {
			op := filled(draw, n, n+1, n+2)
			p, g, s := op[0], op[1], op[2]
			want := copies(p, s)
			ref(want[0], g, want[1], c.lr, c.mu, c.scale, c.wd)
			bothPaths(t, describe(n, c), [][]float32{p, s}, want, func(st [][]float32) {
				MomentumWD32(st[0], g, st[1], c.lr, c.mu, c.scale, c.wd)
			})
		}
	}
}

func TestNesterov32(t *testing.T) {
	draw := drawer(13, 8, 0, negZero, 1, -1, inf, -inf, nan, 1e-40, -3e-39, 3e38)
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
		for _, c := range []cfg{{0.05, 0.9, 1}, {0.1, 0.99, 0.25}, {1e-3, 0.5, 1.0 / 3}, {0.05, inf, 1}} {
			op := filled(draw, n, n+1, n+2)
			p, g, s := op[0], op[1], op[2]
			want := copies(p, s)
			ref(want[0], g, want[1], c.lr, c.mu, c.scale)
			bothPaths(t, describe(n, c), [][]float32{p, s}, want, func(st [][]float32) {
				Nesterov32(st[0], g, st[1], c.lr, c.mu, c.scale)
			})
		}
	}
}

// BenchmarkMomentum32 is one update of the 784-1024-1024-10 MLP.
func BenchmarkMomentum32(b *testing.B) {
	p, g, s := mlpUpdate(0)
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(int64(20 * len(p)))
		for b.Loop() {
			Momentum32(p, g, s, 0.05, 0.9, 1, 1e-30)
		}
	})
}

// BenchmarkMomentumWD32 is one update with weight decay of the
// 784-1024-1024-10 MLP.
func BenchmarkMomentumWD32(b *testing.B) {
	p, g, s := mlpUpdate(0)
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(int64(20 * len(p)))
		for b.Loop() {
			MomentumWD32(p, g, s, 0.05, 0.9, 1, 5e-4)
		}
	})
}

// BenchmarkNesterov32 is one Nesterov update of the 784-1024-1024-10 MLP,
// with no zero gradient: its velocity would decay into subnormals.
func BenchmarkNesterov32(b *testing.B) {
	p, g, s := mlpUpdate(1)
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(int64(20 * len(p)))
		for b.Loop() {
			Nesterov32(p, g, s, 0.05, 0.9, 1)
		}
	})
}

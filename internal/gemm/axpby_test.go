package gemm

import (
	"math"
	"testing"
)

// addScaledRef is AddScaled's definition, one element at a time.
func addScaledRef[T float](dst, in []T, a, w T) {
	for j := range dst {
		dst[j] = T(a*in[j]) + T(w*dst[j]) // each product rounded: no fused multiply-add
	}
}

func testAddScaled[T float](t *testing.T, name string) {
	draw := drawer(7, 10, 0, T(math.Copysign(0, -1)), 1, -1, T(math.Inf(1)), T(math.Inf(-1)), T(math.NaN()), 1e-40, -3e-39, 1e30)
	coefs := [][2]T{{1, 1}, {1, 0.25}, {0.5, 1}, {0.3333333, 0.6666667}, {-2, 1e-3}, {1, 0}, {0, 1},
		{T(math.Inf(1)), 1}, {1, T(math.NaN())}, {1e-40, -1}}
	for _, n := range []int{0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000, 4099} {
		for _, c := range coefs {
			op := filled(draw, n, n+3)
			dst, in := op[0], op[1]
			want := copies(dst)
			addScaledRef(want[0], in, c[0], c[1])
			bothPaths(t, name+" "+describe(n, c), [][]T{dst}, want, func(s [][]T) { AddScaled(s[0], in, c[0], c[1]) })
		}
	}
}

func TestAddScaled(t *testing.T) {
	testAddScaled[float32](t, "float32")
	testAddScaled[float64](t, "float64")
}

// TestAddScaledIsSGD checks the identity the SGD updates rely on:
// AddScaled(p, g, −lr, 1) gives p − lr·g to the bit.
func TestAddScaledIsSGD(t *testing.T) {
	draw := drawer(11, 6, 0, negZero, 1, -1, inf, -inf, nan, 1e-40, -3e-39, 3e38)
	for _, lr := range []float32{0.1, 1e-3, 0.0123, 0, 1e-40} {
		op := filled(draw, 4099, 4099)
		p, g := op[0], op[1]
		want := copies(p)
		for i := range p {
			want[0][i] = p[i] - float32(lr*g[i])
		}
		bothPaths(t, describe(len(p), lr), [][]float32{p}, want, func(s [][]float32) { AddScaled(s[0], g, -lr, 1) })
	}
}

// BenchmarkAddScaled sums a ring segment of the 784-1024-1024-10 MLP's
// gradients at r = 4 (three quarters of them) into a member's own.
func BenchmarkAddScaled(b *testing.B) {
	const n = 1863690 * 3 / 4
	dst, in := make([]float32, n), make([]float32, n)
	for i := range in {
		in[i], dst[i] = float32(i%13)*0.1, float32(i%7)*0.2
	}
	vectorAndGo(b, func(b *testing.B) {
		b.SetBytes(12 * n)
		for b.Loop() {
			AddScaled(dst, in, 1, 0.5)
		}
	})
}

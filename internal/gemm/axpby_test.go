package gemm

import (
	"math"
	"math/rand"
	"testing"
)

// addScaledRef is AddScaled's definition, one element at a time.
func addScaledRef[T float](dst, in []T, a, w T) {
	for j := range dst {
		dst[j] = T(a*in[j]) + T(w*dst[j]) // each product rounded: no fused multiply-add
	}
}

func sameBits[T float](x, y T) bool {
	if x != x && y != y {
		return true // NaNs: the payload is not specified
	}
	switch v := any(x).(type) {
	case float32:
		return math.Float32bits(v) == math.Float32bits(any(y).(float32))
	default:
		return math.Float64bits(any(x).(float64)) == math.Float64bits(any(y).(float64))
	}
}

func testAddScaled[T float](t *testing.T, name string) {
	rng := rand.New(rand.NewSource(7))
	special := []T{0, T(math.Copysign(0, -1)), 1, -1, T(math.Inf(1)), T(math.Inf(-1)), T(math.NaN()), 1e-40, -3e-39, 1e30}
	draw := func() T {
		if rng.Intn(10) == 0 {
			return special[rng.Intn(len(special))]
		}
		return T(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(9)-4)))
	}
	coefs := [][2]T{{1, 1}, {1, 0.25}, {0.5, 1}, {0.3333333, 0.6666667}, {-2, 1e-3}, {1, 0}, {0, 1},
		{T(math.Inf(1)), 1}, {1, T(math.NaN())}, {1e-40, -1}}
	for _, n := range []int{0, 1, 3, 4, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000, 4099} {
		for _, c := range coefs {
			in, dst := make([]T, n+3), make([]T, n)
			for i := range in {
				in[i] = draw()
			}
			for i := range dst {
				dst[i] = draw()
			}
			want := append([]T(nil), dst...)
			addScaledRef(want, in, c[0], c[1])
			for _, vec := range []bool{true, false} {
				if vec && !axpbyOK {
					continue
				}
				saved := axpbyOK
				axpbyOK = vec
				got := append([]T(nil), dst...)
				AddScaled(got, in, c[0], c[1])
				axpbyOK = saved
				for j := range got {
					if !sameBits(got[j], want[j]) {
						t.Fatalf("%s n=%d a=%v w=%v vector=%v: element %d is %v, want %v (in %v, dst %v)",
							name, n, c[0], c[1], vec, j, got[j], want[j], in[j], dst[j])
					}
				}
			}
		}
	}
}

func TestAddScaled(t *testing.T) {
	testAddScaled[float32](t, "float32")
	testAddScaled[float64](t, "float64")
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

// vectorAndGo runs bench with the vector kernels (where this CPU has
// them) and with the Go loops.
func vectorAndGo(b *testing.B, bench func(*testing.B)) {
	for _, vec := range []bool{true, false} {
		if vec && !axpbyOK {
			continue
		}
		name := "go"
		if vec {
			name = "vector"
		}
		b.Run(name, func(b *testing.B) {
			saved := axpbyOK
			axpbyOK = vec
			defer func() { axpbyOK = saved }()
			bench(b)
		})
	}
}

// TestAddScaledIsSGD checks the identity the SGD updates rely on:
// AddScaled(p, g, −lr, 1) gives p − lr·g to the bit.
func TestAddScaledIsSGD(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-40, -3e-39, 3e38}
	draw := func() float32 {
		if rng.Intn(6) == 0 {
			return special[rng.Intn(len(special))]
		}
		return float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(9)-4)))
	}
	for _, lr := range []float32{0.1, 1e-3, 0.0123, 0, 1e-40} {
		const n = 4099
		p, g := make([]float32, n), make([]float32, n)
		for i := range p {
			p[i], g[i] = draw(), draw()
		}
		want := make([]float32, n)
		for i := range p {
			want[i] = p[i] - float32(lr*g[i])
		}
		AddScaled(p, g, -lr, 1)
		for i := range p {
			if !sameBits(p[i], want[i]) {
				t.Fatalf("lr %v: element %d is %v, want %v (g %v)", lr, i, p[i], want[i], g[i])
			}
		}
	}
}

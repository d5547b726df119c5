package gemm

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// The vector kernels' tests: each draws operands, works out the expected
// bits with a reference of its own, and runs the kernel on both paths.

// sameBits reports whether x and y are the same value to the bit (any
// two NaNs are: their payload is not specified).
func sameBits[T float](x, y T) bool {
	if x != x && y != y {
		return true
	}
	switch v := any(x).(type) {
	case float32:
		return math.Float32bits(v) == math.Float32bits(any(y).(float32))
	default:
		return math.Float64bits(any(x).(float64)) == math.Float64bits(any(y).(float64))
	}
}

// drawer returns a source of operands: normal values over nine decades,
// and one draw in every from special.
func drawer[T float](seed int64, every int, special ...T) func() T {
	rng := rand.New(rand.NewSource(seed))
	return func() T {
		if rng.Intn(every) == 0 {
			return special[rng.Intn(len(special))]
		}
		return T(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(9)-4)))
	}
}

// filled returns slices of the given lengths filled from draw.
func filled[T float](draw func() T, lens ...int) [][]T {
	out := make([][]T, len(lens))
	for k, n := range lens {
		out[k] = make([]T, n)
		for i := range out[k] {
			out[k][i] = draw()
		}
	}
	return out
}

// copies returns fresh copies of s.
func copies[T float](s ...[]T) [][]T {
	out := make([][]T, len(s))
	for k := range s {
		out[k] = append([]T(nil), s[k]...)
	}
	return out
}

// bothPaths runs update on copies of state with the vector kernels (where
// this CPU has them) and with the Go loops, and fails unless every copy
// ends as want, bit for bit.
func bothPaths[T float](t *testing.T, desc string, state, want [][]T, update func(state [][]T)) {
	t.Helper()
	for _, vec := range []bool{true, false} {
		if vec && !axpbyOK {
			continue
		}
		got := copies(state...)
		saved := axpbyOK
		axpbyOK = vec
		update(got)
		axpbyOK = saved
		for k := range got {
			for i := range got[k] {
				if !sameBits(got[k][i], want[k][i]) {
					t.Fatalf("%s, vector %v: operand %d, element %d: %v, want %v (before: %v)",
						desc, vec, k, i, got[k][i], want[k][i], state[k][i])
				}
			}
		}
	}
}

// describe names a test case.
func describe(n int, c any) string { return fmt.Sprintf("n=%d %+v", n, c) }

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

// mlpUpdate is the parameters, gradients and one state vector of the
// 784-1024-1024-10 MLP for the update benchmarks; the gradients are
// (i%5 + g0)/100, so with g0 = 0 one in five stays 0.
func mlpUpdate(g0 float32) (p, g, s []float32) {
	const n = 1863690
	p, g, s = make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range p {
		p[i], g[i], s[i] = float32(i%7)*0.1, (float32(i%5)+g0)*0.01, float32(i%3)*0.001
	}
	return p, g, s
}

// Operands every kernel test draws besides normal values.
var (
	negZero = float32(math.Copysign(0, -1))
	inf     = float32(math.Inf(1))
	nan     = float32(math.NaN())
)

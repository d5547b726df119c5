//go:build !openblas

package exec

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/mat"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/internal/gemm"
)

func TestBLASName(t *testing.T) {
	if !strings.HasPrefix(BLASName(), "rookery gemm (") {
		t.Fatalf("BLASName = %q, want rookery gemm (kernel)", BLASName())
	}
}

// TestGemmInstalled checks that the default build's init installed
// Rookery's gemm for Gorgonia, gorgonia.org/tensor and gonum's blas32 and
// blas64.
func TestGemmInstalled(t *testing.T) {
	for name, impl := range map[string]any{
		"gorgonia.WhichBLAS": gorgonia.WhichBLAS(),
		"tensor.WhichBLAS":   tensor.WhichBLAS(),
		"blas32":             blas32.Implementation(),
		"blas64":             blas64.Implementation(),
	} {
		if _, ok := impl.(gemm.Implementation); !ok {
			t.Errorf("%s is %T, want gemm.Implementation", name, impl)
		}
	}
}

// TestMatMulMatchesGonum multiplies through Gorgonia's tensor package and
// through gonum/mat, with transposed operands, and compares against gonum's
// pure-Go Dgemm and Sgemm.
func TestMatMulMatchesGonum(t *testing.T) {
	const m, n, k = 37, 53, 71
	rng := rand.New(rand.NewPCG(1, 1))
	a64 := make([]float64, m*k)
	b64 := make([]float64, n*k)
	for i := range a64 {
		a64[i] = rng.NormFloat64()
	}
	for i := range b64 {
		b64[i] = rng.NormFloat64()
	}
	// A·Bᵀ, B stored n×k.
	want64 := make([]float64, m*n)
	gonum.Implementation{}.Dgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a64, k, b64, k, 0, want64, n)

	bt := tensor.New(tensor.WithShape(n, k), tensor.WithBacking(append([]float64(nil), b64...)))
	if err := bt.T(); err != nil {
		t.Fatal(err)
	}
	got, err := tensor.MatMul(tensor.New(tensor.WithShape(m, k), tensor.WithBacking(a64)), bt)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "tensor.MatMul float64", got.Data().([]float64), want64, 1e-12)

	var c mat.Dense
	c.Mul(mat.NewDense(m, k, a64), mat.NewDense(n, k, b64).T())
	near(t, "mat.Dense.Mul", c.RawMatrix().Data, want64, 1e-12)

	a32, b32 := make([]float32, len(a64)), make([]float32, len(b64))
	for i, v := range a64 {
		a32[i] = float32(v)
	}
	for i, v := range b64 {
		b32[i] = float32(v)
	}
	want32 := make([]float32, m*n)
	gonum.Implementation{}.Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a32, k, b32, k, 0, want32, n)
	bt32 := tensor.New(tensor.WithShape(n, k), tensor.WithBacking(b32))
	if err := bt32.T(); err != nil {
		t.Fatal(err)
	}
	got32, err := tensor.MatMul(tensor.New(tensor.WithShape(m, k), tensor.WithBacking(a32)), bt32)
	if err != nil {
		t.Fatal(err)
	}
	g32 := got32.Data().([]float32)
	g := make([]float64, len(g32))
	w := make([]float64, len(want32))
	for i := range g32 {
		g[i], w[i] = float64(g32[i]), float64(want32[i])
	}
	near(t, "tensor.MatMul float32", g, w, 1e-5)
}

func near(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", name, len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(got[i] - want[i]); d > tol*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s: element %d = %v, gonum %v", name, i, got[i], want[i])
		}
	}
}

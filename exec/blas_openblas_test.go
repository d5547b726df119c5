//go:build openblas

package exec

import (
	"math"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/netlib/blas/netlib"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestOpenBLASInUse(t *testing.T) {
	if BLASName() != "OpenBLAS" {
		t.Fatalf("BLASName = %q, want OpenBLAS", BLASName())
	}
	if _, ok := gorgonia.WhichBLAS().(netlib.Implementation); !ok {
		t.Fatalf("gorgonia.WhichBLAS() is %T, want netlib.Implementation", gorgonia.WhichBLAS())
	}
}

// TestOpenBLASGemmMatchesGonum compares OpenBLAS's gemm, as Gorgonia now
// calls it, against gonum's pure-Go gemm on the same operands.
func TestOpenBLASGemmMatchesGonum(t *testing.T) {
	const m, n, k = 37, 53, 71
	rng := rand.New(rand.NewSource(1))
	for _, tr := range []struct{ a, b blas.Transpose }{{blas.NoTrans, blas.NoTrans}, {blas.Trans, blas.NoTrans}, {blas.NoTrans, blas.Trans}} {
		a64 := make([]float64, m*k)
		b64 := make([]float64, k*n)
		for i := range a64 {
			a64[i] = rng.NormFloat64()
		}
		for i := range b64 {
			b64[i] = rng.NormFloat64()
		}
		lda, ldb := k, n
		if tr.a == blas.Trans {
			lda = m
		}
		if tr.b == blas.Trans {
			ldb = k
		}
		want64 := make([]float64, m*n)
		got64 := make([]float64, m*n)
		gonum.Implementation{}.Dgemm(tr.a, tr.b, m, n, k, 1, a64, lda, b64, ldb, 0, want64, n)
		gorgonia.WhichBLAS().Dgemm(tr.a, tr.b, m, n, k, 1, a64, lda, b64, ldb, 0, got64, n)
		for i := range want64 {
			if d := math.Abs(got64[i] - want64[i]); d > 1e-12*math.Max(1, math.Abs(want64[i])) {
				t.Fatalf("Dgemm %v %v: element %d = %v, gonum %v", tr.a, tr.b, i, got64[i], want64[i])
			}
		}

		a32 := make([]float32, len(a64))
		b32 := make([]float32, len(b64))
		for i := range a64 {
			a32[i] = float32(a64[i])
		}
		for i := range b64 {
			b32[i] = float32(b64[i])
		}
		want32 := make([]float32, m*n)
		got32 := make([]float32, m*n)
		gonum.Implementation{}.Sgemm(tr.a, tr.b, m, n, k, 1, a32, lda, b32, ldb, 0, want32, n)
		gorgonia.WhichBLAS().Sgemm(tr.a, tr.b, m, n, k, 1, a32, lda, b32, ldb, 0, got32, n)
		for i := range want32 {
			w, g := float64(want32[i]), float64(got32[i])
			if d := math.Abs(g - w); d > 1e-5*math.Max(1, math.Abs(w)) {
				t.Fatalf("Sgemm %v %v: element %d = %v, gonum %v", tr.a, tr.b, i, g, w)
			}
		}
	}
}

// TestOpenBLASMatMulNode checks a matrix product built as a Gorgonia graph
// and run on the tape machine against gonum's gemm.
func TestOpenBLASMatMulNode(t *testing.T) {
	const m, n, k = 8, 5, 13
	rng := rand.New(rand.NewSource(2))
	av := make([]float32, m*k)
	bv := make([]float32, k*n)
	for i := range av {
		av[i] = float32(rng.NormFloat64())
	}
	for i := range bv {
		bv[i] = float32(rng.NormFloat64())
	}
	g := gorgonia.NewGraph()
	a := gorgonia.NewMatrix(g, gorgonia.Float32, gorgonia.WithShape(m, k), gorgonia.WithName("a"), gorgonia.WithValue(tensor.New(tensor.WithShape(m, k), tensor.WithBacking(av))))
	b := gorgonia.NewMatrix(g, gorgonia.Float32, gorgonia.WithShape(k, n), gorgonia.WithName("b"), gorgonia.WithValue(tensor.New(tensor.WithShape(k, n), tensor.WithBacking(bv))))
	c := gorgonia.Must(gorgonia.Mul(a, b))
	vm := gorgonia.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	got := c.Value().Data().([]float32)
	want := make([]float32, m*n)
	gonum.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, av, k, bv, n, 0, want, n)
	for i := range want {
		w, gv := float64(want[i]), float64(got[i])
		if math.Abs(gv-w) > 1e-5*math.Max(1, math.Abs(w)) {
			t.Fatalf("element %d = %v, gonum %v", i, gv, w)
		}
	}
}

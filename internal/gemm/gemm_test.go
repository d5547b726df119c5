package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/blas/testblas"
)

var transposes = []blas.Transpose{blas.NoTrans, blas.Trans, blas.ConjTrans}

type shape struct{ m, n, k int }

// shapes covers single elements, sizes below, at and past every kernel's
// tile, odd sizes, and products large enough to be split across
// goroutines and to span several cache blocks.
var shapes = []shape{
	{1, 1, 1}, {1, 1, 7}, {1, 9, 1}, {5, 1, 3}, {2, 3, 4},
	{4, 4, 4}, {6, 16, 5}, {6, 8, 9}, {12, 32, 3}, {12, 16, 17},
	{7, 17, 13}, {13, 33, 31}, {25, 49, 11}, {64, 10, 256}, {10, 64, 33},
	{31, 70, 129}, {64, 256, 100}, {100, 37, 300}, {130, 131, 67},
	{97, 401, 263}, {400, 21, 260},
}

// kernelsUnder returns the kernels this CPU runs, each with its own cache
// blocks and with tiny blocks that make the block loops turn many times.
func kernelsUnder[T float](ks []kernel[T], es int) []kernel[T] {
	var out []kernel[T]
	for _, k := range ks {
		if !k.ok {
			continue
		}
		b := k.block(es)
		out = append(out, b)
		tiny := b
		tiny.name += " tiny blocks"
		tiny.kc, tiny.mc, tiny.nc = 5, 2*k.mr, 2*k.nr
		out = append(out, tiny)
	}
	return out
}

// operands returns A, B and C for the product with extra columns (pad) in
// every leading dimension, and the leading dimensions.
func operands(rng *rand.Rand, s shape, tA, tB blas.Transpose, pad int) (a, b, c []float64, lda, ldb, ldc int) {
	ar, ac := s.m, s.k
	if tA != blas.NoTrans {
		ar, ac = s.k, s.m
	}
	br, bc := s.k, s.n
	if tB != blas.NoTrans {
		br, bc = s.n, s.k
	}
	lda, ldb, ldc = ac+pad, bc+pad, s.n+pad
	fill := func(rows, ld int) []float64 {
		x := make([]float64, rows*ld)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		return x
	}
	return fill(ar, lda), fill(br, ldb), fill(s.m, ldc), lda, ldb, ldc
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

var scalars = []float64{0, 1, -0.75}

// splitSmall lowers parallelMin so that the test shapes' larger products
// are split across goroutines; it returns what puts it back.
func splitSmall() func() {
	old := parallelMin
	parallelMin = 1 << 16
	return func() { parallelMin = old }
}

func TestDgemmMatchesGonum(t *testing.T) {
	procs := runtime.GOMAXPROCS(3) // odd, so split spans differ in size
	defer runtime.GOMAXPROCS(procs)
	defer splitSmall()()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kn := range kernelsUnder(kernels64, 8) {
		for _, s := range shapes {
			for _, tA := range transposes {
				for _, tB := range transposes {
					for _, alpha := range scalars {
						for _, beta := range scalars {
							pad := rng.IntN(3)
							a, b, c, lda, ldb, ldc := operands(rng, s, tA, tB, pad)
							want := append([]float64(nil), c...)
							gonum.Implementation{}.Dgemm(tA, tB, s.m, s.n, s.k, alpha, a, lda, b, ldb, beta, want, ldc)
							got := append([]float64(nil), c...)
							p := args[float64]{aTrans: tA != blas.NoTrans, bTrans: tB != blas.NoTrans, m: s.m, n: s.n, k: s.k,
								alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: got, ldc: ldc}
							gemm(&kn, pools64, &p)
							name := fmt.Sprintf("%s %v %c%c alpha=%v beta=%v ld+%d", kn.name, s, tA, tB, alpha, beta, pad)
							compare(t, name, got, want, s.k, 1e-12)
						}
					}
				}
			}
		}
	}
}

func TestSgemmMatchesGonum(t *testing.T) {
	procs := runtime.GOMAXPROCS(3)
	defer runtime.GOMAXPROCS(procs)
	defer splitSmall()()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kn := range kernelsUnder(kernels32, 4) {
		for _, s := range shapes {
			for _, tA := range transposes {
				for _, tB := range transposes {
					for _, alpha := range scalars {
						for _, beta := range scalars {
							pad := rng.IntN(3)
							a64, b64, c64, lda, ldb, ldc := operands(rng, s, tA, tB, pad)
							a, b, c := to32(a64), to32(b64), to32(c64)
							want := append([]float32(nil), c...)
							gonum.Implementation{}.Sgemm(tA, tB, s.m, s.n, s.k, float32(alpha), a, lda, b, ldb, float32(beta), want, ldc)
							got := append([]float32(nil), c...)
							p := args[float32]{aTrans: tA != blas.NoTrans, bTrans: tB != blas.NoTrans, m: s.m, n: s.n, k: s.k,
								alpha: float32(alpha), a: a, lda: lda, b: b, ldb: ldb, beta: float32(beta), c: got, ldc: ldc}
							gemm(&kn, pools32, &p)
							name := fmt.Sprintf("%s %v %c%c alpha=%v beta=%v ld+%d", kn.name, s, tA, tB, alpha, beta, pad)
							compare(t, name, got, want, s.k, 1e-5)
						}
					}
				}
			}
		}
	}
}

// compare fails t when an element of got differs from want by more than
// tol relative to the scale of a sum of k products of unit normals (√k),
// or when an element outside C's columns (padding) was touched.
func compare[T float](t *testing.T, name string, got, want []T, k int, tol float64) {
	t.Helper()
	scale := math.Max(1, math.Sqrt(float64(k)))
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if d := math.Abs(g - w); d > tol*math.Max(scale, math.Abs(w)) || math.IsNaN(g) != math.IsNaN(w) {
			t.Fatalf("%s: element %d = %v, gonum %v", name, i, g, w)
		}
	}
}

func TestDgemmTestblas(t *testing.T) {
	testblas.TestDgemm(t, Implementation{})
}

// TestBetaZeroIgnoresC checks that beta == 0 overwrites C, NaNs included,
// as the BLAS contract (and gonum) has it.
func TestBetaZeroIgnoresC(t *testing.T) {
	for _, kn := range kernelsUnder(kernels64, 8) {
		const m, n, k = 13, 35, 9
		a := make([]float64, m*k)
		b := make([]float64, k*n)
		c := make([]float64, m*n)
		for i := range a {
			a[i] = 1
		}
		for i := range b {
			b[i] = 2
		}
		for i := range c {
			c[i] = math.NaN()
		}
		p := args[float64]{m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: c, ldc: n}
		gemm(&kn, pools64, &p)
		for i, v := range c {
			if v != 2*k {
				t.Fatalf("%s: c[%d] = %v, want %v", kn.name, i, v, 2*k)
			}
		}
	}
}

// TestPanicsLikeGonum checks that invalid arguments panic with gonum's
// message, for each check in gonum's order.
func TestPanicsLikeGonum(t *testing.T) {
	type call struct {
		name           string
		tA, tB         blas.Transpose
		m, n, k        int
		la, lda        int
		lb, ldb        int
		lc, ldc        int
		wantPanicEmpty bool
	}
	calls := []call{
		{name: "bad tA", tA: 'x', tB: blas.NoTrans, m: 2, n: 2, k: 2, la: 4, lda: 2, lb: 4, ldb: 2, lc: 4, ldc: 2},
		{name: "bad tB", tA: blas.NoTrans, tB: 0, m: 2, n: 2, k: 2, la: 4, lda: 2, lb: 4, ldb: 2, lc: 4, ldc: 2},
		{name: "m<0", tA: blas.NoTrans, tB: blas.NoTrans, m: -1, n: 2, k: 2, la: 4, lda: 2, lb: 4, ldb: 2, lc: 4, ldc: 2},
		{name: "n<0", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: -1, k: 2, la: 4, lda: 2, lb: 4, ldb: 2, lc: 4, ldc: 2},
		{name: "k<0", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: 2, k: -1, la: 4, lda: 2, lb: 4, ldb: 2, lc: 4, ldc: 2},
		{name: "lda", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: 2, k: 3, la: 6, lda: 2, lb: 6, ldb: 2, lc: 4, ldc: 2},
		{name: "lda trans", tA: blas.Trans, tB: blas.NoTrans, m: 3, n: 2, k: 2, la: 6, lda: 2, lb: 4, ldb: 2, lc: 6, ldc: 2},
		{name: "ldb", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: 3, k: 2, la: 4, lda: 2, lb: 6, ldb: 2, lc: 6, ldc: 3},
		{name: "ldb trans", tA: blas.NoTrans, tB: blas.Trans, m: 2, n: 2, k: 3, la: 6, lda: 3, lb: 6, ldb: 2, lc: 4, ldc: 2},
		{name: "ldc", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: 3, k: 2, la: 4, lda: 2, lb: 6, ldb: 3, lc: 6, ldc: 2},
		{name: "short a", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: 2, k: 2, la: 3, lda: 2, lb: 4, ldb: 2, lc: 4, ldc: 2},
		{name: "short a trans", tA: blas.Trans, tB: blas.NoTrans, m: 2, n: 2, k: 3, la: 5, lda: 2, lb: 6, ldb: 2, lc: 4, ldc: 2},
		{name: "short b", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: 2, k: 2, la: 4, lda: 2, lb: 3, ldb: 2, lc: 4, ldc: 2},
		{name: "short b trans", tA: blas.NoTrans, tB: blas.Trans, m: 2, n: 3, k: 2, la: 4, lda: 2, lb: 5, ldb: 2, lc: 6, ldc: 3},
		{name: "short c", tA: blas.NoTrans, tB: blas.NoTrans, m: 2, n: 2, k: 2, la: 4, lda: 2, lb: 4, ldb: 2, lc: 3, ldc: 2},
		{name: "m=0 skips lengths", tA: blas.NoTrans, tB: blas.NoTrans, m: 0, n: 2, k: 2, la: 0, lda: 2, lb: 0, ldb: 2, lc: 0, ldc: 2, wantPanicEmpty: true},
	}
	catch := func(f func()) (msg any) {
		defer func() { msg = recover() }()
		f()
		return nil
	}
	for _, c := range calls {
		a, b, cc := make([]float64, c.la), make([]float64, c.lb), make([]float64, c.lc)
		want := catch(func() {
			gonum.Implementation{}.Dgemm(c.tA, c.tB, c.m, c.n, c.k, 1, a, c.lda, b, c.ldb, 0, cc, c.ldc)
		})
		if (want == nil) != c.wantPanicEmpty {
			t.Fatalf("%s: gonum's Dgemm panic = %v; the case is wrong", c.name, want)
		}
		got := catch(func() {
			Implementation{}.Dgemm(c.tA, c.tB, c.m, c.n, c.k, 1, a, c.lda, b, c.ldb, 0, cc, c.ldc)
		})
		if got != want {
			t.Errorf("%s: Dgemm panic = %v, gonum %v", c.name, got, want)
		}
		a32, b32, c32 := make([]float32, c.la), make([]float32, c.lb), make([]float32, c.lc)
		want = catch(func() {
			gonum.Implementation{}.Sgemm(c.tA, c.tB, c.m, c.n, c.k, 1, a32, c.lda, b32, c.ldb, 0, c32, c.ldc)
		})
		got = catch(func() {
			Implementation{}.Sgemm(c.tA, c.tB, c.m, c.n, c.k, 1, a32, c.lda, b32, c.ldb, 0, c32, c.ldc)
		})
		if got != want {
			t.Errorf("%s: Sgemm panic = %v, gonum %v", c.name, got, want)
		}
	}
}

// TestNoAllocations checks that, once the pools are warm, a product
// allocates nothing but the goroutine that runs its second span.
func TestNoAllocations(t *testing.T) {
	if !simd {
		t.Skip("no vector kernel: gonum's gemm runs, and allocates")
	}
	procs := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(procs)
	defer splitSmall()()
	const m, n, k = 64, 256, 784
	a := make([]float32, m*k)
	b := make([]float32, k*n)
	c := make([]float32, m*n)
	impl := Implementation{}
	f := func() { impl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, b, n, 0, c, n) }
	f()
	if allocs := testing.AllocsPerRun(50, f); allocs > 1 {
		t.Errorf("Sgemm split in 2 allocates %v times per call, want at most 1", allocs)
	}
	small := func() { impl.Sgemm(blas.NoTrans, blas.NoTrans, 16, 16, 16, 1, a, k, b, n, 0, c, n) }
	small()
	if allocs := testing.AllocsPerRun(50, small); allocs != 0 {
		t.Errorf("16×16×16 Sgemm allocates %v times per call, want 0", allocs)
	}
}

// TestConcurrentProducts runs split and unsplit products from several
// goroutines at once, as executors of different parts do, sharing the
// pools; each must match gonum's.
func TestConcurrentProducts(t *testing.T) {
	procs := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(procs)
	defer splitSmall()()
	shapes := []shape{{64, 256, 96}, {7, 9, 5}, {130, 40, 200}}
	errs := make(chan error, 4*len(shapes))
	for g := 0; g < 4; g++ {
		go func(g int) {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for _, s := range shapes {
				a, b, c, lda, ldb, ldc := operands(rng, s, blas.NoTrans, blas.Trans, 1)
				want := append([]float64(nil), c...)
				gonum.Implementation{}.Dgemm(blas.NoTrans, blas.Trans, s.m, s.n, s.k, 1.5, a, lda, b, ldb, 0.5, want, ldc)
				Implementation{}.Dgemm(blas.NoTrans, blas.Trans, s.m, s.n, s.k, 1.5, a, lda, b, ldb, 0.5, c, ldc)
				var err error
				for i := range want {
					if d := math.Abs(c[i] - want[i]); d > 1e-12*math.Max(math.Sqrt(float64(s.k)), math.Abs(want[i])) {
						err = fmt.Errorf("goroutine %d, %v: element %d = %v, gonum %v", g, s, i, c[i], want[i])
						break
					}
				}
				errs <- err
			}
		}(g)
	}
	for range 4 * len(shapes) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

package native

import (
	"math"
	"math/rand"
	"slices"
	"testing"

	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// TestGemmSplitK checks the gemms that run split along k across threads
// (a small result, a long k) against a plain triple loop, for every
// transpose, with beta 0 and 1, in both dtypes.
func TestGemmSplitK(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const m, n, k = 5, 7, 3*minSplitK + 11 // row-major C (m×n) = P (m×k) · Q (k×n)
	for _, dt := range []graph.DType{graph.Float32, graph.Float64} {
		for _, tp := range []bool{false, true} {
			for _, tq := range []bool{false, true} {
				for _, beta := range []float64{0, 1} {
					d := newDevice(3)
					p, q, c := make([]float64, m*k), make([]float64, k*n), make([]float64, m*n)
					for i := range p {
						p[i] = rng.NormFloat64()
					}
					for i := range q {
						q[i] = rng.NormFloat64()
					}
					for i := range c {
						c[i] = rng.NormFloat64()
					}
					// Stored layouts: P as m×k (or k×m transposed), Q as k×n (or n×k).
					pst, ldp := p, k
					if tp {
						pst, ldp = transpose(p, m, k), m
					}
					qst, ldq := q, n
					if tq {
						qst, ldq = transpose(q, k, n), k
					}
					bufs := []uint64{upload(t, d, dt, pst), upload(t, d, dt, qst), upload(t, d, dt, c)}
					// In cuBLAS's terms A is Q's buffer and B is P's (see runGemm).
					l := plan.Launch{Node: 1, Kernel: "sgemm", Gemm: &plan.Gemm{TransA: tq, TransB: tp, M: n, N: m, K: k, Alpha: 1, Beta: beta,
						A: 1, Lda: ldq, B: 0, Ldb: ldp, C: 2, Ldc: n}}
					if err := d.Run(dt, []plan.Launch{l}, bufs); err != nil {
						t.Fatal(err)
					}
					got := download(t, d, dt, bufs[2], m*n)
					for i := range m {
						for j := range n {
							want := beta * c[i*n+j]
							for kk := range k {
								want += p[i*k+kk] * q[kk*n+j]
							}
							tol := 1e-9
							if dt == graph.Float32 {
								tol = 1e-3
							}
							if g := got[i*n+j]; math.Abs(g-want) > tol*math.Max(1, math.Abs(want)) {
								t.Fatalf("%v transposes %v %v beta %v: C[%d][%d] = %v, want %v", dt, tp, tq, beta, i, j, g, want)
							}
						}
					}
				}
			}
		}
	}
}

func transpose(a []float64, r, c int) []float64 {
	out := make([]float64, len(a))
	for i := range r {
		for j := range c {
			out[j*r+i] = a[i*c+j]
		}
	}
	return out
}

func upload(t *testing.T, d *device, dt graph.DType, v []float64) uint64 {
	t.Helper()
	h, err := d.Alloc(int64(len(v) * dt.Size()))
	if err != nil {
		t.Fatal(err)
	}
	if dt == graph.Float64 {
		s, err := d.Host64(h)
		if err != nil {
			t.Fatal(err)
		}
		copy(s, v)
		return h
	}
	s, err := d.Host32(h)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		s[i] = float32(x)
	}
	return h
}

func download(t *testing.T, d *device, dt graph.DType, h uint64, n int) []float64 {
	t.Helper()
	out := make([]float64, n)
	if dt == graph.Float64 {
		s, err := d.Host64(h)
		if err != nil {
			t.Fatal(err)
		}
		copy(out, s)
		return out
	}
	s, err := d.Host32(h)
	if err != nil {
		t.Fatal(err)
	}
	for i := range out {
		out[i] = float64(s[i])
	}
	return out
}

// TestMomentumFlushesTinyVelocity checks that a momentum update sets a
// velocity under tinyVelocity to 0 (it would decay into subnormal
// numbers, slow to compute with) and leaves larger ones as the plain
// update computes them, in both dtypes.
func TestMomentumFlushesTinyVelocity(t *testing.T) {
	for _, dt := range []graph.DType{graph.Float32, graph.Float64} {
		d := newDevice(1)
		p := upload(t, d, dt, []float64{1, 1, 1, 1})
		g := upload(t, d, dt, []float64{0, 0, 0, 0.5})
		s := upload(t, d, dt, []float64{1e-31, -1e-31, 1e-20, 0})
		l := plan.Launch{Node: 1, Kernel: "update", Args: []plan.Arg{
			{Type: plan.ArgInt, Int: plan.SMomentum}, {Type: plan.ArgInt, Int: 4},
			{Type: plan.ArgScalar, Scalar: 0.1}, {Type: plan.ArgScalar, Scalar: 1}, {Type: plan.ArgScalar}, {Type: plan.ArgScalar, Scalar: 1},
			{Type: plan.ArgScalar, Scalar: 0.9}, {Type: plan.ArgScalar}, {Type: plan.ArgScalar}, {Type: plan.ArgScalar, Scalar: 1},
			{Type: plan.ArgScalar, Scalar: 1}, {Type: plan.ArgScalar}, {Type: plan.ArgScalar},
			{Type: plan.ArgPtr, Buf: 0}, {Type: plan.ArgPtr, Buf: 1}, {Type: plan.ArgPtr, Buf: 2}, {Type: plan.ArgPtr, Buf: 2}}}
		if err := d.Run(dt, []plan.Launch{l}, []uint64{p, g, s}); err != nil {
			t.Fatal(err)
		}
		got := download(t, d, dt, s, 4)
		want := []float64{0, 0, 0.9e-20, 0.5}
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-6*math.Abs(want[i]) {
				t.Errorf("%v: velocity %d = %v, want %v", dt, i, got[i], want[i])
			}
		}
	}
}

// TestKernelTable checks that the device runs every kernel a plan can
// name (exec/plan's, and its host-only ones), each with a signature, and
// no kernel a plan cannot name.
func TestKernelTable(t *testing.T) {
	names := append(plan.KernelNames(), plan.HostKernelNames()...)
	for _, k := range names {
		if _, ok := plan.KernelSig(k); !ok {
			t.Errorf("kernel %s has no signature", k)
		}
		if _, ok := kernelFor[float32](k); !ok {
			t.Errorf("no float32 kernel %s", k)
		}
		if _, ok := kernelFor[float64](k); !ok {
			t.Errorf("no float64 kernel %s", k)
		}
	}
	for k := range tables32 {
		if !slices.Contains(names, k) {
			t.Errorf("kernel %s is in no plan", k)
		}
	}
}

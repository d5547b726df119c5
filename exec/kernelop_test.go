package exec_test

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"sort"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/kernels"
	"github.com/rookery-ml/rookery/graph"
)

// runOne builds a graph of inputs (with values) and one op over them,
// lowers it to Gorgonia, runs it and returns the op's value.
func runOne(t *testing.T, op graph.Op, ins ...*tensor.Dense) *tensor.Dense {
	t.Helper()
	g := graph.New()
	ids := make([]int64, len(ins))
	for i, v := range ins {
		ids[i] = int64(i + 1)
		dt, err := graph.DTypeOf(v.Dtype())
		if err != nil {
			t.Fatal(err)
		}
		g.MustAdd(graph.Node{ID: ids[i], Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape(v.Shape().Clone()), DType: dt, Name: string(rune('a' + i)), Value: v})
	}
	in := make([]*graph.Node, len(ins))
	for i, id := range ids {
		in[i], _ = g.Node(id)
	}
	shape, dt, err := graph.Infer(op, in)
	if err != nil {
		t.Fatalf("infer %v: %v", op, err)
	}
	out := int64(len(ins) + 1)
	if err := g.Add(graph.Node{ID: out, Role: graph.RoleOp, Op: op, Inputs: ids, Shape: shape, DType: dt}); err != nil {
		t.Fatal(err)
	}
	if c := g.Cost(out); c.FLOPs <= 0 {
		t.Errorf("%s: got %d FLOPs, want > 0", op.Kind, c.FLOPs)
	}
	eg := gorgonia.NewGraph()
	nodes, err := exec.Lower(g, eg)
	if err != nil {
		t.Fatal(err)
	}
	m := gorgonia.NewTapeMachine(eg)
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatal(err)
	}
	return nodes[out].Value().(*tensor.Dense).Clone().(*tensor.Dense)
}

func dense64(shape []int, v []float64) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), v...)))
}

func randInts(rng *rand.Rand, n, hi int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(rng.Intn(hi))
	}
	return v
}

func equal(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: at %d got %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestTopK(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, tc := range []struct{ m, n, k int }{{1, 1, 1}, {3, 10, 3}, {7, 50, 5}, {4, 6, 6}} {
		// few distinct values, so that ties occur
		x := randInts(rng, tc.m*tc.n, 5)
		for _, indices := range []bool{false, true} {
			got := runOne(t, graph.NewOp(graph.KindTopK, graph.IntAttr("k", tc.k), graph.BoolAttr("indices", indices)), dense64([]int{tc.m, tc.n}, x)).Float64s()
			var want []float64
			for r := 0; r < tc.m; r++ {
				cols := make([]int, tc.n)
				for j := range cols {
					cols[j] = j
				}
				row := x[r*tc.n : (r+1)*tc.n]
				sort.SliceStable(cols, func(a, b int) bool { return row[cols[a]] < row[cols[b]] })
				for _, c := range cols[:tc.k] {
					if indices {
						want = append(want, float64(c))
					} else {
						want = append(want, row[c])
					}
				}
			}
			equal(t, "top_k", got, want)
		}
	}
}

func TestTopKFloat32(t *testing.T) {
	x := tensor.New(tensor.WithShape(2, 4), tensor.WithBacking([]float32{4, 1, 3, 1, 0, -1, 2, -5}))
	got := runOne(t, graph.NewOp(graph.KindTopK, graph.IntAttr("k", 2), graph.BoolAttr("indices", true)), x).Float32s()
	want := []float32{1, 3, 3, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestArgMin(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	m, n := 9, 7
	x := randInts(rng, m*n, 4)
	got := runOne(t, graph.NewOp(graph.KindArgMin), dense64([]int{m, n}, x)).Float64s()
	want := make([]float64, m)
	for r := 0; r < m; r++ {
		b := 0
		for j := 1; j < n; j++ {
			if x[r*n+j] < x[r*n+b] {
				b = j
			}
		}
		want[r] = float64(b)
	}
	equal(t, "argmin", got, want)
}

func TestLogSoftmaxRows(t *testing.T) {
	x := []float64{
		1, 2, 3,
		1000, 1000, 1000, // would overflow exp unshifted
		-5, 0, -5,
		0, math.Inf(-1), 0, // a class with probability 0
	}
	got := runOne(t, graph.NewOp(graph.KindLogSoftmaxRows), dense64([]int{4, 3}, x)).Float64s()
	for r := 0; r < 4; r++ {
		row := x[r*3 : r*3+3]
		var sum float64
		for _, v := range row {
			sum += math.Exp(v - row[0])
		}
		for j, v := range row {
			want := v - row[0] - math.Log(sum)
			if d := math.Abs(got[r*3+j] - want); !(d <= 1e-12) && !(math.IsInf(want, -1) && math.IsInf(got[r*3+j], -1)) {
				t.Errorf("row %d col %d: got %v, want %v", r, j, got[r*3+j], want)
			}
		}
	}
	// the same values as Gorgonia's own log-softmax on ordinary rows
	rng := rand.New(rand.NewSource(3))
	y := make([]float64, 50*7)
	for i := range y {
		y[i] = rng.NormFloat64() * 4
	}
	mine := runOne(t, graph.NewOp(graph.KindLogSoftmaxRows), dense64([]int{50, 7}, y)).Float64s()
	theirs := runOne(t, graph.NewOp(graph.KindSoftmax, graph.IntAttr("axis", 1), graph.BoolAttr("log", true)), dense64([]int{50, 7}, y)).Float64s()
	for i := range mine {
		if d := math.Abs(mine[i] - theirs[i]); d > 1e-12 {
			t.Fatalf("at %d: got %v, Gorgonia's log-softmax %v", i, mine[i], theirs[i])
		}
	}
}

func TestOneHot(t *testing.T) {
	x := []float64{0, 2, 1, 5, -1, 2}
	got := runOne(t, graph.NewOp(graph.KindOneHot, graph.IntAttr("depth", 3)), dense64([]int{6}, x)).Float64s()
	want := []float64{1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	equal(t, "one_hot", got, want)
}

func TestTake(t *testing.T) {
	table := []float64{10, 11, 12}
	idx := []float64{2, 0, 3, -1, 1}
	got := runOne(t, graph.NewOp(graph.KindTake), dense64([]int{3}, table), dense64([]int{5}, idx)).Float64s()
	equal(t, "take", got, []float64{12, 10, -1, -1, 11})
}

func TestTreeRoute(t *testing.T) {
	// node 0: x0 <= 0.5 ? 1 : 2; node 1: leaf; node 2: x1 <= 2 ? 3 : 4
	tree := []float64{0, 0.5, 1, -1, 0, 0, 1, 2, 3, -1, 0, 0, -1, 0, 0}
	rng := rand.New(rand.NewSource(3))
	n, d := 20, 2
	x := make([]float64, n*d)
	for i := range x {
		x[i] = float64(rng.Intn(4)) / 2
	}
	got := runOne(t, graph.NewOp(graph.KindTreeRoute), dense64([]int{n, d}, x), dense64([]int{5, 3}, tree)).Float64s()
	want := make([]float64, n)
	for i := 0; i < n; i++ {
		switch {
		case x[i*d] <= 0.5:
			want[i] = 1
		case x[i*d+1] <= 2:
			want[i] = 3
		default:
			want[i] = 4
		}
	}
	equal(t, "tree_route", got, want)
}

func TestHistogram(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	n, d, c, groups, bins := 40, 3, 2, 3, 4
	codes := randInts(rng, n*d, bins)
	group := randInts(rng, n, groups+1) // group 3 is skipped
	w := make([]float64, n*c)
	for i := 0; i < n; i++ {
		w[i*c+rng.Intn(c)] = 1 // one-hot rows ...
		if i%3 == 0 {
			w[i*c] = rng.Float64() // ... and some dense rows
		}
	}
	got := runOne(t, graph.NewOp(graph.KindHistogram, graph.IntAttr("groups", groups), graph.IntAttr("bins", bins)),
		dense64([]int{n, d}, codes), dense64([]int{n}, group), dense64([]int{n, c}, w)).Float64s()
	want := make([]float64, groups*d*bins*c)
	for i := 0; i < n; i++ {
		g := int(group[i])
		if g >= groups {
			continue
		}
		for f := 0; f < d; f++ {
			b := int(codes[i*d+f])
			for j := 0; j < c; j++ {
				want[((g*d+f)*bins+b)*c+j] += w[i*c+j]
			}
		}
	}
	for i := range want {
		if diff := got[i] - want[i]; diff > 1e-12 || diff < -1e-12 {
			t.Fatalf("histogram at %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestSegmentSum(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	n, d, groups := 30, 4, 3
	x := make([]float64, n*d)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	group := randInts(rng, n, groups+1) // group 3 is skipped
	got := runOne(t, graph.NewOp(graph.KindSegmentSum, graph.IntAttr("groups", groups)), dense64([]int{n, d}, x), dense64([]int{n}, group)).Float64s()
	want := make([]float64, groups*d)
	for i := 0; i < n; i++ {
		if g := int(group[i]); g < groups {
			for j := 0; j < d; j++ {
				want[g*d+j] += x[i*d+j]
			}
		}
	}
	equal(t, "segment_sum", got, want)

	// sums of squares
	got = runOne(t, graph.NewOp(graph.KindSegmentSum, graph.IntAttr("groups", groups), graph.BoolAttr("square", true)), dense64([]int{n, d}, x), dense64([]int{n}, group)).Float64s()
	want = make([]float64, groups*d)
	for i := 0; i < n; i++ {
		if g := int(group[i]); g < groups {
			for j := 0; j < d; j++ {
				want[g*d+j] += x[i*d+j] * x[i*d+j]
			}
		}
	}
	equal(t, "segment_sum square", got, want)

	// two groupings at once
	g2 := randInts(rng, n*2, groups)
	got = runOne(t, graph.NewOp(graph.KindSegmentSum, graph.IntAttr("groups", groups)), dense64([]int{n, d}, x), dense64([]int{n, 2}, g2)).Float64s()
	want = make([]float64, 2*groups*d)
	for i := 0; i < n; i++ {
		for j := 0; j < 2; j++ {
			g := j*groups + int(g2[i*2+j])
			for f := 0; f < d; f++ {
				want[g*d+f] += x[i*d+f]
			}
		}
	}
	for i := range want {
		if diff := got[i] - want[i]; diff > 1e-12 || diff < -1e-12 {
			t.Fatalf("segment_sum (n,2): at %d got %v, want %v", i, got[i], want[i])
		}
	}
}

func TestGatherRows(t *testing.T) {
	x := []float64{1, 2, 3, 4, 5, 6}
	idx := []float64{2, 0, -1, 3, 1}
	got := runOne(t, graph.NewOp(graph.KindGatherRows), dense64([]int{3, 2}, x), dense64([]int{5}, idx)).Float64s()
	equal(t, "gather_rows", got, []float64{5, 6, 1, 2, 0, 0, 0, 0, 3, 4})
}

func TestGroupRows(t *testing.T) {
	group := []float64{1, 0, 1, 2, 1, 1, -1, 0}
	got := runOne(t, graph.NewOp(graph.KindGroupRows, graph.IntAttr("groups", 2), graph.IntAttr("limit", 3)), dense64([]int{8}, group)).Float64s()
	equal(t, "group_rows", got, []float64{1, 7, -1, 0, 2, 4})
}

// TestMatMulTopK compares the fused kind, run by its Gorgonia op, with
// top_k of matmul, values and columns, in both dtypes, with ties and
// k = n. The kernel's own test varies the block size.
func TestMatMulTopK(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, tc := range []struct{ m, d, n, k int }{{1, 1, 1, 1}, {3, 4, 7, 7}, {5, 3, 40, 4}, {7, 5, 300, 9}, {300, 6, 3000, 21}} {
		a := make([]float64, tc.m*tc.d)
		b := make([]float64, tc.d*tc.n)
		for i := range a {
			a[i] = float64(rng.Intn(5) - 2) // small integers: many equal products
		}
		for i := range b {
			b[i] = float64(rng.Intn(5) - 2)
		}
		prod := make([]float64, tc.m*tc.n)
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				for l := 0; l < tc.d; l++ {
					prod[i*tc.n+j] += a[i*tc.d+l] * b[l*tc.n+j]
				}
			}
		}
		wantV := make([]float64, tc.m*tc.k)
		wantI := make([]float64, tc.m*tc.k)
		kernels.TopK(prod, tc.m, tc.n, tc.k, false, wantV)
		kernels.TopK(prod, tc.m, tc.n, tc.k, true, wantI)
		for _, f32 := range []bool{false, true} {
			var got []float64
			op := graph.NewOp(graph.KindMatMulTopK, graph.IntAttr("k", tc.k))
			if f32 {
				a32, b32 := make([]float32, len(a)), make([]float32, len(b))
				for i, v := range a {
					a32[i] = float32(v)
				}
				for i, v := range b {
					b32[i] = float32(v)
				}
				o := runOne(t, op, tensor.New(tensor.WithShape(tc.m, tc.d), tensor.WithBacking(a32)), tensor.New(tensor.WithShape(tc.d, tc.n), tensor.WithBacking(b32))).Float32s()
				for _, v := range o {
					got = append(got, float64(v))
				}
			} else {
				got = runOne(t, op, dense64([]int{tc.m, tc.d}, a), dense64([]int{tc.d, tc.n}, b)).Float64s()
			}
			for i := 0; i < tc.m; i++ {
				for j := 0; j < tc.k; j++ {
					gv, gi := got[i*2*tc.k+j], got[i*2*tc.k+tc.k+j]
					wv, wi := wantV[i*tc.k+j], wantI[i*tc.k+j]
					if gi != wi || gv != wv && !(math.IsInf(gv, 1) && math.IsInf(wv, 1)) {
						t.Fatalf("%v f32=%v: row %d rank %d: got (%v, col %v), want (%v, col %v)", tc, f32, i, j, gv, gi, wv, wi)
					}
				}
			}
		}
	}
}

// TestKernelOpHasNoGradient checks that a loss reached through a kernel op
// from a learnable is refused when the session is built: the ML kinds have
// no gradient, and their Props keep the path visible so that the refusal
// is not a silent zero gradient.
func TestKernelOpHasNoGradient(t *testing.T) {
	g := graph.New()
	w := tensor.New(tensor.WithShape(3, 4), tensor.WithBacking([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}))
	g.MustAdd(graph.Node{ID: 1, Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{2, 3}, DType: graph.Float64, Name: "x"})
	g.MustAdd(graph.Node{ID: 2, Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), Shape: graph.Shape{3, 4}, DType: graph.Float64, Name: "w", Value: w})
	g.MustAdd(graph.Node{ID: 3, Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2}, Shape: graph.Shape{2, 4}, DType: graph.Float64})
	g.MustAdd(graph.Node{ID: 4, Role: graph.RoleOp, Op: graph.NewOp(graph.KindLogSoftmaxRows), Inputs: []int64{3}, Shape: graph.Shape{2, 4}, DType: graph.Float64})
	g.MustAdd(graph.Node{ID: 5, Role: graph.RoleOp, Op: graph.NewOp(graph.KindSum, graph.AxesAttr("axes", 0, 1)), Inputs: []int64{4}, DType: graph.Float64})
	spec := exec.SessionSpec{Graph: g, DataInputs: []int64{1}, Loss: 5, HasLoss: true, Solver: exec.SGD(0.1, 0)}
	s, err := exec.NewCPU().Open(context.Background(), spec)
	if err == nil {
		s.Close()
		t.Fatal("opened a session whose loss needs the gradient of log_softmax_rows")
	}
	var re *exec.RunError
	if !errors.As(err, &re) || re.Phase != "build" {
		t.Fatalf("got %v, want a *RunError while building", err)
	}
}

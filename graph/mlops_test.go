package graph

import (
	"math"
	"math/rand"
	"sort"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// runOne builds a graph of inputs (with values) and one op over them,
// lowers it to Gorgonia, runs it and returns the op's value.
func runOne(t *testing.T, op Op, ins ...*tensor.Dense) *tensor.Dense {
	t.Helper()
	g := New()
	ids := make([]int64, len(ins))
	for i, v := range ins {
		ids[i] = int64(i + 1)
		dt, err := DTypeOf(v.Dtype())
		if err != nil {
			t.Fatal(err)
		}
		g.MustAdd(Node{ID: ids[i], Role: RoleInput, Op: NewOp(KindInput), Shape: Shape(v.Shape().Clone()), DType: dt, Name: string(rune('a' + i)), Value: v})
	}
	in := make([]*Node, len(ins))
	for i, id := range ids {
		in[i], _ = g.Node(id)
	}
	shape, dt, err := infer(op, in)
	if err != nil {
		t.Fatalf("infer %v: %v", op, err)
	}
	out := int64(len(ins) + 1)
	if err := g.Add(Node{ID: out, Role: RoleOp, Op: op, Inputs: ids, Shape: shape, DType: dt}); err != nil {
		t.Fatal(err)
	}
	if c := g.Cost(out); c.FLOPs <= 0 {
		t.Errorf("%s: got %d FLOPs, want > 0", op.Kind, c.FLOPs)
	}
	eg := gorgonia.NewGraph()
	nodes, err := g.Lower(eg)
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
			got := runOne(t, NewOp(KindTopK, IntAttr("k", tc.k), BoolAttr("indices", indices)), dense64([]int{tc.m, tc.n}, x)).Float64s()
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
	got := runOne(t, NewOp(KindTopK, IntAttr("k", 2), BoolAttr("indices", true)), x).Float32s()
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
	got := runOne(t, NewOp(KindArgMin), dense64([]int{m, n}, x)).Float64s()
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
	got := runOne(t, NewOp(KindLogSoftmaxRows), dense64([]int{4, 3}, x)).Float64s()
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
	mine := runOne(t, NewOp(KindLogSoftmaxRows), dense64([]int{50, 7}, y)).Float64s()
	theirs := runOne(t, NewOp(KindSoftmax, IntAttr("axis", 1), BoolAttr("log", true)), dense64([]int{50, 7}, y)).Float64s()
	for i := range mine {
		if d := math.Abs(mine[i] - theirs[i]); d > 1e-12 {
			t.Fatalf("at %d: got %v, Gorgonia's log-softmax %v", i, mine[i], theirs[i])
		}
	}
}

func TestOneHot(t *testing.T) {
	x := []float64{0, 2, 1, 5, -1, 2}
	got := runOne(t, NewOp(KindOneHot, IntAttr("depth", 3)), dense64([]int{6}, x)).Float64s()
	want := []float64{1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	equal(t, "one_hot", got, want)
}

func TestTake(t *testing.T) {
	table := []float64{10, 11, 12}
	idx := []float64{2, 0, 3, -1, 1}
	got := runOne(t, NewOp(KindTake), dense64([]int{3}, table), dense64([]int{5}, idx)).Float64s()
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
	got := runOne(t, NewOp(KindTreeRoute), dense64([]int{n, d}, x), dense64([]int{5, 3}, tree)).Float64s()
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

func TestTreeRouteCycle(t *testing.T) {
	tree := []float64{0, 0.5, 1, 0, 0.5, 0, -1, 0, 0}
	var out [1]float64
	if err := TreeRoute([]float64{0}, 1, tree, out[:]); err == nil {
		t.Fatal("got no error for a tree with a cycle")
	}
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
	got := runOne(t, NewOp(KindHistogram, IntAttr("groups", groups), IntAttr("bins", bins)),
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
	got := runOne(t, NewOp(KindSegmentSum, IntAttr("groups", groups)), dense64([]int{n, d}, x), dense64([]int{n}, group)).Float64s()
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
	got = runOne(t, NewOp(KindSegmentSum, IntAttr("groups", groups), BoolAttr("square", true)), dense64([]int{n, d}, x), dense64([]int{n}, group)).Float64s()
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
	got = runOne(t, NewOp(KindSegmentSum, IntAttr("groups", groups)), dense64([]int{n, d}, x), dense64([]int{n, 2}, g2)).Float64s()
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
	got := runOne(t, NewOp(KindGatherRows), dense64([]int{3, 2}, x), dense64([]int{5}, idx)).Float64s()
	equal(t, "gather_rows", got, []float64{5, 6, 1, 2, 0, 0, 0, 0, 3, 4})
}

func TestGroupRows(t *testing.T) {
	group := []float64{1, 0, 1, 2, 1, 1, -1, 0}
	got := runOne(t, NewOp(KindGroupRows, IntAttr("groups", 2), IntAttr("limit", 3)), dense64([]int{8}, group)).Float64s()
	equal(t, "group_rows", got, []float64{1, 7, -1, 0, 2, 4})
}

func TestMLKindsShapeErrors(t *testing.T) {
	vec := &Node{Shape: Shape{4}, DType: Float64}
	mat := &Node{Shape: Shape{4, 3}, DType: Float64}
	ints := &Node{Shape: Shape{4, 3}, DType: Int}
	for _, tc := range []struct {
		name string
		op   Op
		in   []*Node
	}{
		{"top_k k too large", NewOp(KindTopK, IntAttr("k", 4)), []*Node{mat}},
		{"top_k vector", NewOp(KindTopK, IntAttr("k", 1)), []*Node{vec}},
		{"top_k ints", NewOp(KindTopK, IntAttr("k", 1)), []*Node{ints}},
		{"matmul_top_k inner sizes differ", NewOp(KindMatMulTopK, IntAttr("k", 1)), []*Node{mat, mat}},
		{"matmul_top_k k too large", NewOp(KindMatMulTopK, IntAttr("k", 4)), []*Node{mat, &Node{Shape: Shape{3, 3}, DType: Float64}}},
		{"matmul_top_k dtypes differ", NewOp(KindMatMulTopK, IntAttr("k", 1)), []*Node{mat, &Node{Shape: Shape{3, 3}, DType: Float32}}},
		{"matmul_top_k float32 too wide", NewOp(KindMatMulTopK, IntAttr("k", 1)), []*Node{{Shape: Shape{4, 3}, DType: Float32}, {Shape: Shape{3, 1<<24 + 1}, DType: Float32}}},
		{"argmin vector", NewOp(KindArgMin), []*Node{vec}},
		{"log_softmax_rows vector", NewOp(KindLogSoftmaxRows), []*Node{vec}},
		{"log_softmax_rows ints", NewOp(KindLogSoftmaxRows), []*Node{ints}},
		{"one_hot matrix", NewOp(KindOneHot, IntAttr("depth", 2)), []*Node{mat}},
		{"one_hot depth 0", NewOp(KindOneHot, IntAttr("depth", 0)), []*Node{vec}},
		{"take matrix", NewOp(KindTake), []*Node{mat, vec}},
		{"tree_route tree shape", NewOp(KindTreeRoute), []*Node{mat, &Node{Shape: Shape{4, 2}, DType: Float64}}},
		{"segment_sum rows differ", NewOp(KindSegmentSum, IntAttr("groups", 2)), []*Node{mat, &Node{Shape: Shape{3}, DType: Float64}}},
		{"gather_rows vector", NewOp(KindGatherRows), []*Node{vec, vec}},
		{"histogram rows differ", NewOp(KindHistogram, IntAttr("groups", 1), IntAttr("bins", 2)), []*Node{mat, &Node{Shape: Shape{3}, DType: Float64}, mat}},
	} {
		if _, _, err := infer(tc.op, tc.in); err == nil {
			t.Errorf("%s: got no error, want one", tc.name)
		}
	}
}

func TestMLKindsEncode(t *testing.T) {
	g := New()
	g.MustAdd(Node{ID: 1, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{5, 4}, DType: Float64, Name: "x"})
	g.MustAdd(Node{ID: 2, Role: RoleOp, Op: NewOp(KindTopK, IntAttr("k", 2), BoolAttr("indices", true)), Inputs: []int64{1}, Shape: Shape{5, 2}, DType: Float64})
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h := New()
	if err := h.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	n, _ := h.Node(2)
	if got, want := n.Op.String(), g.Nodes()[1].Op.String(); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestMatMulTopK compares the fused kind with top_k of matmul, values and
// columns, in both dtypes, on products wider than one block (so that the
// search carries over blocks) and with ties, NaN and k = n.
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
		TopK(prod, tc.m, tc.n, tc.k, false, wantV)
		TopK(prod, tc.m, tc.n, tc.k, true, wantI)
		for _, f32 := range []bool{false, true} {
			for _, block := range []int{matMulTopKBlock, 4 << 10} { // 4 KiB: blocks of 8 or 16 rows by 64 columns
				defer func(v int) { matMulTopKBlock = v }(matMulTopKBlock)
				matMulTopKBlock = block
				var got []float64
				op := NewOp(KindMatMulTopK, IntAttr("k", tc.k))
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
							t.Fatalf("%v f32=%v block %d: row %d rank %d: got (%v, col %v), want (%v, col %v)", tc, f32, block, i, j, gv, gi, wv, wi)
						}
					}
				}
			}
		}
	}
}

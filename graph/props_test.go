package graph

import (
	"errors"
	"slices"
	"testing"

	"gorgonia.org/gorgonia"
)

// TestPropsNoGrad checks the table against the rule that the executors
// applied before it existed: no gradient through comparisons, sign, ceil,
// floor, size_of and at, nor through the count of repeat.
func TestPropsNoGrad(t *testing.T) {
	want := func(k OpKind, i int) bool {
		switch k {
		case KindLt, KindGt, KindLte, KindGte, KindEq, KindNe,
			KindBroadcastLt, KindBroadcastGt, KindBroadcastLte, KindBroadcastGte,
			KindBroadcastEq, KindBroadcastNe,
			KindSign, KindCeil, KindFloor, KindSizeOf, KindAt:
			return true
		case KindRepeat:
			return i > 0
		}
		return false
	}
	for _, k := range Kinds() {
		for i := 0; i < 3 && (specs[k].maxIn < 0 || i < specs[k].maxIn); i++ {
			if got := k.NoGrad(i); got != want(k, i) {
				t.Errorf("%s.NoGrad(%d): got %v, want %v", k, i, got, want(k, i))
			}
			if got := slices.Contains(k.Props().NoGrad, i); got != want(k, i) {
				t.Errorf("%s.Props().NoGrad holds %d: got %v, want %v", k, i, got, want(k, i))
			}
		}
	}
	p := KindRepeat.Props()
	p.NoGrad[0] = 0
	if got := KindRepeat.Props().NoGrad; !slices.Equal(got, []int{1}) {
		t.Fatalf("changing a returned NoGrad changed the table: got %v, want [1]", got)
	}
}

func TestPropsExtension(t *testing.T) {
	ext := append(MLKinds(), KindMatMulTopK)
	for _, k := range Kinds() {
		if got, want := k.Props().Extension, slices.Contains(ext, k); got != want {
			t.Errorf("%s: Extension %v, want %v", k, got, want)
		}
	}
	if got := OpKind("no_such_kind").Props(); got.Extension || got.NoGrad != nil {
		t.Errorf("unknown kind: got %+v, want the zero Props", got)
	}
}

// TestLowerExtensionKinds checks that Lower refuses a kind without a
// Gorgonia op by name, and that LowerWith hands it to its LowerFunc.
func TestLowerExtensionKinds(t *testing.T) {
	g := New()
	g.MustAdd(Node{ID: 1, Role: RoleInput, Op: NewOp(KindInput), Shape: Shape{5, 4}, DType: Float64, Name: "x"})
	g.MustAdd(Node{ID: 2, Role: RoleOp, Op: NewOp(KindArgMin), Inputs: []int64{1}, Shape: Shape{5}, DType: Float64})
	_, err := g.Lower(gorgonia.NewGraph())
	var nl *NoLoweringError
	if !errors.As(err, &nl) || nl.Node != 2 || nl.Kind != KindArgMin {
		t.Fatalf("Lower: got %v, want a *NoLoweringError for node 2, argmin", err)
	}
	var seen []int64
	ext := func(n *Node, in []*gorgonia.Node) (*gorgonia.Node, error) {
		seen = append(seen, n.ID)
		if len(in) != 1 || in[0] == nil {
			t.Fatalf("LowerFunc got inputs %v, want the lowered x", in)
		}
		return gorgonia.Must(gorgonia.Sum(in[0], 1)), nil // any node of shape (5)
	}
	nodes, err := g.LowerWith(gorgonia.NewGraph(), ext)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int64{2}) || nodes[2] == nil {
		t.Fatalf("LowerFunc called for %v, want [2]", seen)
	}
	wrong := func(n *Node, in []*gorgonia.Node) (*gorgonia.Node, error) { return in[0], nil }
	var se *ShapeError
	if _, err := g.LowerWith(gorgonia.NewGraph(), wrong); !errors.As(err, &se) || se.Node != 2 {
		t.Fatalf("LowerFunc of the wrong shape: got %v, want a *ShapeError for node 2", err)
	}
}

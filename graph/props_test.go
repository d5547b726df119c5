package graph

import (
	"slices"
	"testing"
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

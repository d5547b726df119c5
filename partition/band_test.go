package partition

import (
	"testing"

	"github.com/rookery-ml/rookery/internal/synth"
)

// TestBandIsExact checks that refining only the band of nodes near part
// boundaries changes the cut of the band exactly as much as the cut of
// the whole graph, keeps every edge pointing forward, and never makes the
// cut worse.
func TestBandIsExact(t *testing.T) {
	g, err := synth.RandomDAG(20000, 5, 32, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{2, 5} {
		cfg, _ := newConfig(k, nil)
		s, err := newSolver(newProblem(g), cfg)
		if err != nil {
			t.Fatal(err)
		}
		fine := s.pr.finest()
		identity := make([]int32, fine.n)
		for i := range identity {
			identity[i] = int32(i)
		}
		part := s.splitOrder(fine, identity, true)
		before := fine.cut(part, k)

		b, sel, ok := fine.band(part, k, bandDepth)
		if !ok {
			t.Fatalf("k=%d: band covers more than half of %d nodes", k, fine.n)
		}
		fixed := 0
		for _, f := range b.fixed {
			if f {
				fixed++
			}
		}
		if fixed == 0 || b.n == fixed {
			t.Fatalf("k=%d: band of %d nodes with %d fixed", k, b.n, fixed)
		}
		bp := make([]int32, b.n)
		for i, v := range sel {
			bp[i] = part[v]
		}
		bandBefore := b.cut(bp, k)
		bp = s.vcycleAll(b, bp, s.rand(1))
		after := append([]int32(nil), part...)
		for i, v := range sel {
			if b.fixed[i] && bp[i] != part[v] {
				t.Fatalf("fixed node %d moved", v)
			}
			after[v] = bp[i]
		}
		if got, want := fine.cut(after, k)-before, b.cut(bp, k)-bandBefore; got != want {
			t.Errorf("k=%d: the whole cut changed by %d, the band's by %d", k, got, want)
		}
		t.Logf("k=%d: band %d of %d nodes (%d fixed), cut %d -> %d", k, b.n, fine.n, fixed, before, fine.cut(after, k))
		if fine.cut(after, k) > before {
			t.Errorf("k=%d: cut grew from %d to %d", k, before, fine.cut(after, k))
		}
		for e := range fine.netSrc {
			for _, u := range fine.netPins(int32(e)) {
				if after[u] < after[fine.netSrc[e]] {
					t.Fatalf("k=%d: edge %d→%d points back", k, fine.netSrc[e], u)
				}
			}
		}
		loads := make([]int64, k)
		for v, p := range after {
			loads[p] += fine.w[v]
		}
		for p := range loads {
			if loads[p] > s.maxCost[p] {
				t.Errorf("k=%d: part %d holds %d, limit %d", k, p, loads[p], s.maxCost[p])
			}
		}
	}
}

package partition_test

import (
	"errors"
	"testing"

	"github.com/rookery-ml/rookery/partition"
)

func TestArrange(t *testing.T) {
	g := mustSynth(t, "mlp:layers=4,width=64,batch=32")
	plan3, err := partition.Split(g, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		req     partition.Request
		k, r    int
		badReq  bool
		chooses bool
	}{
		{"nothing given, no executors", partition.Request{}, 1, 1, false, false},
		{"one part per executor", partition.Request{Executors: 4}, 4, 1, false, false},
		{"replicas share the executors", partition.Request{Executors: 4, Replicas: 2}, 2, 2, false, false},
		{"parts and replicas", partition.Request{Parts: 2, Replicas: 3}, 2, 3, false, false},
		{"the plan's parts", partition.Request{Plan: plan3, Executors: 6, Replicas: 2}, 3, 2, false, false},
		{"parts disagree with the plan", partition.Request{Plan: plan3, Parts: 2}, 0, 0, true, false},
		{"executors disagree", partition.Request{Parts: 2, Replicas: 2, Executors: 3}, 0, 0, true, false},
		{"negative replicas", partition.Request{Replicas: -1}, 0, 0, true, false},
		{"chosen", partition.Request{Executors: 4, Auto: []partition.LayoutOption{}}, 0, 0, false, true},
		{"auto yields to parts", partition.Request{Executors: 4, Parts: 4, Auto: []partition.LayoutOption{}}, 4, 1, false, false},
	} {
		a, err := partition.Arrange(g, tc.req)
		if tc.badReq {
			if !errors.Is(err, partition.ErrRequest) {
				t.Errorf("%s: got %v, want ErrRequest", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if a.Plan == nil || len(a.Plan.Parts) != a.K {
			t.Errorf("%s: plan of %v parts for k = %d", tc.name, a.Plan, a.K)
		}
		if tc.chooses {
			if a.Layout == nil || len(a.Pick) != a.K*a.R || len(a.RowWeights) != a.R {
				t.Errorf("%s: layout %v, pick %v, rows %v for k = %d, r = %d", tc.name, a.Layout, a.Pick, a.RowWeights, a.K, a.R)
			}
			continue
		}
		if a.K != tc.k || a.R != tc.r || a.Layout != nil {
			t.Errorf("%s: got k = %d, r = %d (layout %v), want %d × %d", tc.name, a.K, a.R, a.Layout, tc.k, tc.r)
		}
	}
}

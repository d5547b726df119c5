package ravml

import (
	"context"
	"testing"
)

func TestKMeansARI(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		data string
		k    int
		want float64 // scikit-learn 1.2
	}{{"iris", 3, 0.731}, {"digits", 10, 0.606}} {
		d := loadSplit(t, tc.data)
		m := NewKMeans(tc.k)
		if err := m.Fit(ctx, d.trX, nil); err != nil {
			t.Fatal(err)
		}
		got, err := m.Score(ctx, d.teX, d.teY)
		if err != nil {
			t.Fatal(err)
		}
		all, _ := m.Score(ctx, d.trX, d.trY)
		t.Logf("%s: KMeans(%d) ARI test %.4f train %.4f, inertia %.2f after %d iterations (scikit-learn %.3f)", tc.data, tc.k, got, all, m.Inertia, m.Iter, tc.want)
		if got < tc.want-0.01 {
			t.Errorf("%s: got ARI %.4f, want at least %.3f", tc.data, got, tc.want-0.01)
		}
	}
}

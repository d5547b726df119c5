package ravml

import (
	"context"
	"testing"
)

func TestMLPScores(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		data string
		want float64 // scikit-learn 1.2, MLPClassifier(hidden_layer_sizes=(64,)), same split
	}{{"iris", 1.0}, {"digits", 0.975}} {
		d := loadSplit(t, tc.data)
		m := NewMLPClassifier([]int{64})
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		got, err := m.Score(ctx, d.teX, d.teY)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: MLP(64) accuracy %.4f after %d epochs, loss %.4f (scikit-learn %.3f)", tc.data, got, m.Epochs, m.Loss, tc.want)
		if got < tc.want-0.01 {
			t.Errorf("%s: got accuracy %.4f, want at least %.3f", tc.data, got, tc.want-0.01)
		}
	}
}

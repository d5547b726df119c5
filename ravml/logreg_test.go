package ravml

import (
	"context"
	"testing"
)

func TestLogisticRegressionScores(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		data string
		want float64 // scikit-learn 1.2 on the same split
	}{{"iris", 0.967}, {"digits", 0.953}} {
		d := loadSplit(t, tc.data)
		m := NewLogisticRegression()
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		got, err := m.Score(ctx, d.teX, d.teY)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: LogisticRegression accuracy %.4f after %d iterations (scikit-learn %.3f)", tc.data, got, m.Iter, tc.want)
		if got < tc.want-0.01 {
			t.Errorf("%s: got accuracy %.4f, want at least %.3f", tc.data, got, tc.want-0.01)
		}
	}
}

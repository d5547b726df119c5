package ravml

import (
	"context"
	"testing"
)

func TestDecisionTreeScores(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		data string
		want float64 // scikit-learn 1.2 on the same split
	}{{"iris", 0.933}, {"digits", 0.838}} {
		d := loadSplit(t, tc.data)
		m := NewDecisionTreeClassifier()
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		got, err := m.Score(ctx, d.teX, d.teY)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: DecisionTree accuracy %.4f, depth %d, %d leaves (scikit-learn %.3f)", tc.data, got, m.Depth(), m.Leaves(), tc.want)
		if got < tc.want-0.01 {
			t.Errorf("%s: got accuracy %.4f, want at least %.3f", tc.data, got, tc.want-0.01)
		}
	}
}

func TestDecisionTreeRegressorDiabetes(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "diabetes")
	m := NewDecisionTreeRegressor(MaxDepth(3))
	if err := m.Fit(ctx, d.trX, d.trY); err != nil {
		t.Fatal(err)
	}
	got, err := m.Score(ctx, d.teX, d.teY)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("diabetes: DecisionTreeRegressor(max depth 3) R² %.4f", got)
	if got < 0.2 {
		t.Errorf("got R² %.4f, want at least 0.2", got)
	}
}

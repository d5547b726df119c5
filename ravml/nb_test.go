package ravml

import (
	"context"
	"math"
	"testing"
)

func TestGaussianNBScores(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		data string
		want float64 // scikit-learn 1.2 on the same split
	}{{"iris", 0.933}, {"digits", 0.830}} {
		d := loadSplit(t, tc.data)
		m := NewGaussianNB()
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		got, err := m.Score(ctx, d.teX, d.teY)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: GaussianNB accuracy %.4f (scikit-learn %.3f)", tc.data, got, tc.want)
		if got < tc.want-0.01 {
			t.Errorf("%s: got accuracy %.4f, want at least %.3f", tc.data, got, tc.want-0.01)
		}
	}
}

func TestLinearRegressionDiabetes(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "diabetes")
	m := NewLinearRegression()
	if err := m.Fit(ctx, d.trX, d.trY); err != nil {
		t.Fatal(err)
	}
	got, err := m.Score(ctx, d.teX, d.teY)
	if err != nil {
		t.Fatal(err)
	}
	// scikit-learn 1.2.1 on the same split: 0.44748569 (bench/ravml/sklearn_bench.py small)
	const want = 0.44748569
	t.Logf("diabetes: LinearRegression R² %.8f (scikit-learn %.8f)", got, want)
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("got R² %.8f, want %.8f ± 1e-6", got, want)
	}
}

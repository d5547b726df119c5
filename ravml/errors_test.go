package ravml

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

type model interface {
	Fit(ctx context.Context, X *tensor.Dense, y []float64) error
	Predict(ctx context.Context, X *tensor.Dense) ([]float64, error)
	Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error)
}

func allModels() map[string]func() model {
	return map[string]func() model{
		"KNNClassifier":          func() model { return NewKNNClassifier(3) },
		"KNNRegressor":           func() model { return NewKNNRegressor(3) },
		"GaussianNB":             func() model { return NewGaussianNB() },
		"LinearRegression":       func() model { return NewLinearRegression() },
		"KMeans":                 func() model { return NewKMeans(2) },
		"LogisticRegression":     func() model { return NewLogisticRegression() },
		"DecisionTreeClassifier": func() model { return NewDecisionTreeClassifier() },
		"DecisionTreeRegressor":  func() model { return NewDecisionTreeRegressor() },
		"MLPClassifier":          func() model { return NewMLPClassifier([]int{4}, MaxIter(2)) },
	}
}

func TestRaggedRows(t *testing.T) {
	_, err := Dense([][]float64{{1, 2}, {3}})
	var de *DataError
	if !errors.As(err, &de) || de.Row != 1 {
		t.Fatalf("got %v, want a DataError at row 1", err)
	}
	_, _, _, err = ReadCSV(strings.NewReader("a,b,label\n1,2,0\n3,0\n"))
	if !errors.Is(err, ErrData) {
		t.Fatalf("csv: got %v, want ErrData", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	good := MustDense([][]float64{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 2}, {2, 3}})
	y := []float64{0, 0, 1, 1, 1, 0}
	nan := MustDense([][]float64{{0, 0}, {0, math.NaN()}, {1, 0}, {1, 1}, {2, 2}, {2, 3}})
	inf := MustDense([][]float64{{0, 0}, {0, 1}, {1, 0}, {1, math.Inf(-1)}, {2, 2}, {2, 3}})
	for name, mk := range allModels() {
		for _, tc := range []struct {
			what string
			X    *tensor.Dense
			y    []float64
			want error
		}{
			{"NaN", nan, y, ErrData},
			{"Inf", inf, y, ErrData},
			{"short y", good, y[:3], ErrData},
		} {
			if name == "KMeans" && tc.what == "short y" {
				continue // y is not used
			}
			if err := mk().Fit(ctx, tc.X, tc.y); !errors.Is(err, tc.want) {
				t.Errorf("%s, %s: got %v, want %v", name, tc.what, err, tc.want)
			}
		}
		if _, err := mk().Predict(ctx, good); !errors.Is(err, ErrNotFitted) {
			t.Errorf("%s: predict before fit: got %v, want ErrNotFitted", name, err)
		}
		m := mk()
		if err := m.Fit(ctx, good, y); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := m.Predict(ctx, MustDense([][]float64{{1, 2, 3}})); !errors.Is(err, ErrData) {
			t.Errorf("%s: wrong width: got %v, want ErrData", name, err)
		}
		if c, ok := m.(interface{ Close() error }); ok {
			c.Close()
		}
	}
}

func TestBadLabels(t *testing.T) {
	ctx := context.Background()
	X := MustDense([][]float64{{0, 0}, {0, 1}, {1, 0}, {1, 1}})
	for name, mk := range allModels() {
		switch name {
		case "KNNRegressor", "LinearRegression", "KMeans", "DecisionTreeRegressor":
			continue
		}
		for _, y := range [][]float64{{0, 1, -1, 0}, {0, 1.5, 1, 0}} {
			err := mk().Fit(ctx, X, y)
			var de *DataError
			if !errors.As(err, &de) || de.Row < 1 {
				t.Errorf("%s, labels %v: got %v, want a DataError naming the row", name, y, err)
			}
		}
	}
}

func TestKTooLarge(t *testing.T) {
	ctx := context.Background()
	X := MustDense([][]float64{{0}, {1}, {2}})
	y := []float64{0, 1, 0}
	for _, m := range []model{NewKNNClassifier(4), NewKNNRegressor(4), NewKMeans(4), NewKNNClassifier(0), NewKMeans(0)} {
		if err := m.Fit(ctx, X, y); !errors.Is(err, ErrParam) {
			t.Errorf("%T: got %v, want ErrParam", m, err)
		}
	}
}

// TestOptionsThatDoNotApply checks that an option a model does not read
// fails its Fit with a ParamError naming the option, and that options
// every model reads (placement) and the model's own are accepted.
func TestOptionsThatDoNotApply(t *testing.T) {
	ctx := context.Background()
	X := MustDense([][]float64{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 2}, {2, 3}})
	y := []float64{0, 0, 1, 1, 1, 0}
	for _, tc := range []struct {
		name  string
		m     model
		wrong string // the option that does not apply; "" when all do
	}{
		{"KMeans+MaxDepth", NewKMeans(2, MaxDepth(3)), "MaxDepth"},
		{"GaussianNB+Seed", NewGaussianNB(Seed(3)), "Seed"},
		{"LinearRegression+C", NewLinearRegression(C(2)), "C"},
		{"LogisticRegression+NInit", NewLogisticRegression(NInit(2)), "NInit"},
		{"KNN+Tol", NewKNNClassifier(3, Tol(1e-3)), "Tol"},
		{"tree+LearnRate", NewDecisionTreeRegressor(LearnRate(0.1)), "LearnRate"},
		{"MLP+WithCriterion", NewMLPClassifier([]int{4}, MaxIter(2), WithCriterion(Entropy)), "WithCriterion"},
		{"KMeans own", NewKMeans(2, Seed(2), NInit(2), MaxIter(20), Tol(1e-6), Shards(2)), ""},
		{"KNN own", NewKNNClassifier(3, BatchRows(2), WithMetric(Euclidean), DistanceWeighted(), WithExecutors(exec.NewCPU())), ""},
		{"tree own", NewDecisionTreeClassifier(MaxDepth(3), MinSamplesSplit(2), MinSamplesLeaf(1), MaxBins(8), WithCriterion(Entropy)), ""},
		{"logreg own", NewLogisticRegression(C(2), MaxIter(50), Tol(1e-6)), ""},
		{"linreg own", NewLinearRegression(Ridge(0.1)), ""},
	} {
		err := tc.m.Fit(ctx, X, y)
		if tc.wrong == "" {
			if err != nil {
				t.Errorf("%s: Fit: %v", tc.name, err)
			}
			continue
		}
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Name != tc.wrong || !errors.Is(err, ErrParam) {
			t.Errorf("%s: got %v, want a ParamError naming %s", tc.name, err, tc.wrong)
		}
	}
}

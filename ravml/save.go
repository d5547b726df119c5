package ravml

import (
	"context"
	"encoding/gob"
	"fmt"
	"io"

	"gorgonia.org/tensor"
)

// Model is what every ravml estimator offers.
type Model interface {
	Fit(ctx context.Context, X *tensor.Dense, y []float64) error
	Predict(ctx context.Context, X *tensor.Dense) ([]float64, error)
	Score(ctx context.Context, X *tensor.Dense, y []float64) (float64, error)
}

// saveFormat is the version of the saved form.
const saveFormat = 1

// saved is the gob envelope of a fitted model.
type saved struct {
	Format int
	Kind   string

	K        int
	Metric   Metric
	Weighted bool
	Rows     int
	Cols     int
	Classes  int
	X        []float64
	Y        []float64

	Prior, Mean, Var []float64
	Coef             []float64
	Intercept        float64
	Centers          []float64
	Inertia          float64
	W                []float64
	Nodes            []savedNode
	Hidden           []int
	Layers           [][]float64
}

type savedNode struct {
	Feature   int
	Threshold float64
	Left      int
	Samples   float64
	Impurity  float64
	Value     []float64
}

// Save writes a fitted model. KNN models carry their training rows.
func Save(w io.Writer, m Model) error {
	s := saved{Format: saveFormat}
	switch m := m.(type) {
	case *KNNClassifier:
		s.Kind, s.Classes = "KNNClassifier", m.classes
		if err := m.knn.save(&s); err != nil {
			return err
		}
	case *KNNRegressor:
		s.Kind = "KNNRegressor"
		if err := m.knn.save(&s); err != nil {
			return err
		}
	case *GaussianNB:
		if m.Mean == nil {
			return notFitted("GaussianNB")
		}
		s.Kind, s.Classes, s.Cols, s.Prior, s.Mean, s.Var = "GaussianNB", m.Classes, m.Width, m.Prior, m.Mean, m.Var
	case *LinearRegression:
		if !m.fitted {
			return notFitted("LinearRegression")
		}
		s.Kind, s.Coef, s.Intercept = "LinearRegression", m.Coef, m.Intercept
	case *KMeans:
		if m.Centers == nil {
			return notFitted("KMeans")
		}
		s.Kind, s.K, s.Cols, s.Centers, s.Inertia = "KMeans", m.K, m.Width, m.Centers, m.Inertia
	case *LogisticRegression:
		if m.W == nil {
			return notFitted("LogisticRegression")
		}
		s.Kind, s.Classes, s.Cols, s.W = "LogisticRegression", m.Classes, m.Width, m.W
	case *DecisionTreeClassifier:
		s.Kind = "DecisionTreeClassifier"
		if err := m.tree.save(&s); err != nil {
			return err
		}
	case *DecisionTreeRegressor:
		s.Kind = "DecisionTreeRegressor"
		if err := m.tree.save(&s); err != nil {
			return err
		}
	case *MLPClassifier:
		if m.Weights == nil {
			return notFitted("MLPClassifier")
		}
		s.Kind, s.Classes, s.Cols, s.Hidden, s.Layers = "MLPClassifier", m.Classes, m.Width, m.Hidden, m.Weights
	default:
		return &ParamError{Name: "Save", Reason: fmt.Sprintf("unknown model type %T", m)}
	}
	if err := gob.NewEncoder(w).Encode(&s); err != nil {
		return fmt.Errorf("ravml: save: %w", err)
	}
	return nil
}

func (m *knn) save(s *saved) error {
	if m.y == nil {
		return notFitted(m.name)
	}
	s.K, s.Metric, s.Weighted = m.k, m.cfg.metric, m.cfg.weights
	s.Rows, s.Cols, s.X, s.Y = m.x.rows, m.x.cols, m.x.data, m.y
	return nil
}

func (t *tree) save(s *saved) error {
	if t.Nodes == nil {
		return notFitted(t.name)
	}
	s.Cols, s.Classes = t.Width, t.Classes
	for _, n := range t.Nodes {
		s.Nodes = append(s.Nodes, savedNode{n.Feature, n.Threshold, n.Left, n.Samples, n.Impurity, n.Value})
	}
	return nil
}

// Load reads a model written by Save. opts place the shards of a model
// that needs them (KNN) when it next predicts.
func Load(r io.Reader, opts ...Option) (Model, error) {
	var s saved
	if err := gob.NewDecoder(r).Decode(&s); err != nil {
		return nil, fmt.Errorf("ravml: load: %w", err)
	}
	if s.Format != saveFormat {
		return nil, fmt.Errorf("ravml: load: format %d, want %d", s.Format, saveFormat)
	}
	cfg := newConfig(opts)
	if err := cfg.check("Load", "BatchRows"); err != nil {
		return nil, err
	}
	bad := func(why string) error { return fmt.Errorf("ravml: load %s: %s", s.Kind, why) }
	switch s.Kind {
	case "KNNClassifier", "KNNRegressor":
		if s.Rows < 1 || s.Cols < 1 || len(s.X) != s.Rows*s.Cols || len(s.Y) != s.Rows || s.K < 1 || s.K > s.Rows {
			return nil, bad("inconsistent sizes")
		}
		cfg.metric, cfg.weights = s.Metric, s.Weighted
		fill := func(k *knn) {
			k.cfg, k.k, k.x, k.y, k.name = cfg, s.K, matrix{rows: s.Rows, cols: s.Cols, data: s.X}, s.Y, s.Kind
		}
		if s.Kind == "KNNRegressor" {
			m := &KNNRegressor{}
			fill(&m.knn)
			return m, nil
		}
		for _, v := range s.Y {
			if v < 0 || int(v) >= s.Classes {
				return nil, bad("label out of range")
			}
		}
		m := &KNNClassifier{classes: s.Classes}
		fill(&m.knn)
		return m, nil
	case "GaussianNB":
		if s.Classes < 1 || len(s.Prior) != s.Classes || len(s.Mean) != s.Classes*s.Cols || len(s.Var) != len(s.Mean) {
			return nil, bad("inconsistent sizes")
		}
		return &GaussianNB{cfg: cfg, Classes: s.Classes, Width: s.Cols, Prior: s.Prior, Mean: s.Mean, Var: s.Var}, nil
	case "LinearRegression":
		return &LinearRegression{cfg: cfg, Coef: s.Coef, Intercept: s.Intercept, fitted: true}, nil
	case "KMeans":
		if s.K < 1 || s.Cols < 1 || len(s.Centers) != s.K*s.Cols {
			return nil, bad("inconsistent sizes")
		}
		return &KMeans{cfg: cfg, K: s.K, Width: s.Cols, Centers: s.Centers, Inertia: s.Inertia}, nil
	case "LogisticRegression":
		if s.Classes < 2 || len(s.W) != (s.Cols+1)*s.Classes {
			return nil, bad("inconsistent sizes")
		}
		return &LogisticRegression{cfg: cfg, Classes: s.Classes, Width: s.Cols, W: s.W}, nil
	case "DecisionTreeClassifier", "DecisionTreeRegressor":
		t := tree{cfg: cfg, name: s.Kind, Width: s.Cols, Classes: s.Classes}
		for i, n := range s.Nodes {
			if n.Feature >= s.Cols || (n.Feature >= 0 && (n.Left <= i || n.Left+1 >= len(s.Nodes))) || len(n.Value) == 0 {
				return nil, bad(fmt.Sprintf("node %d is malformed", i))
			}
			t.Nodes = append(t.Nodes, TreeNode{Feature: n.Feature, Threshold: n.Threshold, Left: n.Left, Samples: n.Samples, Impurity: n.Impurity, Value: n.Value})
		}
		if len(t.Nodes) == 0 {
			return nil, bad("no nodes")
		}
		t.setDepths()
		if s.Kind == "DecisionTreeRegressor" {
			return &DecisionTreeRegressor{t}, nil
		}
		return &DecisionTreeClassifier{t}, nil
	case "MLPClassifier":
		in := s.Cols
		sizes := append(append([]int(nil), s.Hidden...), s.Classes)
		if len(s.Layers) != len(sizes) {
			return nil, bad("inconsistent layers")
		}
		for l, w := range s.Layers {
			if len(w) != (in+1)*sizes[l] {
				return nil, bad(fmt.Sprintf("layer %d has %d weights", l, len(w)))
			}
			in = sizes[l]
		}
		return &MLPClassifier{cfg: cfg, Hidden: s.Hidden, Classes: s.Classes, Width: s.Cols, Weights: s.Layers}, nil
	}
	return nil, fmt.Errorf("ravml: load: unknown model kind %q", s.Kind)
}

// setDepths recomputes node depths (children come after their parent).
func (t *tree) setDepths() {
	for i := range t.Nodes {
		if n := &t.Nodes[i]; n.Feature >= 0 {
			t.Nodes[n.Left].depth = n.depth + 1
			t.Nodes[n.Left+1].depth = n.depth + 1
		}
	}
}

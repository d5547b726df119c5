package ravml

import (
	"context"
	"math"
	"reflect"
	"testing"

	"github.com/rookery-ml/rookery/exec"
)

// shardCounts are the shard counts every model must agree across.
var shardCounts = []int{1, 2, 4}

func closeTo(a, b []float64, rel float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > rel*math.Max(1, math.Max(math.Abs(a[i]), math.Abs(b[i]))) {
			return false
		}
	}
	return true
}

func TestShardsKNN(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "digits")
	var want []float64
	var wantIdx []int
	for _, n := range shardCounts {
		m := NewKNNClassifier(5, Shards(n))
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		got, err := m.Predict(ctx, d.teX)
		if err != nil {
			t.Fatal(err)
		}
		idx, _, err := m.neighbours(ctx, d.teX)
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		if want == nil {
			want, wantIdx = got, idx
			continue
		}
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(idx, wantIdx) {
			t.Errorf("%d shards: predictions or neighbours differ from 1 shard", n)
		}
	}
}

func TestShardsGaussianNB(t *testing.T) {
	ctx := context.Background()
	for _, data := range []string{"iris", "digits"} {
		d := loadSplit(t, data)
		var want *GaussianNB
		var wantP []float64
		for _, n := range shardCounts {
			m := NewGaussianNB(Shards(n))
			if err := m.Fit(ctx, d.trX, d.trY); err != nil {
				t.Fatal(err)
			}
			p, err := m.Predict(ctx, d.teX)
			if err != nil {
				t.Fatal(err)
			}
			if want == nil {
				want, wantP = m, p
				continue
			}
			if !reflect.DeepEqual(p, wantP) {
				t.Errorf("%s, %d shards: predictions differ from 1 shard", data, n)
			}
			if !reflect.DeepEqual(m.Prior, want.Prior) || !closeTo(m.Mean, want.Mean, 1e-13) || !closeTo(m.Var, want.Var, 1e-12) {
				t.Errorf("%s, %d shards: parameters differ from 1 shard beyond 1e-12", data, n)
			}
		}
	}
}

func TestShardsLinearRegression(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "diabetes")
	var want *LinearRegression
	for _, n := range shardCounts {
		m := NewLinearRegression(Shards(n))
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = m
			continue
		}
		if !closeTo(m.Coef, want.Coef, 1e-9) || !closeTo([]float64{m.Intercept}, []float64{want.Intercept}, 1e-9) {
			t.Errorf("%d shards: got coefficients %v + %v, want %v + %v", n, m.Coef, m.Intercept, want.Coef, want.Intercept)
		}
	}
}

func TestShardsKMeans(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "iris")
	var want *KMeans
	for _, n := range shardCounts {
		m := NewKMeans(3, Shards(n), NInit(3))
		if err := m.Fit(ctx, d.trX, nil); err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = m
			continue
		}
		if !closeTo(m.Centers, want.Centers, 1e-9) || math.Abs(m.Inertia-want.Inertia) > 1e-9*want.Inertia {
			t.Errorf("%d shards: got inertia %v, want %v (or centres differ)", n, m.Inertia, want.Inertia)
		}
	}
}

func TestShardsLogisticRegression(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "iris")
	var want *LogisticRegression
	for _, n := range shardCounts {
		// run to convergence: a trajectory stopped by MaxIter amplifies
		// the last-bit differences of sums taken in another order
		m := NewLogisticRegression(Shards(n), MaxIter(2000), Tol(1e-9))
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = m
			continue
		}
		if !closeTo(m.W, want.W, 1e-5) {
			t.Errorf("%d shards: weights differ from 1 shard beyond 1e-5 (%d and %d iterations)", n, m.Iter, want.Iter)
		}
	}
}

func TestShardsDecisionTree(t *testing.T) {
	ctx := context.Background()
	for _, data := range []string{"iris", "digits"} {
		d := loadSplit(t, data)
		var want []TreeNode
		for _, n := range shardCounts {
			m := NewDecisionTreeClassifier(Shards(n))
			if err := m.Fit(ctx, d.trX, d.trY); err != nil {
				t.Fatal(err)
			}
			if want == nil {
				want = m.Nodes
				continue
			}
			if !reflect.DeepEqual(m.Nodes, want) {
				t.Errorf("%s, %d shards: tree differs from 1 shard", data, n)
			}
		}
	}
}

// TestOnExecutors places 3 shards on 3 explicit executors.
func TestOnExecutors(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "iris")
	m := NewKNNClassifier(5, WithExecutors(exec.NewCPU(), exec.NewCPU(), exec.NewCPU()))
	defer m.Close()
	if err := m.Fit(ctx, d.trX, d.trY); err != nil {
		t.Fatal(err)
	}
	if got := len(m.job.sessions); got != 3 {
		t.Fatalf("got %d shards, want 3", got)
	}
	acc, err := m.Score(ctx, d.teX, d.teY)
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.957 {
		t.Errorf("got accuracy %.4f, want at least 0.957", acc)
	}
}

func TestShardsMLP(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "iris")
	var want *MLPClassifier
	for _, n := range shardCounts {
		m := NewMLPClassifier([]int{16}, Shards(n), MaxIter(20), BatchRows(32))
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = m
			continue
		}
		for l := range m.Weights {
			if !closeTo(m.Weights[l], want.Weights[l], 1e-9) {
				t.Errorf("%d shards: layer %d weights differ from 1 shard beyond 1e-9", n, l)
			}
		}
	}
}

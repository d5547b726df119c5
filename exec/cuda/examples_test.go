package cuda

import (
	"context"
	"math/rand"
	"sort"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/ravdl"
)

// fitOn trains a fresh copy of the model made by build with ravdl.Fit on
// two executors (one part each) and returns the trained parameters and
// the loss history.
func fitOn(t *testing.T, build func() *ravdl.Model, inShape []int, x, y *tensor.Dense, e func() exec.Executor) (map[string]*tensor.Dense, []float64) {
	t.Helper()
	m := build()
	if err := m.Build(inShape, ravdl.Seed(1)); err != nil {
		t.Fatal(err)
	}
	h, err := m.Fit(context.Background(), x, y, ravdl.Epochs(2), ravdl.BatchSize(16), ravdl.Seed(1), ravdl.Parts(2),
		ravdl.WithExecutors(e(), e()), ravdl.WithOptimizer(ravdl.SGD(0.05, 0.9)), ravdl.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	for _, ep := range h.Epochs {
		losses = append(losses, ep.Loss)
	}
	return m.Params(), losses
}

// TestExamplesMatchCPU trains the architectures of examples/mlp and
// examples/cnn (smaller inputs) through ravdl, in two parts, once on the
// CPU executor and once on the CUDA executor's reference device, and
// requires the same losses and trained weights within 1e-5.
func TestExamplesMatchCPU(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	const n, side = 64, 12
	x := randDense(rng, tensor.Float32, 1, n, side*side)
	y := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(n))
	for i := range y.Float64s() {
		y.Float64s()[i] = float64(rng.Intn(10))
	}
	for _, tc := range []struct {
		name  string
		build func() *ravdl.Model
	}{
		{"mlp", func() *ravdl.Model {
			return ravdl.Sequential(ravdl.Dense(32), ravdl.ReLU(), ravdl.Dense(32), ravdl.ReLU(), ravdl.Dense(10))
		}},
		{"cnn", func() *ravdl.Model {
			return ravdl.Sequential(ravdl.Reshape(1, side, side),
				ravdl.Conv2D(4, 3), ravdl.ReLU(), ravdl.MaxPool2D(2),
				ravdl.Conv2D(8, 3), ravdl.ReLU(), ravdl.MaxPool2D(2),
				ravdl.Flatten(), ravdl.Dense(10))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantLoss := fitOn(t, tc.build, []int{side * side}, x, y, func() exec.Executor { return exec.NewCPU() })
			got, gotLoss := fitOn(t, tc.build, []int{side * side}, x, y, func() exec.Executor { return newReference() })
			for i := range wantLoss {
				if d := maxRelDiff(tensor.New(tensor.FromScalar(gotLoss[i])), tensor.New(tensor.FromScalar(wantLoss[i]))); d > tol {
					t.Errorf("epoch %d loss %v, CPU %v", i, gotLoss[i], wantLoss[i])
				}
			}
			var names []string
			for k := range want {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				if d := maxRelDiff(got[k], want[k]); d > tol {
					t.Errorf("%s differs from the CPU's by %.3g", k, d)
				}
			}
			t.Logf("%d parameters, losses %v (CPU %v)", len(names), gotLoss, wantLoss)
		})
	}
}

package ravdl

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
)

// The one-weight model w·x with MSE on x = (1, 2), y = (1, 3) has the loss
// ((w−1)² + (2w−3)²)/2 and the gradient g(w) = 5w − 7.
func oneWeight(t *testing.T, w0 float64) (*Model, *tensor.Dense, *tensor.Dense) {
	t.Helper()
	m := built(t, []int{1}, map[string][]float64{"0.dense/w": {w0}}, Dense(1, NoBias()))
	return m, f64([]int{2, 1}, 1, 2), f64([]int{2, 1}, 1, 3)
}

func TestOptimizerFirstSteps(t *testing.T) {
	g := func(w float64) float64 { return 5*w - 7 }
	const w0 = 0.5
	for _, tc := range []struct {
		name string
		opt  Optimizer
		want []float64 // w after steps 1, 2, 3
	}{
		// w1 = 0.5 − 0.1·(−4.5) = 0.95; w2 = 0.95 − 0.1·(−2.25) = 1.175
		{"sgd", SGD(0.1, 0), []float64{0.95, 1.175, 1.175 - 0.1*g(1.175)}},
		// v1 = −4.5, w1 = 0.95; v2 = 0.9·(−4.5) − 2.25 = −6.3, w2 = 1.58
		{"sgd momentum", SGD(0.1, 0.9), func() []float64 {
			w, v := w0, 0.0
			var out []float64
			for i := 0; i < 3; i++ {
				v = 0.9*v + g(w)
				w -= 0.1 * v
				out = append(out, w)
			}
			return out
		}()},
		// L2 λ = 0.5: g ← g + λ·w; w1 = 0.5 − 0.1·(−4.5 + 0.25) = 0.925
		{"sgd l2", SGD(0.1, 0).WithL2(0.5), func() []float64 {
			w := w0
			var out []float64
			for i := 0; i < 3; i++ {
				w -= 0.1 * (g(w) + 0.5*w)
				out = append(out, w)
			}
			return out
		}()},
		// Adam's first step moves by η·sign(g) (up to ε): w1 = 0.5 + 0.1
		{"adam", Adam(0.1), func() []float64 {
			w, m, v := w0, 0.0, 0.0
			var out []float64
			for i := 1; i <= 3; i++ {
				gi := g(w)
				m = 0.9*m + 0.1*gi
				v = 0.999*v + 0.001*gi*gi
				mh, vh := m/(1-math.Pow(0.9, float64(i))), v/(1-math.Pow(0.999, float64(i)))
				w -= 0.1 * mh / (math.Sqrt(vh) + 1e-8)
				out = append(out, w)
			}
			return out
		}()},
		// RMSProp: c1 = 0.1·20.25 = 2.025; w1 = 0.5 + 0.01·4.5/√2.025
		{"rmsprop", RMSProp(0.01), func() []float64 {
			w, c := w0, 0.0
			var out []float64
			for i := 0; i < 3; i++ {
				gi := g(w)
				c = 0.9*c + 0.1*gi*gi
				w -= 0.01 * gi / (math.Sqrt(c) + 1e-8)
				out = append(out, w)
			}
			return out
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, x, y := oneWeight(t, w0)
			var got []float64
			_, err := m.Fit(context.Background(), x, y, WithLoss(MSE()), WithOptimizer(tc.opt), Epochs(3), BatchSize(2), Quiet(),
				OnEpoch(func(Epoch) { got = append(got, m.params["0.dense/w"].Float64s()[0]) }))
			if err != nil {
				t.Fatal(err)
			}
			near(t, tc.name, got, tc.want, 1e-12)
		})
	}
}

func blobs(n, features, classes int, seed int64) (*tensor.Dense, *tensor.Dense) {
	rng := rand.New(rand.NewSource(seed))
	x := make([]float64, n*features)
	y := make([]float64, n)
	for i := 0; i < n; i++ {
		c := i % classes
		y[i] = float64(c)
		for j := 0; j < features; j++ {
			x[i*features+j] = rng.NormFloat64()
			if j%classes == c {
				x[i*features+j] += 2
			}
		}
	}
	return f64([]int{n, features}, x...), f64([]int{n}, y...)
}

func TestFitTinyReachesZeroLoss(t *testing.T) {
	x, y := blobs(8, 4, 2, 1)
	m := Sequential(Dense(16), Tanh(), Dense(2))
	h, err := m.Fit(context.Background(), x, y, Float64(), Seed(2), WithOptimizer(Adam(0.05)), Epochs(150), BatchSize(8), Quiet())
	if err != nil {
		t.Fatal(err)
	}
	last := h.Epochs[len(h.Epochs)-1]
	if !(last.Loss < 1e-3) {
		t.Fatalf("training loss after 150 steps is %v, want < 1e-3 (first %v)", last.Loss, h.Epochs[0].Loss)
	}
	loss, acc, err := m.Evaluate(context.Background(), x, y)
	if err != nil {
		t.Fatal(err)
	}
	if !(loss < 1e-3) || acc != 1 {
		t.Fatalf("evaluated loss %v, accuracy %v; want < 1e-3 and 1", loss, acc)
	}
}

func maxDiff(a, b map[string]*tensor.Dense) (string, float64) {
	worst, name := 0.0, ""
	for k, v := range a {
		for i, f := range v.Float64s() {
			if d := math.Abs(f - b[k].Float64s()[i]); d > worst || math.IsNaN(d) {
				worst, name = d, k
			}
		}
	}
	return name, worst
}

func TestFitPartsEqualOnePart(t *testing.T) {
	ctx := context.Background()
	xm, ym := blobs(64, 12, 3, 3)
	xc, yc := blobs(32, 2*6*6, 3, 4)
	for _, tc := range []struct {
		name   string
		x, y   *tensor.Dense
		parts  int
		micro  int
		layers func() []Layer
	}{
		{"mlp 2 parts", xm, ym, 2, 1, func() []Layer { return []Layer{Dense(32), ReLU(), Dense(16), Tanh(), Dense(3)} }},
		{"mlp 2 parts 2 micro-batches", xm, ym, 2, 2, func() []Layer { return []Layer{Dense(32), GELU(), Dense(16), Swish(), Dense(3)} }},
		{"cnn 3 parts", xc, yc, 3, 1, func() []Layer {
			return []Layer{Reshape(2, 6, 6), Conv2D(4, 3, SamePad()), ReLU(), MaxPool2D(2), Conv2D(4, 3, SamePad()), LeakyReLU(0.1),
				AvgPool2D(3), Flatten(), Dense(3)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []Option{Float64(), Seed(5), WithOptimizer(SGD(0.05, 0.9)), Epochs(2), BatchSize(16), Quiet()}
			one := Sequential(tc.layers()...)
			h1, err := one.Fit(ctx, tc.x, tc.y, opts...)
			if err != nil {
				t.Fatal(err)
			}
			many := Sequential(tc.layers()...)
			hk, err := many.Fit(ctx, tc.x, tc.y, append(opts, Parts(tc.parts), MicroBatches(tc.micro))...)
			if err != nil {
				t.Fatal(err)
			}
			if h1.Parts != 1 || hk.Parts != tc.parts {
				t.Fatalf("trained in %d and %d parts, want 1 and %d", h1.Parts, hk.Parts, tc.parts)
			}
			if name, d := maxDiff(one.Params(), many.Params()); d > 1e-9 {
				t.Fatalf("parameter %s differs by %.3g between 1 and %d parts", name, d, tc.parts)
			}
			if d := math.Abs(h1.Epochs[1].Loss - hk.Epochs[1].Loss); d > 1e-9 {
				t.Fatalf("epoch losses differ by %.3g", d)
			}
		})
	}
}

// TestFitReplicasEqualOne: Fit with replicas trains the model that Fit
// without them does.
func TestFitReplicasEqualOne(t *testing.T) {
	ctx := context.Background()
	x, y := blobs(64, 12, 3, 3)
	layers := func() []Layer { return []Layer{Dense(32), ReLU(), Dense(16), Tanh(), Dense(3)} }
	opts := []Option{Float64(), Seed(5), WithOptimizer(SGD(0.05, 0.9)), Epochs(2), BatchSize(16), Quiet(), Parts(2)}
	one := Sequential(layers()...)
	h1, err := one.Fit(ctx, x, y, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{2, 3} {
		many := Sequential(layers()...)
		var out bytes.Buffer
		hr, err := many.Fit(ctx, x, y, append(opts, Replicas(r), MicroBatches(2), Progress(&out))...)
		if err != nil {
			t.Fatal(err)
		}
		if h1.Replicas != 1 || hr.Replicas != r {
			t.Fatalf("trained with %d and %d replicas, want 1 and %d", h1.Replicas, hr.Replicas, r)
		}
		// In-process executors cannot join a ring: the history and the
		// progress say so, and why.
		if hr.RingParts != 0 || hr.RingError == nil || !strings.Contains(out.String(), "replicas: gradients summed through this process, not in rings: ") {
			t.Errorf("ring parts %d, ring error %v, progress %q; want none, a reason, and a note", hr.RingParts, hr.RingError, out.String())
		}
		if !(hr.ReduceShare > 0 && hr.ReduceShare < 1) || h1.ReduceShare != 0 {
			t.Errorf("reduce share %v with %d replicas and %v with one; want in (0, 1) and 0", hr.ReduceShare, r, h1.ReduceShare)
		}
		if advised := strings.Contains(out.String(), "replicas: summing their gradients took"); advised != (hr.Epochs[0].ReduceShare > 0.5) {
			t.Errorf("first epoch's reduce share %v, advice printed %v; want it printed just when the share is over a half", hr.Epochs[0].ReduceShare, advised)
		}
		for _, e := range hr.Epochs {
			if !(e.ReduceShare > 0 && e.ReduceShare < 1) {
				t.Errorf("epoch %d: reduce share %v, want in (0, 1)", e.Epoch, e.ReduceShare)
			}
		}
		if name, d := maxDiff(one.Params(), many.Params()); d > 1e-9 {
			t.Fatalf("parameter %s differs by %.3g between 1 and %d replicas", name, d, r)
		}
		if d := math.Abs(h1.Epochs[1].Loss - hr.Epochs[1].Loss); d > 1e-9 {
			t.Fatalf("epoch losses differ by %.3g", d)
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	x, y := blobs(40, 2*4*4, 3, 6)
	layers := func() []Layer {
		return []Layer{Reshape(2, 4, 4), Conv2D(3, 3, SamePad()), BatchNorm(), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.2), Dense(8), BatchNorm(), Tanh(), Dense(3)}
	}
	m := Sequential(layers()...)
	if _, err := m.Fit(ctx, x, y, Float64(), Epochs(2), BatchSize(8), Quiet()); err != nil {
		t.Fatal(err)
	}
	want, err := m.Predict(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()

	s, err := Load(bytes.NewReader(saved))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Predict(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "Load then Predict", got.Float64s(), want.Float64s(), 1e-12)

	fresh := Sequential(layers()...)
	if err := fresh.LoadWeights(bytes.NewReader(saved)); err != nil {
		t.Fatal(err)
	}
	got2, err := fresh.Predict(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "LoadWeights then Predict", got2.Float64s(), want.Float64s(), 1e-12)

	// The file is the trainer's format: rookery.Load reads it.
	if _, err := rookery.Load(bytes.NewReader(saved)); err != nil {
		t.Fatal(err)
	}
	// A model of other layers does not take the weights.
	if err := Sequential(Flatten(), Dense(3)).LoadWeights(bytes.NewReader(saved)); err == nil {
		t.Fatal("weights of another model loaded without error")
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	x, y := blobs(8, 4, 2, 1)
	m := Sequential(Dense(2))
	if _, err := m.Predict(ctx, x); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("Predict before Fit: got %v, want ErrNotBuilt", err)
	}
	if _, _, err := m.Evaluate(ctx, x, y); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("Evaluate before Fit: got %v, want ErrNotBuilt", err)
	}
	if err := m.Save(&bytes.Buffer{}); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("Save before Fit: got %v, want ErrNotBuilt", err)
	}
	bad := f64([]int{8}, 0, 1, 0, 1, 2, 0, 1, 0)
	_, err := m.Fit(ctx, x, bad, Quiet())
	var le *LabelError
	if !errors.As(err, &le) || le.Index != 4 || le.Classes != 2 {
		t.Errorf("label 2 of 2 classes: got %v, want a LabelError for sample 4", err)
	}
	if _, err := m.Fit(ctx, x, f64([]int{8}, 0, 1, 0, 1, 0.5, 0, 1, 0), Quiet()); !errors.Is(err, ErrLabel) {
		t.Errorf("label 0.5: got %v, want ErrLabel", err)
	}
	if _, err := m.Fit(ctx, x, f64([]int{4}, 0, 1, 0, 1), Quiet()); !errors.Is(err, ErrShape) {
		t.Errorf("4 labels for 8 samples: got %v, want ErrShape", err)
	}
	if _, err := m.Predict(ctx, f64([]int{2, 3}, 1, 2, 3, 4, 5, 6)); !errors.Is(err, ErrShape) {
		t.Errorf("3 features into a model of 4: got %v, want ErrShape", err)
	}
	var se *ShapeError
	err = Sequential(Dense(2)).Build([]int{1, 3, 3})
	if !errors.As(err, &se) || se.Layer != 0 || se.Kind != "dense" {
		t.Errorf("Dense on images: got %v, want a ShapeError for layer 0 (dense)", err)
	}
	if err := Sequential(Conv2D(2, 5)).Build([]int{1, 3, 3}); !errors.Is(err, ErrShape) {
		t.Errorf("5×5 kernel on 3×3 images: got %v, want ErrShape", err)
	}
	if _, err := Sequential(Dense(2)).Fit(ctx, x, y, Epochs(0), Quiet()); !errors.Is(err, ErrConfig) {
		t.Errorf("0 epochs: got %v, want ErrConfig", err)
	}
}

func TestFitRegressionAndBinary(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(9))
	// MSE: y = 2·x0 − x1 + 0.5 is learnt exactly by one Dense unit.
	xs, ys := make([]float64, 64*2), make([]float64, 64)
	for i := range ys {
		xs[2*i], xs[2*i+1] = rng.NormFloat64(), rng.NormFloat64()
		ys[i] = 2*xs[2*i] - xs[2*i+1] + 0.5
	}
	x, y := f64([]int{64, 2}, xs...), f64([]int{64}, ys...)
	lin := Sequential(Dense(1))
	if _, err := lin.Fit(ctx, x, y, Float64(), WithLoss(MSE()), WithOptimizer(SGD(0.1, 0.5)), Epochs(40), BatchSize(16), Quiet()); err != nil {
		t.Fatal(err)
	}
	loss, acc, err := lin.Evaluate(ctx, x, y, WithLoss(MSE()))
	if err != nil {
		t.Fatal(err)
	}
	if !(loss < 1e-8) || !math.IsNaN(acc) {
		t.Fatalf("MSE after training: loss %v, accuracy %v; want < 1e-8 and NaN", loss, acc)
	}
	near(t, "weights", lin.params["0.dense/w"].Float64s(), []float64{2, -1}, 1e-4)

	// Binary cross-entropy from logits: the sign of x0 + x1.
	yb := make([]float64, 64)
	for i := range yb {
		if xs[2*i]+xs[2*i+1] > 0 {
			yb[i] = 1
		}
	}
	bin := Sequential(Dense(4), Tanh(), Dense(1))
	h, err := bin.Fit(ctx, x, f64([]int{64, 1}, yb...), Float64(), WithLoss(BinaryCrossEntropy()), WithOptimizer(Adam(0.05)), Epochs(60), BatchSize(16), Quiet())
	if err != nil {
		t.Fatal(err)
	}
	loss, acc, err = bin.Evaluate(ctx, x, f64([]int{64}, yb...), WithLoss(BinaryCrossEntropy()))
	if err != nil {
		t.Fatal(err)
	}
	if !(acc >= 0.95) || !(loss < h.Epochs[0].Loss/3) {
		t.Fatalf("binary cross-entropy: accuracy %v, loss %v (first epoch %v)", acc, loss, h.Epochs[0].Loss)
	}
}

// TestFitResumes: a run stopped after its first epoch and resumed from
// its checkpoint trains the model that the uninterrupted run does,
// momentum and sample order included.
func TestFitResumes(t *testing.T) {
	ctx := context.Background()
	x, y := blobs(64, 12, 3, 3)
	layers := func() []Layer { return []Layer{Dense(32), ReLU(), Dense(16), Tanh(), Dense(3)} }
	opts := []Option{Float64(), Seed(5), WithOptimizer(SGD(0.05, 0.9)), BatchSize(16), Quiet(), Parts(2)}
	whole := Sequential(layers()...)
	if _, err := whole.Fit(ctx, x, y, append(opts, Epochs(3))...); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "run.ckpt")
	first := Sequential(layers()...)
	if _, err := first.Fit(ctx, x, y, append(opts, Epochs(1), CheckpointTo(path))...); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	resumed := Sequential(layers()...)
	h, err := resumed.Fit(ctx, x, y, append(opts, Epochs(3), ResumeFrom(bytes.NewReader(b)))...)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Epochs) != 2 || h.Epochs[0].Epoch != 2 {
		t.Fatalf("resumed run trained epochs %+v, want 2 and 3", h.Epochs)
	}
	if name, d := maxDiff(whole.Params(), resumed.Params()); d != 0 {
		t.Fatalf("parameter %s differs by %.3g from the uninterrupted run", name, d)
	}
	// A checkpoint of another batch size does not fit the graph; one of
	// other data does not end an epoch.
	_, err = Sequential(layers()...).Fit(ctx, x, y, append(opts, Epochs(1), BatchSize(8), ResumeFrom(bytes.NewReader(b)))...)
	if !errors.Is(err, rookery.ErrCheckpoint) {
		t.Fatalf("a checkpoint of another batch size: got %v, want ErrCheckpoint", err)
	}
	x48, y48 := blobs(48, 12, 3, 3)
	_, err = Sequential(layers()...).Fit(ctx, x48, y48, append(opts, Epochs(3), ResumeFrom(bytes.NewReader(b)))...)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("a checkpoint of other data: got %v, want ErrConfig", err)
	}
}

// TestFitLocalSteps: local SGD rounds on two replicas learn the blobs,
// and options that do not apply are refused.
func TestFitLocalSteps(t *testing.T) {
	x, y := blobs(256, 4, 2, 3)
	m := Sequential(Dense(16), Tanh(), Dense(2))
	// Steps that follow the replicas' measured speed would make the
	// result depend on timing: every replica takes all 4.
	h, err := m.Fit(context.Background(), x, y, Float64(), Seed(2), WithOptimizer(SGD(0.05, 0.9)), Epochs(6), BatchSize(16),
		Replicas(2), LocalSteps(4), Quiet(), TrainerOptions(rookery.WithRoundOptions(exec.WithAdaptiveSteps(false))))
	if err != nil {
		t.Fatal(err)
	}
	if h.Replicas != 2 || h.LocalSteps != 4 || h.Epochs[0].Steps != 2 {
		t.Fatalf("history: %d replicas, h = %d, %d rounds per epoch; want 2, 4, 2", h.Replicas, h.LocalSteps, h.Epochs[0].Steps)
	}
	_, acc, err := m.Evaluate(context.Background(), x, y)
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.9 {
		t.Fatalf("accuracy %v after local rounds, want ≥ 0.9 (losses %v)", acc, h.StepLoss)
	}
	for _, bad := range []Option{Parts(2), MicroBatches(2)} {
		if _, err := Sequential(Dense(2)).Fit(context.Background(), x, y, Replicas(2), LocalSteps(4), bad, Quiet()); !errors.Is(err, ErrConfig) {
			t.Errorf("got %v, want ErrConfig", err)
		}
	}
}

func TestReplicaAdvice(t *testing.T) {
	if a := replicaAdvice(0.5, 4, 256); a != "" {
		t.Errorf("share 0.5: %q, want no advice", a)
	}
	a := replicaAdvice(0.62, 4, 254)
	for _, want := range []string{"4 replicas", "62%", "about 64 rows of a batch of 254", "LocalSteps"} {
		if !strings.Contains(a, want) {
			t.Errorf("advice %q lacks %q", a, want)
		}
	}
	if s := reduceShare(exec.ReplicaStats{Compute: 3 * time.Second, Reduce: 6 * time.Second, Update: time.Second}); s != 0.6 {
		t.Errorf("reduce share %v, want 0.6", s)
	}
	if s := reduceShare(exec.ReplicaStats{}); s != 0 {
		t.Errorf("reduce share of no steps %v, want 0", s)
	}
}

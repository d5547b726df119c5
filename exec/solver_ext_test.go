package exec_test

import (
	"errors"
	"math"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// steps applies cfg n times to parameter p0 with the same gradient g at
// scale 1 and returns the parameter after each update.
func steps(t *testing.T, cfg exec.SolverConfig, p0, g []float64, n int, scale float64) [][]float64 {
	t.Helper()
	s, err := exec.NewSolver(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := tensor.New(tensor.WithShape(len(p0)), tensor.WithBacking(append([]float64{}, p0...)))
	gr := tensor.New(tensor.WithShape(len(g)), tensor.WithBacking(append([]float64{}, g...)))
	var out [][]float64
	for i := 0; i < n; i++ {
		if err := s.Update([]*tensor.Dense{p}, []*tensor.Dense{gr}, scale); err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]float64{}, p.Float64s()...))
	}
	return out
}

func closeTo(t *testing.T, what string, got, want [][]float64, tol float64) {
	t.Helper()
	for i := range want {
		for j := range want[i] {
			if math.Abs(got[i][j]-want[i][j]) > tol {
				t.Fatalf("%s: after update %d got %v, want %v", what, i+1, got[i], want[i])
			}
		}
	}
}

func TestNesterovFirstSteps(t *testing.T) {
	// v1 = g, p1 = p0 − 0.1·(g + 0.9·g) = p0 − 0.19·g
	// v2 = 1.9·g, p2 = p1 − 0.1·(g + 0.9·1.9·g) = p1 − 0.271·g
	got := steps(t, exec.Nesterov(0.1, 0.9), []float64{1, -2}, []float64{0.5, 2}, 2, 1)
	closeTo(t, "nesterov", got, [][]float64{{0.905, -2.38}, {0.7695, -2.922}}, 1e-12)

	// float32 takes the same path
	s, _ := exec.NewSolver(exec.Nesterov(0.1, 0.9), 1)
	p := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{1, -2}))
	g := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{0.5, 2}))
	for i := 0; i < 2; i++ {
		if err := s.Update([]*tensor.Dense{p}, []*tensor.Dense{g}, 1); err != nil {
			t.Fatal(err)
		}
	}
	if f := p.Float32s(); math.Abs(float64(f[0])-0.7695) > 1e-6 || math.Abs(float64(f[1])+2.922) > 1e-6 {
		t.Fatalf("nesterov float32: got %v, want [0.7695 -2.922]", f)
	}
	if s.Slots()[0] != "velocity" {
		t.Fatalf("nesterov slots %v", s.Slots())
	}
}

func TestAdamWFirstSteps(t *testing.T) {
	// With a constant gradient Adam's bias-corrected step is η·g/(|g| + ε)
	// every time; AdamW first shrinks p by (1 − η·λ).
	const lr, wd, eps = 0.1, 0.01, 1e-8
	g := []float64{0.5, 2}
	p := []float64{1, -2}
	var want [][]float64
	for i := 0; i < 2; i++ {
		for j := range p {
			p[j] *= 1 - lr*wd
			p[j] -= lr * g[j] / (math.Abs(g[j]) + eps)
		}
		want = append(want, append([]float64{}, p...))
	}
	// by hand: p1 = (0.999 − 0.1, −1.998 − 0.1) = (0.899, −2.098)
	closeTo(t, "by hand", want[:1], [][]float64{{0.899, -2.098}}, 1e-8)
	got := steps(t, exec.AdamW(lr, wd), []float64{1, -2}, g, 2, 1)
	closeTo(t, "adamw", got, want, 1e-9)

	// Adam's L2 weight decay differs: it goes into the gradient.
	l2 := exec.Adam(lr)
	l2.WeightDecay = wd
	if got := steps(t, l2, []float64{1, -2}, g, 1, 1); math.Abs(got[0][0]-0.899) < 1e-6 {
		t.Fatalf("Adam with L2 gave AdamW's update %v", got[0])
	}
}

func TestStepSchedule(t *testing.T) {
	cfg := exec.SGD(0.1, 0)
	cfg.Schedule, cfg.StepEvery, cfg.StepGamma = exec.ScheduleStep, 2, 0.5
	// rates 0.1, 0.1, 0.05, 0.05, 0.025
	got := steps(t, cfg, []float64{0}, []float64{1}, 5, 1)
	closeTo(t, "step", got, [][]float64{{-0.1}, {-0.2}, {-0.25}, {-0.3}, {-0.325}}, 1e-12)
}

func TestCosineSchedule(t *testing.T) {
	cfg := exec.SGD(0.1, 0)
	cfg.Schedule, cfg.CosineSteps = exec.ScheduleCosine, 4
	// rates 0.1, 0.1·(1+cos(π/4))/2, 0.05, 0.1·(1+cos(3π/4))/2, 0, 0
	rates := []float64{0.1, 0.1 * (1 + math.Sqrt2/2) / 2, 0.05, 0.1 * (1 - math.Sqrt2/2) / 2, 0, 0}
	for i, r := range rates {
		if got := cfg.RateAt(i + 1); math.Abs(got-r) > 1e-15 {
			t.Fatalf("rate of update %d: got %v, want %v", i+1, got, r)
		}
	}
	got := steps(t, cfg, []float64{0}, []float64{1}, 6, 1)
	var p float64
	for i, r := range rates {
		p -= r
		closeTo(t, "cosine", got[i:i+1], [][]float64{{p}}, 1e-12)
	}
	cfg.MinLearnRate = 0.02
	if got := cfg.RateAt(100); got != 0.02 {
		t.Fatalf("rate after the schedule: got %v, want 0.02", got)
	}
}

func TestClipping(t *testing.T) {
	cfg := exec.SGD(1, 0)
	cfg.ClipNorm = 1
	// g = (3, 4) has norm 5: scaled to (0.6, 0.8)
	closeTo(t, "clip norm", steps(t, cfg, []float64{0, 0}, []float64{3, 4}, 1, 1), [][]float64{{-0.6, -0.8}}, 1e-12)
	// the norm is of the mean gradient: (3, 4)·0.5 has norm 2.5, still clipped
	closeTo(t, "clip norm of the mean", steps(t, cfg, []float64{0, 0}, []float64{3, 4}, 1, 0.5), [][]float64{{-0.6, -0.8}}, 1e-12)
	// below the bound nothing changes
	closeTo(t, "small gradient", steps(t, cfg, []float64{0, 0}, []float64{0.3, 0.4}, 1, 1), [][]float64{{-0.3, -0.4}}, 1e-12)

	cfg = exec.SGD(1, 0)
	cfg.ClipValue = 1
	closeTo(t, "clip value", steps(t, cfg, []float64{0, 0}, []float64{3, -0.5}, 1, 1), [][]float64{{-1, 0.5}}, 1e-12)
}

func TestSolverExtensionsValidate(t *testing.T) {
	bad := []exec.SolverConfig{
		func() exec.SolverConfig { c := exec.SGD(0.1, 0); c.Schedule = exec.ScheduleStep; return c }(),
		func() exec.SolverConfig {
			c := exec.SGD(0.1, 0)
			c.Schedule, c.StepEvery, c.StepGamma = exec.ScheduleStep, 1, 1.5
			return c
		}(),
		func() exec.SolverConfig {
			c := exec.SGD(0.1, 0)
			c.Schedule, c.CosineSteps, c.MinLearnRate = exec.ScheduleCosine, 10, 0.5
			return c
		}(),
		func() exec.SolverConfig { c := exec.SGD(0.1, 0); c.Schedule = 9; return c }(),
		func() exec.SolverConfig { c := exec.SGD(0.1, 0); c.ClipNorm = -1; return c }(),
		func() exec.SolverConfig { c := exec.SGD(0.1, 0); c.ClipValue = math.Inf(1); return c }(),
		exec.Nesterov(0.1, 1),
		exec.AdamW(0.1, -1),
	}
	for i, c := range bad {
		if err := c.Validate(); !errors.Is(err, exec.ErrSolver) {
			t.Errorf("config %d (%+v): got %v, want ErrSolver", i, c, err)
		}
	}
	for _, c := range []exec.SolverConfig{exec.Nesterov(0.1, 0.9), exec.AdamW(0.001, 0.01)} {
		if err := c.Validate(); err != nil {
			t.Errorf("%v: %v", c.Kind, err)
		}
	}
	if exec.SolverNesterov.String() != "nesterov" || exec.SolverAdamW.String() != "adamw" || exec.ScheduleCosine.String() != "cosine" {
		t.Errorf("names: %v %v %v", exec.SolverNesterov, exec.SolverAdamW, exec.ScheduleCosine)
	}
}

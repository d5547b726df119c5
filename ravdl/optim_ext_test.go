package ravdl

import (
	"context"
	"math"
	"testing"
)

// The optimisers, schedules and clipping added to exec's solver, through
// Fit on the one-weight model (gradient g(w) = 5w − 7, w0 = 0.5).
func TestOptimizerExtensionsFirstSteps(t *testing.T) {
	g := func(w float64) float64 { return 5*w - 7 }
	const w0 = 0.5
	run3 := func(f func(i int, w float64, st *[2]float64) float64) []float64 {
		w := w0
		var st [2]float64
		var out []float64
		for i := 1; i <= 3; i++ {
			w = f(i, w, &st)
			out = append(out, w)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		opt  Optimizer
		want []float64
	}{
		// v1 = −4.5; w1 = 0.5 − 0.1·(−4.5 − 0.9·4.5) = 1.355
		{"nesterov", Nesterov(0.1, 0.9), run3(func(_ int, w float64, st *[2]float64) float64 {
			gi := g(w)
			st[0] = 0.9*st[0] + gi
			return w - 0.1*(gi+0.9*st[0])
		})},
		// w1 = 0.5·(1 − 0.1·0.1) + 0.1·4.5/(4.5 + 1e-8)
		{"adamw", AdamW(0.1, 0.1), run3(func(i int, w float64, st *[2]float64) float64 {
			gi := g(w)
			w *= 1 - 0.1*0.1
			st[0] = 0.9*st[0] + 0.1*gi
			st[1] = 0.999*st[1] + 0.001*gi*gi
			mh, vh := st[0]/(1-math.Pow(0.9, float64(i))), st[1]/(1-math.Pow(0.999, float64(i)))
			return w - 0.1*mh/(math.Sqrt(vh)+1e-8)
		})},
		// rates 0.1, 0.05, 0.025
		{"step decay", SGD(0.1, 0).WithStepDecay(1, 0.5), run3(func(i int, w float64, _ *[2]float64) float64 {
			return w - 0.1*math.Pow(0.5, float64(i-1))*g(w)
		})},
		// rates 0.1, 0.05, 0 over 2 steps
		{"cosine decay", SGD(0.1, 0).WithCosineDecay(2, 0), run3(func(i int, w float64, _ *[2]float64) float64 {
			return w - []float64{0.1, 0.05, 0}[i-1]*g(w)
		})},
		// |g| clipped to 1: w1 = 0.5 + 0.1
		{"clip norm", SGD(0.1, 0).WithClipNorm(1), run3(func(_ int, w float64, _ *[2]float64) float64 {
			return w - 0.1*math.Max(-1, math.Min(1, g(w)))
		})},
		{"clip value", SGD(0.1, 0).WithClipValue(2), run3(func(_ int, w float64, _ *[2]float64) float64 {
			return w - 0.1*math.Max(-2, math.Min(2, g(w)))
		})},
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

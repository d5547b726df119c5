package exectest

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// The models EqualsOneProcess trains, named for WithModels.
const (
	ModelMLP          = "mlp"           // MLP 784-256-10, batch 8
	ModelCNN          = "cnn"           // CNN, batch 8
	ModelResidual     = "residual"      // Residual, batch 8
	ModelBatchNormCNN = "batchnorm-cnn" // BatchNormCNN, batch 8, evaluation mode
)

// EqualOption configures EqualsOneProcess.
type EqualOption func(*equalConfig)

type equalConfig struct {
	models []string
}

// WithModels names the models to train (Model… constants), in order. By
// default: ModelMLP, ModelCNN and ModelResidual, which every executor
// running exec/plan's plans lowers; ModelBatchNormCNN holds ops that
// exec/plan does not lower.
func WithModels(names ...string) EqualOption {
	return func(c *equalConfig) { c.models = append([]string{}, names...) }
}

// equalModel is a model of the suite with the solvers it is trained with.
type equalModel struct {
	build   func(tensor.Dtype) Model
	solvers []exec.SolverConfig
}

// equalModels gives each model its solvers: every kind (SGD with
// momentum, plain SGD on a step schedule, Nesterov, Adam, AdamW,
// RMSProp; for the MLP also SGD with momentum and weight decay), at learning rates at which the loss falls but does not
// collapse towards 0 within the steps trained, where float32 cancellation
// alone would exceed a relative 1e-4.
func equalModels() map[string]equalModel {
	// Plain SGD on a step schedule: an executor may fold this update into
	// the weight-gradient product (Solver.PlainRate, the CPU executor
	// does), which the reference, updating through Solver.Update, does not.
	plain := func(lr float64) exec.SolverConfig {
		c := exec.SGD(lr, 0)
		c.Schedule, c.StepEvery, c.StepGamma = exec.ScheduleStep, 7, 0.5
		return c
	}
	// SGD with momentum and L2 weight decay folded into the gradient.
	decayed := func(lr, mu, wd float64) exec.SolverConfig {
		c := exec.SGD(lr, mu)
		c.WeightDecay = wd
		return c
	}
	small := []exec.SolverConfig{exec.SGD(0.02, 0.9), plain(0.05), exec.Nesterov(0.02, 0.9),
		exec.Adam(0.005), exec.AdamW(0.005, 0.01), exec.RMSProp(0.002)}
	return map[string]equalModel{
		ModelMLP: {func(dt tensor.Dtype) Model { return MLP(dt, 8, 784, 256, 10) },
			[]exec.SolverConfig{exec.SGD(0.02, 0.5), plain(0.05), exec.Nesterov(0.02, 0.5),
				exec.Adam(1e-5), exec.AdamW(1e-5, 0.01), exec.RMSProp(1e-5), decayed(0.02, 0.5, 1e-3)}},
		// The CNN's loss sums over the classes: its gradients are larger.
		ModelCNN: {func(dt tensor.Dtype) Model { return CNN(dt, 8) },
			[]exec.SolverConfig{exec.SGD(0.005, 0.9), plain(0.02), exec.Nesterov(0.005, 0.9),
				exec.Adam(0.002), exec.AdamW(0.002, 0.01), exec.RMSProp(0.001)}},
		ModelResidual:     {func(dt tensor.Dtype) Model { return Residual(dt, 8) }, small},
		ModelBatchNormCNN: {func(dt tensor.Dtype) Model { return BatchNormCNN(dt, 8) }, small},
	}
}

// EqualsOneProcess checks the central property of training across parts:
// training a model cut into k parts (Chunks, k = 1…4), each on an
// executor from newExecutor, driven by exec.Pipeline with M micro-batches
// (M = 1, 2, 4), gives the loss curve and the final parameters of
// training the same Gorgonia graph in one process with the same solver
// (Reference): within 1e-9 relative in float64 and 1e-4 in float32, for
// every model of WithModels and every solver kind. With -short it trains
// each model with its first solver only.
func EqualsOneProcess(t *testing.T, newExecutor func(t *testing.T) exec.Executor, opts ...EqualOption) {
	const steps = 20
	cfg := equalConfig{models: []string{ModelMLP, ModelCNN, ModelResidual}}
	for _, o := range opts {
		o(&cfg)
	}
	all := equalModels()
	for _, name := range cfg.models {
		mod, ok := all[name]
		if !ok {
			t.Fatalf("exectest: no model %q", name)
		}
		for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
			tol := 1e-9
			if dt == tensor.Float32 {
				tol = 1e-4
			}
			for si, sc := range mod.solvers {
				if testing.Short() && si > 0 {
					continue
				}
				solver := solverName(sc)
				wantLoss, wantParams := Reference(t, mod.build(dt), sc, steps, 7)
				t.Logf("%s %v %s: reference loss %.4g → %.4g", name, dt, solver, wantLoss[0], wantLoss[steps-1])
				if !(wantLoss[steps-1] < wantLoss[0]) {
					t.Errorf("%s %v %s: reference loss did not fall: %v", name, dt, solver, wantLoss)
				}
				for k := 1; k <= 4; k++ {
					for _, micro := range []int{1, 2, 4} {
						t.Run(fmt.Sprintf("%s/%v/%s/k=%d/M=%d", name, dt, solver, k, micro), func(t *testing.T) {
							gotLoss, gotParams := trainPipeline(t, mod.build(dt), newExecutor, k, micro, sc, steps, 7)
							for s := range wantLoss {
								if d := math.Abs(gotLoss[s]-wantLoss[s]) / math.Abs(wantLoss[s]); !(d <= tol) {
									t.Errorf("step %d: loss %v, want %v (rel %.3g)", s, gotLoss[s], wantLoss[s], d)
								}
							}
							for i := range wantParams {
								if d := MaxRelDiff(gotParams[i], wantParams[i]); !(d <= tol) {
									t.Errorf("parameter %d differs by %.3g relative", i, d)
								}
							}
						})
					}
				}
			}
		}
	}
}

// solverName tells the suite's solvers apart in sub-test names.
func solverName(c exec.SolverConfig) string {
	switch {
	case c.Schedule == exec.ScheduleStep:
		return fmt.Sprintf("%v-step", c.Kind)
	case c.Kind == exec.SolverSGD && c.Momentum != 0 && c.WeightDecay != 0:
		return "momentum-decay"
	case c.Kind == exec.SolverSGD && c.Momentum != 0:
		return "momentum"
	}
	return c.Kind.String()
}

// trainPipeline trains m cut into k parts (Chunks), one executor from
// newExecutor each, with micro micro-batches on the same mini-batch as
// Reference, and returns the losses and the final parameters (in m.Learn
// order).
func trainPipeline(t *testing.T, m Model, newExecutor func(t *testing.T) exec.Executor, k, micro int, cfg exec.SolverConfig, steps int, seed int64) ([]float64, []*tensor.Dense) {
	t.Helper()
	ctx := context.Background()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	execs := make([]exec.Executor, k)
	for i := range execs {
		execs[i] = newExecutor(t)
	}
	opts := []exec.PipelineOption{exec.WithMicroBatches(micro), exec.WithSolver(cfg)}
	if m.Eval {
		opts = append(opts, exec.WithEvalMode())
	}
	p, err := exec.NewPipeline(ctx, ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), Chunks(ir, k), execs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	feeds := make(map[int64]*tensor.Dense)
	for n, v := range m.Batch(rand.New(rand.NewSource(seed))) {
		feeds[int64(n.ID())] = v
	}
	var losses []float64
	for s := 0; s < steps; s++ {
		l, err := p.Step(ctx, feeds)
		if err != nil {
			t.Fatalf("step %d: %v", s, err)
		}
		losses = append(losses, l)
	}
	params, err := p.Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*tensor.Dense, len(m.Learn))
	for i, n := range m.Learn {
		out[i] = params[int64(n.ID())]
	}
	return losses, out
}

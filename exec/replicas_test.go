package exec_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
)

// replicaRun is a Replicas of a model over r×k CPU executors.
type replicaRun struct {
	m    model
	rs   *exec.Replicas
	feed map[int64]*tensor.Dense
}

func openReplicas(t testing.TB, m model, r, k, micro int, weights []float64, cfg exec.SolverConfig, execs [][]exec.Executor, extra ...exec.PipelineOption) *replicaRun {
	t.Helper()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	var data []int64
	for _, n := range m.Data {
		data = append(data, int64(n.ID()))
	}
	if execs == nil {
		execs = make([][]exec.Executor, r)
		for i := range execs {
			for range k {
				execs[i] = append(execs[i], exec.NewCPU())
			}
		}
	}
	opts := []exec.PipelineOption{exec.WithMicroBatches(micro), exec.WithSolver(cfg)}
	if weights != nil {
		opts = append(opts, exec.WithRowWeights(weights...))
	}
	if m.Eval {
		opts = append(opts, exec.WithEvalMode())
	}
	opts = append(opts, extra...)
	rs, err := exec.NewReplicas(context.Background(), ir, int64(m.Loss.ID()), data, chunks(ir, k), execs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return &replicaRun{m: m, rs: rs}
}

// train is exectest.TrainReplicas on the run's model.
func (rr *replicaRun) train(t testing.TB, steps int, seed int64) ([]float64, []*tensor.Dense) {
	t.Helper()
	return exectest.TrainReplicas(t, rr.m, rr.rs, steps, seed)
}

func requireClose(t *testing.T, tol float64, gotLoss, wantLoss []float64, gotParams, wantParams []*tensor.Dense) {
	t.Helper()
	for s := range wantLoss {
		if d := math.Abs(gotLoss[s]-wantLoss[s]) / math.Abs(wantLoss[s]); d > tol {
			t.Errorf("step %d: loss %v, want %v (rel %.3g)", s, gotLoss[s], wantLoss[s], d)
		}
	}
	for i := range wantParams {
		if d := maxRelDiff(gotParams[i], wantParams[i]); d > tol {
			t.Errorf("parameter %d differs by %.3g relative", i, d)
		}
	}
}

// TestReplicasEqualOneProcess: r replicas of a k-part pipeline with M
// micro-batches, rows split equally or by uneven weights, train the model
// as one process does on the whole mini-batch, and the replicas agree to
// the bit after every step.
func TestReplicasEqualOneProcess(t *testing.T) {
	const steps, batch = 4, 24
	builders := []struct {
		name  string
		build func(tensor.Dtype) model
		cfg   exec.SolverConfig
	}{
		{"mlp", func(dt tensor.Dtype) model { return mlpModel(dt, batch, 20, 16, 10) }, exec.SGD(0.05, 0.9)},
		{"cnn", func(dt tensor.Dtype) model { return cnnModel(dt, batch) }, exec.Adam(0.005)},
		{"residual", func(dt tensor.Dtype) model { return residualModel(dt, batch) }, exec.SGD(0.02, 0.9)},
	}
	uneven := []float64{1, 2.5, 0.7, 4}
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		tol := 1e-9
		if dt == tensor.Float32 {
			tol = 1e-4
		}
		for _, b := range builders {
			wantLoss, wantParams := reference(t, b.build(dt), b.cfg, steps, 7)
			for r := 1; r <= 4; r++ {
				for k := 1; k <= 3; k++ {
					for _, micro := range []int{1, 2, 4} {
						for _, w := range [][]float64{nil, uneven[:r]} {
							if dt == tensor.Float32 && (w != nil || micro == 2) {
								continue // float32 runs a part of the matrix
							}
							name := fmt.Sprintf("%s/%v/r=%d/k=%d/M=%d/weighted=%v", b.name, dt, r, k, micro, w != nil)
							t.Run(name, func(t *testing.T) {
								rr := openReplicas(t, b.build(dt), r, k, micro, w, b.cfg, nil)
								gotLoss, gotParams := rr.train(t, steps, 7)
								requireClose(t, tol, gotLoss, wantLoss, gotParams, wantParams)
							})
						}
					}
				}
			}
		}
	}
}

func TestSplitRows(t *testing.T) {
	for _, tc := range []struct {
		batch, micro int
		weights      []float64
		want         []int
	}{
		{8, 1, []float64{1}, []int{8}},
		{8, 1, []float64{1, 1}, []int{4, 4}},
		{24, 4, []float64{1, 2.5, 0.7, 4}, []int{4, 8, 4, 8}},
		{10, 1, []float64{1, 1, 1}, []int{4, 3, 3}},
		{256, 8, []float64{2, 1}, []int{168, 88}},
		// a replica whose share rounds to nothing still takes one unit
		{4, 1, []float64{100, 1, 1, 1}, []int{1, 1, 1, 1}},
		{8, 2, []float64{100, 1}, []int{6, 2}},
	} {
		got, err := exec.SplitRows(tc.batch, tc.micro, tc.weights)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("SplitRows(%d, %d, %v) = %v, %v; want %v", tc.batch, tc.micro, tc.weights, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		batch, micro int
		weights      []float64
	}{
		{8, 3, []float64{1}},
		{8, 4, []float64{1, 1, 1}},
		{8, 1, nil},
		{8, 1, []float64{1, 0}},
		{8, 1, []float64{1, math.Inf(1)}},
		{8, 1, []float64{math.NaN()}},
	} {
		if _, err := exec.SplitRows(tc.batch, tc.micro, tc.weights); !errors.Is(err, exec.ErrSpec) {
			t.Errorf("SplitRows(%d, %d, %v): got %v, want ErrSpec", tc.batch, tc.micro, tc.weights, err)
		}
	}
}

// TestReplicasEvaluate: the loss of a mini-batch evaluated across
// replicas is the loss of the whole mini-batch, and nothing is stepped.
func TestReplicasEvaluate(t *testing.T) {
	m := mlpModel(tensor.Float64, 12, 6, 5, 3)
	wantLoss, _ := reference(t, mlpModel(tensor.Float64, 12, 6, 5, 3), exec.SGD(0.1, 0), 1, 3)
	rr := openReplicas(t, m, 3, 2, 2, []float64{1, 2, 3}, exec.SGD(0.1, 0), nil)
	feeds := make(map[int64]*tensor.Dense)
	for n, v := range m.Batch(rand.New(rand.NewSource(3))) {
		feeds[int64(n.ID())] = v
	}
	for range 2 {
		l, err := rr.rs.Evaluate(context.Background(), feeds)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(l-wantLoss[0]) > 1e-12*math.Abs(wantLoss[0]) {
			t.Fatalf("loss %v, want %v", l, wantLoss[0])
		}
	}
	if got := rr.rs.Rows(); !slices.Equal(got, []int{2, 4, 6}) {
		t.Errorf("rows %v, want [2 4 6]", got)
	}
	if _, err := rr.rs.Step(context.Background(), map[int64]*tensor.Dense{}); !errors.Is(err, exec.ErrFeed) {
		t.Errorf("step without feeds: got %v, want ErrFeed", err)
	}
	// A bad feed is refused before any replica runs, so the replicas can
	// still train.
	if _, err := rr.rs.Step(context.Background(), feeds); err != nil {
		t.Fatal(err)
	}
	if st := rr.rs.Stats(); st.Steps != 1 || st.Reduce <= 0 {
		t.Errorf("stats %+v, want 1 step with a reduce time", st)
	}
}

// BenchmarkReplicasReduce measures the reduction of the 784-1024-1024-10
// float32 MLP at batch 256 across r in-process replicas (one part each):
// reduce-ms/step is the time spent summing the gradients, step-ms the
// whole step.
func BenchmarkReplicasReduce(b *testing.B) {
	for _, r := range []int{2, 4} {
		b.Run(fmt.Sprintf("r=%d", r), func(b *testing.B) {
			m := mlpModel(tensor.Float32, 256, 784, 1024, 1024, 10)
			rr := openReplicas(b, m, r, 1, 1, nil, exec.SGD(0.01, 0.9), nil)
			feeds := make(map[int64]*tensor.Dense)
			for n, v := range m.Batch(rand.New(rand.NewSource(1))) {
				feeds[int64(n.ID())] = v
			}
			if _, err := rr.rs.Step(context.Background(), feeds); err != nil {
				b.Fatal(err)
			}
			before := rr.rs.Stats()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := rr.rs.Step(context.Background(), feeds); err != nil {
					b.Fatal(err)
				}
			}
			st := rr.rs.Stats()
			n := float64(st.Steps - before.Steps)
			b.ReportMetric((st.Reduce-before.Reduce).Seconds()*1000/n, "reduce-ms/step")
			b.ReportMetric((st.Compute+st.Reduce+st.Update-before.Compute-before.Reduce-before.Update).Seconds()*1000/n, "step-ms")
		})
	}
}

func TestReplicaShares(t *testing.T) {
	part, rows, err := exec.ReplicaShares([]float64{2, 4, 1, 2}, 2)
	if err != nil || !slices.Equal(part, []float64{1.5, 3}) || math.Abs(rows[0]-4.0/3) > 1e-15 || math.Abs(rows[1]-2.0/3) > 1e-15 {
		t.Errorf("ReplicaShares = %v, %v, %v; want [1.5 3], [4/3 2/3]", part, rows, err)
	}
	for _, caps := range [][]float64{{1, 2, 3}, {}, {1, 0}, {1, math.Inf(1)}} {
		if _, _, err := exec.ReplicaShares(caps, 2); !errors.Is(err, exec.ErrSpec) {
			t.Errorf("ReplicaShares(%v, 2): got %v, want ErrSpec", caps, err)
		}
	}
}

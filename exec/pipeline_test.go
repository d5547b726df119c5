package exec_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/partition"
)

// TestPipelineEqualsOneProcess is the central property: training across k
// parts with M micro-batches gives the loss curve and the parameters of
// training the same graph in one process with the same solver, for every
// model of the suite, the one with BatchNorm and Dropout included.
func TestPipelineEqualsOneProcess(t *testing.T) {
	exectest.EqualsOneProcess(t, func(*testing.T) exec.Executor { return exec.NewCPU() }, exectest.WithModels(
		exectest.ModelMLP, exectest.ModelCNN, exectest.ModelResidual, exectest.ModelBatchNormCNN))
}

// TestPipelineSharedParameters puts every learnable parameter in the first
// part, so that the other parts receive them as inputs and send their
// gradients back.
func TestPipelineSharedParameters(t *testing.T) {
	const steps = 10
	for _, micro := range []int{1, 2} {
		m := residualModel(tensor.Float64, 8)
		cfg := exec.Adam(0.005)
		wantLoss, wantParams := reference(t, m, cfg, steps, 3)
		m = residualModel(tensor.Float64, 8)
		ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
		if err != nil {
			t.Fatal(err)
		}
		parts := chunks(ir, 3)
		for p := range parts { // move the learnables to part 0
			var kept []int64
			for _, id := range parts[p] {
				if n, _ := ir.Node(id); n.Role == graph.RoleLearnable {
					if p != 0 {
						parts[0] = append(parts[0], id)
					}
					if p == 0 {
						kept = append(kept, id)
					}
					continue
				}
				kept = append(kept, id)
			}
			parts[p] = kept
		}
		ctx := context.Background()
		execs := []exec.Executor{exec.NewCPU(), exec.NewCPU(), exec.NewCPU()}
		p, err := exec.NewPipeline(ctx, ir, int64(m.Loss.ID()), []int64{int64(m.Data[0].ID()), int64(m.Data[1].ID())}, parts, execs,
			exec.WithMicroBatches(micro), exec.WithSolver(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Layout().Specs[0].Outputs) == 0 {
			t.Fatal("part 0 sends nothing")
		}
		batch := m.Batch(rand.New(rand.NewSource(3)))
		feeds := map[int64]*tensor.Dense{}
		for n, v := range batch {
			feeds[int64(n.ID())] = v
		}
		for s := 0; s < steps; s++ {
			l, err := p.Step(ctx, feeds)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(l-wantLoss[s]) / math.Abs(wantLoss[s]); d > 1e-9 {
				t.Errorf("M=%d step %d: loss %v, want %v", micro, s, l, wantLoss[s])
			}
		}
		params, err := p.Params(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range m.Learn {
			if d := maxRelDiff(params[int64(n.ID())], wantParams[i]); d > 1e-9 {
				t.Errorf("M=%d parameter %s differs by %.3g", micro, n.Name(), d)
			}
		}
		p.Close()
	}
}

// TestPipelineWithPartitionPlans runs the plans of partition.Split (which
// may cut anywhere, shared parameters included) against the one-process
// reference.
func TestPipelineWithPartitionPlans(t *testing.T) {
	const steps = 10
	for _, tc := range []struct {
		name  string
		build func() model
	}{
		{"mlp", func() model { return mlpModel(tensor.Float64, 8, 64, 32, 10) }},
		{"cnn", func() model { return cnnModel(tensor.Float64, 8) }},
		{"residual", func() model { return residualModel(tensor.Float64, 8) }},
	} {
		cfg := exec.Adam(0.005)
		wantLoss, wantParams := reference(t, tc.build(), cfg, steps, 11)
		for _, k := range []int{2, 3, 4} {
			for _, micro := range []int{1, 4} {
				t.Run(fmt.Sprintf("%s/k=%d/M=%d", tc.name, k, micro), func(t *testing.T) {
					m := tc.build()
					ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
					if err != nil {
						t.Fatal(err)
					}
					plan, err := partition.Split(ir, k, partition.WithMaxImbalance(3))
					if err != nil { // the inputs are fixed: every case has a plan
						t.Fatalf("partition.Split: %v", err)
					}
					parts := make([][]int64, len(plan.Parts))
					for i, p := range plan.Parts {
						parts[i] = p.Nodes
					}
					execs := make([]exec.Executor, k)
					for i := range execs {
						execs[i] = exec.NewCPU()
					}
					opts := []exec.PipelineOption{exec.WithMicroBatches(micro), exec.WithSolver(cfg)}
					if m.Eval {
						opts = append(opts, exec.WithEvalMode())
					}
					ctx := context.Background()
					p, err := exec.NewPipeline(ctx, ir, int64(m.Loss.ID()), []int64{int64(m.Data[0].ID()), int64(m.Data[1].ID())}, parts, execs, opts...)
					if err != nil {
						t.Fatal(err)
					}
					defer p.Close()
					feeds := map[int64]*tensor.Dense{}
					for n, v := range m.Batch(rand.New(rand.NewSource(11))) {
						feeds[int64(n.ID())] = v
					}
					for s := 0; s < steps; s++ {
						l, err := p.Step(ctx, feeds)
						if err != nil {
							t.Fatal(err)
						}
						if d := math.Abs(l-wantLoss[s]) / math.Abs(wantLoss[s]); d > 1e-9 {
							t.Errorf("step %d: loss %v, want %v", s, l, wantLoss[s])
						}
					}
					params, err := p.Params(ctx)
					if err != nil {
						t.Fatal(err)
					}
					for i, n := range m.Learn {
						if d := maxRelDiff(params[int64(n.ID())], wantParams[i]); d > 1e-9 {
							t.Errorf("parameter %s differs by %.3g", n.Name(), d)
						}
					}
				})
			}
		}
	}
}

func TestPipelineErrors(t *testing.T) {
	ctx := context.Background()
	m := residualModel(tensor.Float64, 8)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	loss := int64(m.Loss.ID())
	data := []int64{int64(m.Data[0].ID()), int64(m.Data[1].ID())}
	two := chunks(ir, 2)
	cpu := func(k int) []exec.Executor {
		e := make([]exec.Executor, k)
		for i := range e {
			e[i] = exec.NewCPU()
		}
		return e
	}
	// Swapping the two halves of a chain of parts makes a cycle.
	var ops []int64
	for _, n := range ir.Nodes() {
		if n.Role == graph.RoleOp || n.Role == graph.RoleLearnable {
			ops = append(ops, n.ID)
		}
	}
	cyclic := [][]int64{{}, {}}
	for i, id := range ops {
		cyclic[i%2] = append(cyclic[i%2], id)
	}
	for _, tc := range []struct {
		name  string
		parts [][]int64
		execs []exec.Executor
		data  []int64
		opts  []exec.PipelineOption
	}{
		{"executors", two, cpu(3), data, nil},
		{"node twice", [][]int64{two[0], append(append([]int64{}, two[1]...), two[0][0])}, cpu(2), data, nil},
		{"node missing", [][]int64{two[0], two[1][1:]}, cpu(2), data, nil},
		{"input not fed", two, cpu(2), data[:1], nil},
		{"micro-batches", two, cpu(2), data, []exec.PipelineOption{exec.WithMicroBatches(3)}},
		{"cycle", cyclic, cpu(2), data, nil},
		{"solver", two, cpu(2), data, []exec.PipelineOption{exec.WithSolver(exec.SGD(-1, 0))}},
	} {
		p, err := exec.NewPipeline(ctx, ir, loss, tc.data, tc.parts, tc.execs, tc.opts...)
		if err == nil {
			p.Close()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !errors.Is(err, exec.ErrSpec) && !errors.Is(err, exec.ErrSolver) {
			t.Errorf("%s: got %v, want ErrSpec", tc.name, err)
		}
	}
	p, err := exec.NewPipeline(ctx, ir, loss, data, two, cpu(2))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	feeds := map[int64]*tensor.Dense{}
	for n, v := range m.Batch(rand.New(rand.NewSource(1))) {
		feeds[int64(n.ID())] = v
	}
	bad := map[int64]*tensor.Dense{data[0]: feeds[data[0]], data[1]: tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(7, 3))}
	var fe *exec.FeedError
	if _, err := p.Step(ctx, bad); !errors.As(err, &fe) || fe.Node != data[1] {
		t.Errorf("bad label shape: got %v, want a *FeedError for node %d", err, data[1])
	}
	if _, err := p.Step(ctx, map[int64]*tensor.Dense{data[0]: feeds[data[0]]}); !errors.Is(err, exec.ErrFeed) {
		t.Errorf("missing labels: got %v, want ErrFeed", err)
	}
	if _, err := p.Step(ctx, feeds); err != nil {
		t.Fatalf("a good step after bad ones: %v", err)
	}
	p.Close()
	if _, err := p.Step(ctx, feeds); !errors.Is(err, exec.ErrClosed) {
		t.Errorf("step after close: got %v, want ErrClosed", err)
	}
}

// TestPipelineDAGPlan cuts the residual model so that the graph of parts
// is a DAG, not a chain: part 0 computes the first branch, which both
// part 1 (the skip connection) and part 2 (the Concat) consume, so its
// gradient arrives from two parts and is summed.
func TestPipelineDAGPlan(t *testing.T) {
	const steps = 10
	cfg := exec.RMSProp(0.002)
	wantLoss, wantParams := reference(t, residualModel(tensor.Float64, 8), cfg, steps, 5)
	for _, micro := range []int{1, 2, 4} {
		m := residualModel(tensor.Float64, 8)
		ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
		if err != nil {
			t.Fatal(err)
		}
		parts := make([][]int64, 3)
		stage := 0
		for _, n := range ir.Nodes() {
			if n.Role != graph.RoleOp {
				continue
			}
			if n.Op.Kind == graph.KindConcat {
				stage = 2
			}
			parts[stage] = append(parts[stage], n.ID)
			if n.Op.Kind == graph.KindTanh && stage == 0 {
				stage = 1
			}
		}
		owner := map[int64]int{}
		for p, ids := range parts {
			for _, id := range ids {
				owner[id] = p
			}
		}
		for _, id := range ir.Learnables() {
			p := owner[ir.Consumers(id)[0]]
			parts[p] = append(parts[p], id)
		}
		ctx := context.Background()
		p, err := exec.NewPipeline(ctx, ir, int64(m.Loss.ID()), []int64{int64(m.Data[0].ID()), int64(m.Data[1].ID())}, parts,
			[]exec.Executor{exec.NewCPU(), exec.NewCPU(), exec.NewCPU()}, exec.WithMicroBatches(micro), exec.WithSolver(cfg))
		if err != nil {
			t.Fatal(err)
		}
		lay := p.Layout()
		if fmt.Sprint(lay.Succ) != "[[1 2] [2] []]" {
			t.Fatalf("graph of parts %v, want [[1 2] [2] []]", lay.Succ)
		}
		shared := 0
		for _, cs := range lay.Consumers {
			if len(cs) > 1 {
				shared++
			}
		}
		if shared == 0 {
			t.Fatal("no value goes to two parts")
		}
		feeds := map[int64]*tensor.Dense{}
		for n, v := range m.Batch(rand.New(rand.NewSource(5))) {
			feeds[int64(n.ID())] = v
		}
		for s := 0; s < steps; s++ {
			l, err := p.Step(ctx, feeds)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(l-wantLoss[s]) / math.Abs(wantLoss[s]); d > 1e-9 {
				t.Errorf("M=%d step %d: loss %v, want %v", micro, s, l, wantLoss[s])
			}
		}
		params, err := p.Params(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range m.Learn {
			if d := maxRelDiff(params[int64(n.ID())], wantParams[i]); d > 1e-9 {
				t.Errorf("M=%d parameter %s differs by %.3g", micro, n.Name(), d)
			}
		}
		p.Close()
	}
}

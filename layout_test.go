package rookery_test

import (
	"context"
	"slices"
	"testing"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
)

// TestTrainerAutoLayout: with WithAutoLayout and no k or r, the trainer
// runs the layout partition.ChooseLayout picks, and trains the model one
// pipeline does; with WithReplicas or WithParts it does not choose.
func TestTrainerAutoLayout(t *testing.T) {
	const steps = 4
	want := reference(t, 8, 6, 10, 3, steps)
	cpus := func(n int) []exec.Executor {
		var out []exec.Executor
		for range n {
			out = append(out, exec.NewCPU())
		}
		return out
	}
	free := rookery.WithAutoLayout(partition.WithLink(1e18, 0), partition.WithRequester(1e18), partition.WithStepOverhead(0))
	for _, tc := range []struct {
		name string
		opts []rookery.Option
		k, r int
		rows []int
	}{
		// Links and a requester that cost nothing: every executor a replica.
		{"free links", []rookery.Option{free}, 1, 4, []int{2, 2, 2, 2}},
		// A tiny model over default links: the sum of the gradients costs
		// more than the rows it saves, so one executor of the four.
		{"default links", []rookery.Option{rookery.WithAutoLayout()}, 1, 1, []int{8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := newMLP(8, 6, 10, 3)
			opts := append([]rookery.Option{rookery.WithMicroBatches(2), rookery.WithSolver(exec.Adam(0.02)),
				rookery.WithPartitionOptions(partition.WithMaxImbalance(2)), rookery.WithExecutors(cpus(4)...)}, tc.opts...)
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			l := tr.Layout()
			if l == nil {
				t.Fatal("no layout chosen")
			}
			for _, c := range l.Candidates {
				t.Logf("k=%d r=%d step %.3gs %v", c.K, c.R, c.Step, c.Err)
			}
			if c := l.Chosen(); c.K != tc.k || c.R != tc.r || tr.Plan().K() != tc.k || len(tr.Replicas().Pipelines()) != tc.r {
				t.Errorf("chose k=%d r=%d, runs k=%d r=%d; want k=%d r=%d", c.K, c.R, tr.Plan().K(), len(tr.Replicas().Pipelines()), tc.k, tc.r)
			}
			if got := tr.Replicas().Rows(); !slices.Equal(got, tc.rows) {
				t.Errorf("rows %v, want %v", got, tc.rows)
			}
			trainSteps(t, tr, m, steps)
			requireReplicasAgree(t, tr)
			if d := maxAbsDiff(params(t, tr, m), want); d > 1e-9 {
				t.Errorf("parameters differ from one pipeline's by %g", d)
			}
		})
	}
	m := newMLP(8, 6, 10, 3)
	tr, err := rookery.NewTrainer(context.Background(), m.g, m.loss, m.learn, inputsOf(m), free, rookery.WithReplicas(2), rookery.WithExecutors(cpus(4)...))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Layout() != nil || tr.Plan().K() != 2 || len(tr.Replicas().Pipelines()) != 2 {
		t.Errorf("WithReplicas(2) on 4 executors: layout %v, k=%d, r=%d; want no layout, k=2, r=2", tr.Layout(), tr.Plan().K(), len(tr.Replicas().Pipelines()))
	}
}

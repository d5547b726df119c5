package rookery_test

import (
	"bytes"
	"context"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/exec/guard/guardtest"
)

// requireReplicasAgree fails unless every replica of tr holds replica 0's
// parameters to the bit.
func requireReplicasAgree(t *testing.T, tr *rookery.Trainer) {
	t.Helper()
	ctx := context.Background()
	pipes := tr.Replicas().Pipelines()
	want, err := pipes[0].Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pipes[1:] {
		got, err := p.Params(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for id, v := range got {
			if !slices.EqualFunc(v.Float64s(), want[id].Float64s(), func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }) {
				t.Fatalf("replica %d's parameter %d differs from replica 0's", i+1, id)
			}
		}
	}
}

// TestTrainerReplicas: a trainer with replicas trains the model that one
// without does, its replicas agree, and a checkpoint of it resumes.
func TestTrainerReplicas(t *testing.T) {
	const steps, s = 6, 3
	want := reference(t, 8, 6, 10, 3, steps)
	cpus := func(n int) []exec.Executor {
		var out []exec.Executor
		for range n {
			out = append(out, exec.NewCPU())
		}
		return out
	}
	for _, tc := range []struct {
		name string
		opts []rookery.Option
		rows []int
	}{
		{"equal", []rookery.Option{rookery.WithReplicas(2)}, []int{4, 4}},
		{"weighted", []rookery.Option{rookery.WithReplicas(2, 1, 3)}, []int{2, 6}},
		{"executors", []rookery.Option{rookery.WithReplicas(3, 1, 1, 2), rookery.WithExecutors(cpus(6)...)}, []int{2, 2, 4}},
		// Rows move after every step that the measured speeds (real
		// time, so not the same in every run) call for; the model may not.
		{"rebalanced", []rookery.Option{rookery.WithReplicas(2), rookery.WithRebalance(1, 0)}, []int{4, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := newMLP(8, 6, 10, 3)
			opts := append(guardOpts(), tc.opts...)
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if got := tr.Replicas().Rows(); !slices.Equal(got, tc.rows) {
				t.Errorf("rows %v, want %v", got, tc.rows)
			}
			trainSteps(t, tr, m, s)
			requireReplicasAgree(t, tr)
			var ck bytes.Buffer
			if err := tr.Checkpoint(ctx, &ck); err != nil {
				t.Fatal(err)
			}
			trainSteps(t, tr, m, steps-s)
			requireReplicasAgree(t, tr)
			t.Logf("rows %v after %d rebalances", tr.Replicas().Rows(), tr.Replicas().Stats().Rebalances)
			if d := maxAbsDiff(params(t, tr, m), want); d > 1e-9 {
				t.Errorf("parameters differ from one pipeline's by %g", d)
			}
			// Resume from the checkpoint on fresh replicas.
			m2 := newMLP(8, 6, 10, 3)
			tr2, err := rookery.NewTrainer(ctx, m2.g, m2.loss, m2.learn, inputsOf(m2),
				append(guardOpts(), rookery.WithReplicas(2), rookery.WithCheckpoint(bytes.NewReader(ck.Bytes())))...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr2.Close()
			trainSteps(t, tr2, m2, steps-s)
			requireReplicasAgree(t, tr2)
			if d := maxAbsDiff(params(t, tr2, m2), want); d > 1e-9 {
				t.Errorf("resumed run differs by %g", d)
			}
		})
	}
}

// TestTrainerReplicasSurviveDeath: one provider of a replica dies while
// training; the guard rebuilds its part on a spare, and the run ends with
// the fault-free model, its replicas in agreement. With redundancy 2 a
// lying provider is outvoted the same way.
func TestTrainerReplicasSurviveDeath(t *testing.T) {
	const steps = 8
	want := reference(t, 8, 6, 10, 3, steps)
	for _, tc := range []struct {
		name   string
		victim func(exec.Executor) exec.Executor
		extra  []rookery.Option
	}{
		{"dies", func(e exec.Executor) exec.Executor { return guardtest.Dying("victim", e, 9) }, nil},
		{"lies", func(e exec.Executor) exec.Executor { return guardtest.Liar("victim", e, guardtest.Noise, 9, 1) },
			[]rookery.Option{rookery.WithRedundancy(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			// the victim runs part 0 of replica 1, the part with the
			// parameters, so its rebuild replays the summed gradients
			execs := []exec.Executor{exec.NewCPU(), exec.NewCPU(), tc.victim(exec.NewCPU()), exec.NewCPU()}
			var spares []exec.Executor
			for range 6 { // with redundancy 2, four of them run the parts
				spares = append(spares, exec.NewCPU())
			}
			var mu sync.Mutex
			var replaced int
			m := newMLP(8, 6, 10, 3)
			opts := append(guardOpts(), rookery.WithReplicas(2, 1, 3), rookery.WithExecutors(execs...), rookery.WithSpares(spares...),
				rookery.WithSnapshotEvery(3), rookery.WithEvents(func(e guard.Event) {
					if e.Kind == guard.EventReplaced {
						mu.Lock()
						replaced++
						mu.Unlock()
					}
				}))
			opts = append(opts, tc.extra...)
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			trainSteps(t, tr, m, steps)
			requireReplicasAgree(t, tr)
			if d := maxAbsDiff(params(t, tr, m), want); d > 1e-9 {
				t.Errorf("parameters differ from the fault-free run by %g", d)
			}
			mu.Lock()
			defer mu.Unlock()
			if replaced == 0 {
				t.Error("the victim was never replaced")
			}
		})
	}
}

// TestTrainerReplicasRing: replicas on providers sum their gradients in
// rings between the providers (every part that has parameters; the rings
// shard the update), and train the model one pipeline does, with rows
// rebalanced too; a checkpoint taken between steps holds the whole solver
// state, so a run resumed from it in process ends the same. With
// exec.ReduceRequester they sum through the trainer.
func TestTrainerReplicasRing(t *testing.T) {
	const steps, s = 6, 3
	want := reference(t, 8, 6, 10, 3, steps)
	for _, tc := range []struct {
		name string
		opts []rookery.Option
		ring bool
	}{
		{"ring", nil, true},
		{"ring rebalanced", []rookery.Option{rookery.WithRebalance(1, 0)}, true},
		{"requester", []rookery.Option{rookery.WithReduction(exec.ReduceRequester)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var execs []exec.Executor
			for range 4 {
				_, c := serveLoopback(t, exec.NewCPU())
				execs = append(execs, c)
			}
			ctx := context.Background()
			m := newMLP(8, 6, 10, 3)
			opts := append(append(guardOpts(), rookery.WithReplicas(2), rookery.WithExecutors(execs...)), tc.opts...)
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			trainSteps(t, tr, m, s)
			var ck bytes.Buffer
			if err := tr.Checkpoint(ctx, &ck); err != nil {
				t.Fatal(err)
			}
			trainSteps(t, tr, m, steps-s)
			requireReplicasAgree(t, tr)
			if d := maxAbsDiff(params(t, tr, m), want); d > 1e-9 {
				t.Errorf("parameters differ from one pipeline's by %g", d)
			}
			st, why := tr.Replicas().Stats(), tr.Replicas().RingError()
			if ring := st.RingParts > 0 && st.ShardedParts == st.RingParts && st.RingBytes > 0 && why == nil; ring != tc.ring {
				t.Errorf("%d parts summed in rings, %d sharded (%d bytes; ring error %v), want rings: %v", st.RingParts, st.ShardedParts, st.RingBytes, why, tc.ring)
			}
			// Resume in process from the checkpoint.
			m2 := newMLP(8, 6, 10, 3)
			tr2, err := rookery.NewTrainer(ctx, m2.g, m2.loss, m2.learn, inputsOf(m2),
				append(guardOpts(), rookery.WithCheckpoint(bytes.NewReader(ck.Bytes())))...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr2.Close()
			trainSteps(t, tr2, m2, steps-s)
			if d := maxAbsDiff(params(t, tr2, m2), want); d > 1e-9 {
				t.Errorf("run resumed from the checkpoint differs by %g", d)
			}
		})
	}
}

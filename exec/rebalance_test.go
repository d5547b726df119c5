package exec_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// fakeClocks is one fake clock per replica; slow executors advance them.
type fakeClocks struct {
	mu  sync.Mutex
	now []time.Time
}

func (c *fakeClocks) read(i int) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now[i]
}

func (c *fakeClocks) advance(i int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now[i] = c.now[i].Add(d)
}

// slowExecutor runs a CPU executor and advances replica's clock by perRow
// for every row of every Forward and Backward.
type slowExecutor struct {
	exec.Executor
	clocks  *fakeClocks
	replica int
	perRow  time.Duration
}

func (e *slowExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := e.Executor.Open(ctx, spec)
	return &slowSession{Session: s, e: e}, err
}

type slowSession struct {
	exec.Session
	e *slowExecutor
}

func (s *slowSession) charge(ts map[int64]*tensor.Dense) {
	for _, t := range ts {
		if sh := t.Shape(); len(sh) > 0 {
			s.e.clocks.advance(s.e.replica, time.Duration(sh[0])*s.e.perRow)
		}
		return
	}
}

func (s *slowSession) Forward(ctx context.Context, mb int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	s.charge(feeds)
	return s.Session.Forward(ctx, mb, feeds)
}

func (s *slowSession) Backward(ctx context.Context, mb int, grads map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	out, err := s.Session.Backward(ctx, mb, grads)
	s.charge(out)
	return out, err
}

// TestReplicasRebalance: replica 1 runs three times slower per row than
// replica 0; after the first window the rows move in proportion to the
// observed speeds (3:1), once, and the model trained still equals one
// process on the whole mini-batch.
func TestReplicasRebalance(t *testing.T) {
	const steps, batch, micro = 6, 24, 2
	for _, k := range []int{1, 2} {
		m := mlpModel(tensor.Float64, batch, 20, 16, 10)
		cfg := exec.Adam(0.01)
		wantLoss, wantParams := reference(t, mlpModel(tensor.Float64, batch, 20, 16, 10), cfg, steps, 7)
		clocks := &fakeClocks{now: make([]time.Time, 2)}
		execs := make([][]exec.Executor, 2)
		for i, perRow := range []time.Duration{time.Millisecond, 3 * time.Millisecond} {
			for range k {
				execs[i] = append(execs[i], &slowExecutor{Executor: exec.NewCPU(), clocks: clocks, replica: i, perRow: perRow})
			}
		}
		rr := openReplicas(t, m, 2, k, micro, nil, cfg, execs, exec.WithRebalance(2, 0.1), exec.WithClock(clocks.read))
		if got := rr.rs.Rows(); !slices.Equal(got, []int{12, 12}) {
			t.Fatalf("k=%d: rows %v before, want [12 12]", k, got)
		}
		gotLoss, gotParams := rr.train(t, steps, 7)
		requireClose(t, 1e-9, gotLoss, wantLoss, gotParams, wantParams)
		if got := rr.rs.Rows(); !slices.Equal(got, []int{18, 6}) {
			t.Errorf("k=%d: rows %v after, want [18 6]", k, got)
		}
		st := rr.rs.Stats()
		if st.Rebalances != 1 || len(st.Took) != 2 || st.Took[1] <= st.Took[0] {
			t.Errorf("k=%d: stats %+v, want one rebalance and replica 1 slower", k, st)
		}
	}
}

// TestReplicasRebalanceOff: without WithRebalance the rows stay.
func TestReplicasRebalanceOff(t *testing.T) {
	clocks := &fakeClocks{now: make([]time.Time, 2)}
	execs := [][]exec.Executor{
		{&slowExecutor{Executor: exec.NewCPU(), clocks: clocks, replica: 0, perRow: time.Millisecond}},
		{&slowExecutor{Executor: exec.NewCPU(), clocks: clocks, replica: 1, perRow: 5 * time.Millisecond}},
	}
	rr := openReplicas(t, mlpModel(tensor.Float64, 24, 20, 16, 10), 2, 1, 2, nil, exec.SGD(0.05, 0.9), execs, exec.WithClock(clocks.read))
	rr.train(t, 4, 7)
	if got := rr.rs.Rows(); !slices.Equal(got, []int{12, 12}) || rr.rs.Stats().Rebalances != 0 {
		t.Errorf("rows %v, %d rebalances; want [12 12], none", got, rr.rs.Stats().Rebalances)
	}
}

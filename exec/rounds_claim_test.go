package exec_test

import (
	"context"
	"math"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// lyingExecutor's sessions take the steps asked for and answer rows
// other than those they trained on.
type lyingExecutor struct {
	exec.Executor
	rows func(int64) int64
}

type lyingSession struct {
	exec.Session
	x    *lyingExecutor
	spec exec.SessionSpec
}

func (x *lyingExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := x.Executor.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &lyingSession{Session: s, x: x, spec: spec}, nil
}

func (s *lyingSession) LocalSteps(ctx context.Context, req exec.LocalRequest) (exec.LocalResult, error) {
	res, err := exec.LocalSteps(ctx, s.Session, &s.spec, req)
	res.Rows = s.x.rows(res.Rows)
	return res, err
}

// TestRoundsFalseRows: a replica that answers rows other than its steps
// of a batch each leaves the run, and its figures do not weigh in the
// average: the global parameters stay finite.
func TestRoundsFalseRows(t *testing.T) {
	for _, c := range []struct {
		name string
		rows func(int64) int64
	}{
		{"negative", func(n int64) int64 { return -n }},
		{"inflated", func(n int64) int64 { return n << 40 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mlpModel(tensor.Float64, 4, 6, 5, 3)
			data := roundsData(m, 48, 1)
			execs := cpus(2)
			execs[1] = &lyingExecutor{Executor: exec.NewCPU(), rows: c.rows}
			rs := openRounds(t, m, data, execs, exec.WithRoundSteps(2), exec.WithRoundDeadline(0))
			st, err := rs.Round(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Replicas != 1 || st.Left != 1 || st.Rows != 8 {
				t.Errorf("round of %d replicas, %d left, %d rows; want the liar out: 1, 1, 8", st.Replicas, st.Left, st.Rows)
			}
			params, err := rs.Params(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for id, p := range params {
				for _, v := range p.Float64s() {
					if math.IsNaN(v) || math.IsInf(v, 0) {
						t.Fatalf("parameter %d holds %v", id, v)
					}
				}
			}
		})
	}
}

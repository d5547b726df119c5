package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// TestMicroBatchCountOverTheWire checks that the session spec's
// micro-batch count reaches the provider: its executor refuses a count
// beyond its limit at Open, with the same *exec.MicroBatchLimitError as
// in process (a count too large for the wire included, which must not
// wrap around to a small one), and the provider refuses a micro-batch
// index the session does not hold before reserving memory for it.
func TestMicroBatchCountOverTheWire(t *testing.T) {
	srv, c := startBufconn(t, exec.NewCPU(exec.WithMaxMicroBatches(4)))
	m := newMLP(t, tensor.Float64, 4, 3, 5, 2)
	lay, err := exec.NewLayout(m.ir, m.parts(2), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := int64(1)<<32 + 2
	for _, tc := range []struct{ micro, want int }{{5, 5}, {0, exec.DefaultMicroBatches}, {int(big), 1<<31 - 1}} {
		spec := lay.Specs[0]
		spec.Solver = exec.SGD(0.1, 0)
		spec.MicroBatches = tc.micro
		s, err := c.Open(ctx, spec)
		var me *exec.MicroBatchLimitError
		if !errors.Is(err, exec.ErrSpec) || !errors.As(err, &me) || me.Part != 0 || me.MicroBatches != tc.want || me.Limit != 4 {
			t.Errorf("open for %d micro-batches on an executor that holds 4: got %v, want a *MicroBatchLimitError for %d", tc.micro, err, tc.want)
		}
		if s != nil {
			s.Close()
		}
	}

	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0)
	spec.MicroBatches = 3
	s, err := c.Open(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	feeds := map[int64]*tensor.Dense{}
	for _, id := range spec.DataInputs {
		feeds[id] = m.feeds[id]
	}
	if _, err := s.Forward(ctx, 0, feeds); err != nil {
		t.Fatal(err)
	}
	held := srv.Reserved()
	for _, mb := range []int{3, -1} {
		_, err := s.Forward(ctx, mb, feeds)
		var oe *exec.OrderError
		if !errors.Is(err, exec.ErrOrder) || !errors.As(err, &oe) || oe.Part != 0 {
			t.Errorf("forward of micro-batch %d on a session of 3: got %v, want an *OrderError for part 0", mb, err)
		}
	}
	if got := srv.Reserved(); got != held {
		t.Errorf("refused micro-batches changed the memory reserved from %d to %d bytes", held, got)
	}
	if _, err := s.Forward(ctx, 2, feeds); err != nil {
		t.Errorf("forward of micro-batch 2 on a session of 3: %v", err)
	}
}

// specRecorder is an executor that keeps the last spec it opened.
type specRecorder struct {
	exec.Executor
	last exec.SessionSpec
}

func (r *specRecorder) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	r.last = spec
	return r.Executor.Open(ctx, spec)
}

// TestExportGradsOverTheWire checks that SessionSpec.ExportGrads reaches
// the provider's executor.
func TestExportGradsOverTheWire(t *testing.T) {
	rec := &specRecorder{Executor: exec.NewCPU()}
	_, c := startBufconn(t, rec)
	m := newMLP(t, tensor.Float64, 4, 3, 5, 2)
	lay, err := exec.NewLayout(m.ir, m.parts(1), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, export := range []bool{true, false} {
		spec := lay.Specs[0]
		spec.Solver = exec.SGD(0.1, 0)
		spec.ExportGrads = export
		s, err := c.Open(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if rec.last.ExportGrads != export {
			t.Errorf("sent ExportGrads %v, the provider's executor got %v", export, rec.last.ExportGrads)
		}
	}
}

package transport_test

import (
	"context"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/ledger"
)

// inflatingExecutor's sessions take the local steps asked for but answer
// that they took more: a provider that inflates its LocalSteps answer.
type inflatingExecutor struct{ e exec.Executor }

func (x inflatingExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := x.e.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &inflatingSession{Session: s}, nil
}

type inflatingSession struct{ exec.Session }

func (s *inflatingSession) LocalSteps(ctx context.Context, req exec.LocalRequest) (exec.LocalResult, error) {
	res, err := s.Session.(exec.LocalStepper).LocalSteps(ctx, req)
	res.Steps *= 1000
	res.Rows *= 1000
	return res, err
}

// TestLocalStepsInflatedAnswer: a provider that answers LocalSteps with
// more steps than were asked for is refused, and the client meters no
// more than it asked for, so the receipt that claims them is not
// countersigned.
func TestLocalStepsInflatedAnswer(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 12, 10, 4)
	spec := wholeSpec(t, m)
	key := newKey(t)
	var k sinks
	_, c := startBufconnWith(t, inflatingExecutor{exec.NewCPU()}, nil, k.options(key)...)
	s, err := c.Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	for id, sh := range shardsOf(m, 29) {
		if err := s.Put(context.Background(), exec.ShardName(id), sh); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.(exec.LocalStepper).LocalSteps(context.Background(), exec.LocalRequest{Steps: 2, Seed: 1})
	if err == nil {
		t.Errorf("LocalSteps of 2 steps answered %d steps and %d rows without an error", res.Steps, res.Rows)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, sr := range k.receipts {
		r, err := ledger.OpenReceipt(sr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Work.Steps > 2 {
			t.Errorf("countersigned a receipt of %d steps; 2 were asked for", r.Work.Steps)
		}
	}
}

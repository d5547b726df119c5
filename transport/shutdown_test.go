package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// blockingExecutor's sessions block in Step until the call's context
// ends, and record that they were closed.
type blockingExecutor struct {
	entered chan struct{}
	closed  chan struct{}
}

func (b blockingExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	return &blockingSession{b: b}, nil
}

type blockingSession struct {
	storeSession
	b blockingExecutor
}

func (s *blockingSession) Step(ctx context.Context) error {
	s.b.entered <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func (s *blockingSession) Close() error {
	s.b.closed <- struct{}{}
	return nil
}

// TestShutdownCancelsInFlight: Shutdown waits for calls in flight until
// its context ends, then cancels them, and closes every session.
func TestShutdownCancelsInFlight(t *testing.T) {
	be := blockingExecutor{entered: make(chan struct{}, 1), closed: make(chan struct{}, 1)}
	srv, c := startBufconn(t, be)
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	stepErr := make(chan error, 1)
	go func() { stepErr <- s.Step(context.Background()) }()
	select {
	case <-be.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("step never reached the executor")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown with a call in flight: got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	select {
	case err := <-stepErr:
		if err == nil {
			t.Error("the cancelled step returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the step in flight never returned")
	}
	select {
	case <-be.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not closed")
	}
	if n := srv.Sessions(); n != 0 {
		t.Errorf("%d sessions after shutdown", n)
	}
}

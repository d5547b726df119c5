package transport_test

import (
	"context"
	"sync"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// storeExecutor is an executor whose sessions only keep what is Put and
// hand it back on Get, without copying: behind a server, it measures the
// wire alone, with no executor work in the way. It runs nothing.
type storeExecutor struct{}

func (storeExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	return &storeSession{m: map[string]*tensor.Dense{}}, nil
}

type storeSession struct {
	mu sync.Mutex
	m  map[string]*tensor.Dense
}

func (s *storeSession) Put(ctx context.Context, name string, t *tensor.Dense) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = t
	return nil
}

func (s *storeSession) Get(ctx context.Context, names ...string) (map[string]*tensor.Dense, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*tensor.Dense, len(names))
	for _, n := range names {
		t, ok := s.m[n]
		if !ok {
			return nil, &exec.NameError{Name: n}
		}
		out[n] = t
	}
	return out, nil
}

func (s *storeSession) Forward(context.Context, int, map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	return nil, nil
}

func (s *storeSession) Backward(context.Context, int, map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	return nil, nil
}

func (s *storeSession) Step(context.Context) error { return nil }
func (s *storeSession) Close() error               { return nil }

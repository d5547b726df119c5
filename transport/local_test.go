package transport_test

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// wholeSpec is the spec of m as one part, the whole model with its loss,
// holding one micro-batch.
func wholeSpec(t *testing.T, m *mlp) exec.SessionSpec {
	t.Helper()
	lay, err := exec.NewLayout(m.ir, m.parts(1), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0)
	spec.MicroBatches = 1
	if !spec.HasLoss || len(spec.Inputs) != 0 || len(spec.Outputs) != 0 {
		t.Fatalf("spec of one part: loss %v, inputs %v, outputs %v", spec.HasLoss, spec.Inputs, spec.Outputs)
	}
	return spec
}

// shardsOf draws, for each data input of m, a shard of rows rows.
func shardsOf(m *mlp, rows int) map[int64]*tensor.Dense {
	rng := rand.New(rand.NewSource(2))
	out := make(map[int64]*tensor.Dense, len(m.data))
	for _, id := range m.data {
		n, _ := m.ir.Node(id)
		shape := append([]int{rows}, n.Shape[1:]...)
		d := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(shape...))
		v := d.Float64s()
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		out[id] = d
	}
	return out
}

func openWithShards(t *testing.T, e exec.Executor, spec exec.SessionSpec, shards map[int64]*tensor.Dense) exec.Session {
	t.Helper()
	ctx := context.Background()
	s, err := e.Open(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for id, sh := range shards {
		if err := s.Put(ctx, exec.ShardName(id), sh); err != nil {
			t.Fatalf("put %s: %v", exec.ShardName(id), err)
		}
	}
	return s
}

// TestLocalStepsRemote: a remote session takes local steps on the
// provider and ends where an in-process session ends, bit for bit.
func TestLocalStepsRemote(t *testing.T) {
	_, c := startBufconn(t, exec.NewCPU())
	m := newMLP(t, tensor.Float64, 8, 12, 10, 4)
	spec := wholeSpec(t, m)
	shards := shardsOf(m, 29)
	remote := openWithShards(t, c, spec, shards)
	local := openWithShards(t, exec.NewCPU(), spec, shards)

	ls, ok := remote.(exec.LocalStepper)
	if !ok {
		t.Fatalf("remote session %T is no exec.LocalStepper", remote)
	}
	ctx := context.Background()
	req := exec.LocalRequest{Steps: 5, Seed: 7, Start: 3}
	got, err := ls.LocalSteps(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := exec.LocalSteps(ctx, local, &spec, req)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("remote result %+v, want %+v", got, want)
	}
	if got.Steps != 5 || got.Rows != 40 || !(got.Loss > 0) {
		t.Errorf("result %+v, want 5 steps of 8 rows and a positive loss", got)
	}
	var names []string
	for _, id := range m.ir.Learnables() {
		names = append(names, exec.ParamName(id))
	}
	gotP, err := remote.Get(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	wantP, err := local.Get(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		g, w := gotP[name].Float64s(), wantP[name].Float64s()
		if len(g) != len(w) {
			t.Fatalf("%s: %d values, want %d", name, len(g), len(w))
		}
		for i := range w {
			if g[i] != w[i] {
				t.Fatalf("%s[%d] = %v, want %v", name, i, g[i], w[i])
			}
		}
	}
}

// TestLocalStepsBadRequest: the provider refuses bad figures and a
// missing shard with the executor's typed errors.
func TestLocalStepsBadRequest(t *testing.T) {
	_, c := startBufconn(t, exec.NewCPU())
	m := newMLP(t, tensor.Float64, 8, 12, 10, 4)
	spec := wholeSpec(t, m)
	shards := shardsOf(m, 16)
	s := openWithShards(t, c, spec, shards).(exec.LocalStepper)
	ctx := context.Background()
	for _, req := range []exec.LocalRequest{{Steps: 0}, {Steps: 1, Start: -1}, {Steps: exec.MaxLocalSteps + 1}, {Steps: -1 << 40}} {
		_, err := s.LocalSteps(ctx, req)
		if !errors.Is(err, exec.ErrSpec) {
			t.Errorf("%+v: got %v, want an error matching exec.ErrSpec", req, err)
		}
	}

	delete(shards, m.data[1])
	s = openWithShards(t, c, spec, shards).(exec.LocalStepper)
	_, err := s.LocalSteps(ctx, exec.LocalRequest{Steps: 1})
	var fe *exec.FeedError
	if !errors.As(err, &fe) || fe.Node != m.data[1] || !strings.Contains(err.Error(), exec.ShardName(m.data[1])) {
		t.Errorf("missing shard: got %v, want a *FeedError naming %s", err, exec.ShardName(m.data[1]))
	}
}

// steppedExecutor's sessions hide the CPU session's LocalStepper, so the
// provider drives them step by step; the first Step reports on entered
// and waits until its call's context ends, then reports on left.
type steppedExecutor struct {
	e       exec.Executor
	entered chan struct{}
	left    chan error
}

func (x steppedExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := x.e.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &steppedSession{Session: s, x: x}, nil
}

type steppedSession struct {
	exec.Session
	x     steppedExecutor
	steps int
}

func (s *steppedSession) Step(ctx context.Context) error {
	s.steps++
	if s.steps > 1 {
		return errors.New("a step after the call was cancelled")
	}
	s.x.entered <- struct{}{}
	<-ctx.Done()
	s.x.left <- ctx.Err()
	return ctx.Err()
}

// TestLocalStepsCancel: cancelling the requester's call stops the
// provider's steps.
func TestLocalStepsCancel(t *testing.T) {
	x := steppedExecutor{e: exec.NewCPU(), entered: make(chan struct{}, 1), left: make(chan error, 1)}
	srv, c := startBufconn(t, x)
	m := newMLP(t, tensor.Float64, 8, 12, 10, 4)
	spec := wholeSpec(t, m)
	s := openWithShards(t, c, spec, shardsOf(m, 16)).(exec.LocalStepper)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.LocalSteps(ctx, exec.LocalRequest{Steps: exec.MaxLocalSteps, Seed: 1})
		done <- err
	}()
	select {
	case <-x.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no step reached the executor")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled local steps: got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled call never returned")
	}
	select {
	case err := <-x.left:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the provider's step ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the provider's step never saw the cancellation")
	}
	if n := srv.Sessions(); n != 1 {
		t.Errorf("%d sessions after the cancelled call, want 1", n)
	}
}

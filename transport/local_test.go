package transport_test

import (
	"context"
	"errors"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	"github.com/rookery-ml/rookery/transport"
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
	if !reflect.DeepEqual(got, want) {
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

// gatedExecutor's sessions hide the CPU session's LocalStepper; each Step
// reports on entered and waits for release (or the end of its call).
type gatedExecutor struct {
	e       exec.Executor
	entered chan struct{}
	release chan struct{}
}

func (x gatedExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := x.e.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &gatedSession{Session: s, x: x}, nil
}

type gatedSession struct {
	exec.Session
	x gatedExecutor
}

func (s *gatedSession) Step(ctx context.Context) error {
	s.x.entered <- struct{}{}
	select {
	case <-s.x.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Session.Step(ctx)
}

// TestLocalStepsNotIdle: a session busy with local steps for longer than
// the idle timeout is not reaped; once the call ends, the idle timeout
// counts from its end.
func TestLocalStepsNotIdle(t *testing.T) {
	const timeout = 50 * time.Millisecond
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	x := gatedExecutor{e: exec.NewCPU(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, c := startBufconn(t, x, transport.WithLimits(transport.Limits{IdleTimeout: timeout}), transport.WithClock(clock))
	m := newMLP(t, tensor.Float64, 8, 12, 10, 4)
	s := openWithShards(t, c, wholeSpec(t, m), shardsOf(m, 16)).(exec.LocalStepper)
	done := make(chan error, 1)
	go func() {
		_, err := s.LocalSteps(context.Background(), exec.LocalRequest{Steps: 2, Seed: 1})
		done <- err
	}()
	for step := 0; step < 2; step++ {
		select {
		case <-x.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("step %d never reached the executor", step)
		}
		idle(clock, 2*timeout)
		if n := srv.Sessions(); n != 1 {
			t.Fatalf("step %d: %d sessions open while local steps run, want 1", step, n)
		}
		x.release <- struct{}{}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	idle(clock, timeout/2)
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("%d sessions open just after local steps, want 1", n)
	}
	idle(clock, timeout)
	if n := srv.Sessions(); n != 0 {
		t.Fatalf("%d sessions open past the idle timeout after local steps, want 0", n)
	}
}

// TestLocalStepsBigShard: a float32 shard of 15000 MNIST images (47 MB)
// goes through a remote session under the default limits.
func TestLocalStepsBigShard(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 47 MB")
	}
	_, c := startBufconn(t, exec.NewCPU())
	m := newMLP(t, tensor.Float32, 8, 784, 10)
	spec := wholeSpec(t, m)
	ctx := context.Background()
	s, err := c.Open(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(15000, 784))
	y := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(15000, 10))
	ys := y.Float32s()
	for i := 0; i < 15000; i++ {
		ys[i*10+i%10] = 1
	}
	for i, sh := range []*tensor.Dense{x, y} {
		if err := s.Put(ctx, exec.ShardName(m.data[i]), sh); err != nil {
			t.Fatalf("put shard of shape %v: %v", sh.Shape(), err)
		}
	}
	res, err := s.(exec.LocalStepper).LocalSteps(ctx, exec.LocalRequest{Steps: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 3 || res.Rows != 24 {
		t.Errorf("result %+v, want 3 steps of 8 rows", res)
	}
}

// TestLocalRoundRemote: one LocalSteps call applies the round's update
// and returns the delta, inline or, when they exceed a message, through
// Put and Get, as an in-process session does.
func TestLocalRoundRemote(t *testing.T) {
	for _, chunk := range []int{transport.DefaultChunkBytes, 64} {
		_, c := startBufconnWith(t, exec.NewCPU(), nil, transport.WithChunkBytes(chunk))
		m := newMLP(t, tensor.Float64, 8, 12, 10, 4)
		spec := wholeSpec(t, m)
		shards := shardsOf(m, 29)
		ctx := context.Background()
		var results []exec.LocalResult
		for _, e := range []exec.Executor{c, exec.NewCPU()} {
			s := openWithShards(t, e, spec, shards)
			values := 0
			for _, id := range spec.Graph.Learnables() {
				n, _ := spec.Graph.Node(id)
				if err := s.Put(ctx, exec.AnchorName(id), n.Value); err != nil {
					t.Fatal(err)
				}
				values += int(n.Shape.Size())
			}
			u := make([]float64, values)
			for i := range u {
				u[i] = 0.001 * float64(i%7-3)
			}
			update, err := compress.Encode(compress.Int8, u)
			if err != nil {
				t.Fatal(err)
			}
			res, err := exec.LocalSteps(ctx, s, &spec, exec.LocalRequest{Steps: 3, Seed: 1, Update: update, Delta: compress.Float16})
			if err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			if _, err := compress.Decode(res.Delta, values); err != nil {
				t.Fatalf("chunk %d: delta: %v", chunk, err)
			}
			results = append(results, res)
		}
		if !reflect.DeepEqual(results[0], results[1]) {
			t.Errorf("chunk %d: remote %+v, in process %+v", chunk, results[0], results[1])
		}
	}
}

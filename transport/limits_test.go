package transport_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

func openFirstPart(t *testing.T, c exec.Executor, m *mlp) (exec.Session, error) {
	t.Helper()
	lay, err := exec.NewLayout(m.ir, m.parts(2), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Open(ctx, spec)
	if s != nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func requireLimit(t *testing.T, err error, what string, capacity bool) {
	t.Helper()
	var le *transport.LimitError
	if !errors.Is(err, transport.ErrLimit) || !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LimitError on %s", err, what)
	}
	if le.What != what || le.Capacity != capacity {
		t.Fatalf("got limit %q (capacity %v), want %q (capacity %v)", le.What, le.Capacity, what, capacity)
	}
}

func TestLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	big := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(1024, 1024)) // 4 MiB

	t.Run("sessions", func(t *testing.T) {
		_, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxSessions: 1}))
		if _, err := openFirstPart(t, c, m); err != nil {
			t.Fatal(err)
		}
		_, err := openFirstPart(t, c, m)
		requireLimit(t, err, "sessions", true)
	})
	t.Run("nodes", func(t *testing.T) {
		_, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxNodes: 3}))
		_, err := openFirstPart(t, c, m)
		requireLimit(t, err, "nodes", false)
	})
	t.Run("graph bytes", func(t *testing.T) {
		_, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxGraphBytes: 100}))
		_, err := openFirstPart(t, c, m)
		requireLimit(t, err, "graph bytes", false)
	})
	t.Run("tensor bytes", func(t *testing.T) {
		_, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxTensorBytes: 1 << 20}))
		s, err := openFirstPart(t, c, m)
		if err != nil {
			t.Fatal(err)
		}
		requireLimit(t, s.Put(ctx, "shard", big), "tensor bytes", false)
		// The session is still usable.
		small := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(16))
		if err := s.Put(ctx, "shard", small); err != nil {
			t.Fatal(err)
		}
		_, err = s.Forward(ctx, 0, map[int64]*tensor.Dense{m.data[0]: big})
		requireLimit(t, err, "tensor bytes", false)
	})
	t.Run("session bytes", func(t *testing.T) {
		srv, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxSessionBytes: 9 << 20}))
		s, err := openFirstPart(t, c, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"a", "a", "b"} { // replacing "a" frees its old bytes
			if err := s.Put(ctx, name, big); err != nil {
				t.Fatalf("put %s: %v", name, err)
			}
		}
		requireLimit(t, s.Put(ctx, "c", big), "session bytes", true)
		var sb bytesWriter
		if err := srv.WriteMetrics(&sb); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("provider bytes", func(t *testing.T) {
		_, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxProviderBytes: 6 << 20}))
		s1, err := openFirstPart(t, c, m)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := openFirstPart(t, c, m)
		if err != nil {
			t.Fatal(err)
		}
		if err := s1.Put(ctx, "a", big); err != nil {
			t.Fatal(err)
		}
		requireLimit(t, s2.Put(ctx, "a", big), "provider bytes", true)
		if err := s1.Close(); err != nil { // closing frees the budget
			t.Fatal(err)
		}
		if err := s2.Put(ctx, "a", big); err != nil {
			t.Fatal(err)
		}
	})
}

type bytesWriter []byte

func (b *bytesWriter) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// TestLimitsBeforeAllocating speaks the wire protocol directly: a header
// that announces a 4 TiB tensor, or a 1 TiB graph, is refused with the
// right status code before any of it is sent, let alone allocated.
func TestLimitsBeforeAllocating(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	srv, c := startTCP(t, exec.NewCPU())
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	_ = s
	cc, err := grpc.NewClient(c.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pc := rookeryv1.NewProviderClient(cc)

	open, err := pc.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := open.Send(&rookeryv1.OpenRequest{Spec: &rookeryv1.SessionSpec{}, GraphBytes: 1 << 40}); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	_, err = open.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("open announcing 1 TiB: got %v, want InvalidArgument", err)
	}

	// A session id that the server never gave out.
	put, err := pc.Put(ctx)
	if err != nil {
		t.Fatal(err)
	}
	huge := &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT32, Shape: []int64{1 << 20, 1 << 20}, Data: make([]byte, 16)}
	_ = put.Send(&rookeryv1.TensorFrame{Session: "nope", Name: "x", Tensor: huge})
	_, err = put.CloseAndRecv()
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("put to an unknown session: got %v, want FailedPrecondition", err)
	}

	// The huge header on a real session: refused on the header alone.
	id := sessionID(t, srv, c, m)
	put, err = pc.Put(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = put.Send(&rookeryv1.TensorFrame{Session: id, Name: "x", Tensor: huge})
	_, err = put.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("put of a 4 TiB tensor: got %v, want InvalidArgument", err)
	}
	st, _ := status.FromError(err)
	if len(st.Details()) != 1 {
		t.Errorf("status details %v, want one ErrorDetail", st.Details())
	}
}

// sessionID opens a session with a raw Open call and returns its id.
func sessionID(t *testing.T, srv *transport.Server, c *transport.Client, m *mlp) string {
	t.Helper()
	lay, err := exec.NewLayout(m.ir, m.parts(2), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lay.Specs[0].Graph.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(c.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open, err := rookeryv1.NewProviderClient(cc).Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sp := lay.Specs[0]
	if err := open.Send(&rookeryv1.OpenRequest{GraphBytes: int64(len(b)), GraphChunk: b, Spec: &rookeryv1.SessionSpec{
		Part: int32(sp.Part), Inputs: sp.Inputs, DataInputs: sp.DataInputs, Outputs: sp.Outputs,
		Solver: &rookeryv1.Solver{Kind: rookeryv1.Solver_KIND_SGD, LearnRate: 0.1}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := open.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Session
}

// TestIdleTimeout: a session left alone is closed by the provider, and
// the requester then sees exec.ErrClosed.
func TestIdleTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	srv, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{IdleTimeout: timeout}), transport.WithClock(clock))
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	idle(clock, timeout/2)
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("%d sessions open before the idle timeout, want 1", n)
	}
	idle(clock, timeout)
	if n := srv.Sessions(); n != 0 {
		t.Fatalf("%d sessions open after the idle timeout", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Forward(ctx, 0, m.feeds); !errors.Is(err, exec.ErrClosed) {
		t.Fatalf("forward on an expired session: got %v, want ErrClosed", err)
	}
}

// idle lets a provider whose clock is clock stay idle for d, at least the
// reaper's period (a quarter of the idle timeout): it advances the clock
// once the idle reaper waits on it, and returns once the reaper has
// finished the pass that the advance woke and waits again.
func idle(clock *fakeclock.Clock, d time.Duration) {
	clock.BlockUntil(1)
	clock.Advance(d)
	clock.BlockUntil(1)
}

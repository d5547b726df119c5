package guard_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	"github.com/rookery-ml/rookery/transport"
)

// provider serves a CPU executor on loopback and returns the server and a
// client connected to it.
func provider(t testing.TB) (*transport.Server, *transport.Client) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c, err := transport.Connect(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// TestProviderStoppedMidRun stops a provider's server between two steps:
// its part moves to the spare provider, restored from the snapshot
// (parameters, Adam's moments and update count, all over the wire) and
// the replayed log.
func TestProviderStoppedMidRun(t *testing.T) {
	j := newJob(t, 2, 9, 6, 10, 4)
	want := j.honest(t)
	_, c0 := provider(t)
	s1, c1 := provider(t)
	_, spare := provider(t)
	var rec recorder
	g, err := guard.New(guard.WithSpares(spare), guard.WithSnapshotEvery(3), guard.WithEvents(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	got, err := j.train(context.Background(), []exec.Executor{g.Executor(c0), g.Executor(c1)}, func(step int) {
		if step == 4 {
			s1.Stop()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("parameters differ from the fault-free run by %g", d)
	}
	rep := rec.of(guard.EventReplaced)
	if len(rep) != 1 || rep[0].Provider != c1.Addr() || rep[0].Replacement != spare.Addr() {
		t.Errorf("replacements %v, want %s -> %s", rep, c1.Addr(), spare.Addr())
	}
}

// TestSessionReapedByProvider: a provider closes a session left idle past
// its timeout; the next call finds it gone (exec.ErrClosed), and the part
// is rebuilt on the same provider from the snapshot and the log.
func TestSessionReapedByProvider(t *testing.T) {
	j := newJob(t, 1, 6, 6, 10, 4)
	want := j.honest(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 50 * time.Millisecond
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithLimits(transport.Limits{IdleTimeout: timeout}),
		transport.WithClock(clock))
	go srv.Serve(lis)
	defer srv.Stop()
	c, err := transport.Connect(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rec recorder
	g, err := guard.New(guard.WithSnapshotEvery(4), guard.WithEvents(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	got, err := j.train(context.Background(), []exec.Executor{g.Executor(c)}, func(step int) {
		if step == 2 {
			// Idle past the timeout: once the provider's reaper has
			// made its pass and waits again, the session is closed.
			clock.BlockUntil(1)
			clock.Advance(2 * timeout)
			clock.BlockUntil(1)
			if n := srv.Sessions(); n != 0 {
				t.Fatalf("%d sessions open after the idle timeout", n)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("parameters differ from the fault-free run by %g", d)
	}
	f := rec.of(guard.EventFault)
	if len(f) != 1 || !errors.Is(f[0].Err, exec.ErrClosed) {
		t.Errorf("faults %v, want one exec.ErrClosed", f)
	}
	if rep := rec.of(guard.EventReplaced); len(rep) != 1 || rep[0].Replacement != c.Addr() {
		t.Errorf("replacements %v, want the part reopened on %s", rep, c.Addr())
	}
}

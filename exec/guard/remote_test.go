package guard_test

import (
	"context"
	"net"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
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

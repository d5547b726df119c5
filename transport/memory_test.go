package transport_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	"github.com/rookery-ml/rookery/transport"
)

// TestProviderFreesSessions runs sessions that each hold an 8 MiB
// resident input on a provider, one after another, some closed by the
// requester and some left to the idle reaper, and checks that the
// provider's heap does not grow with their number: a provider serving
// requesters for days must give back what each session held.
func TestProviderFreesSessions(t *testing.T) {
	const rows, cols, sessions = 1024, 1024, 12
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(rows, cols), gorgonia.WithName("x"))
	w := gorgonia.NewConstant(tensor.New(tensor.WithShape(cols, 1), tensor.WithBacking(make([]float64, cols))))
	out := gorgonia.Must(gorgonia.Mul(x, w))
	ir, err := graph.FromGorgonia(g)
	if err != nil {
		t.Fatal(err)
	}
	spec := exec.SessionSpec{Graph: ir, DataInputs: []int64{int64(x.ID())}, Outputs: []int64{int64(out.ID())}, Solver: exec.SGD(0.1, 0)}
	const timeout = 100 * time.Millisecond
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	srv, c := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{IdleTimeout: timeout}), transport.WithClock(clock))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var base uint64
	for i := 0; i < sessions; i++ {
		s, err := c.Open(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, exec.InputName(int64(x.ID())), tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(make([]float64, rows*cols)))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Forward(ctx, 0, nil); err != nil {
			t.Fatal(err)
		}
		if i%3 == 2 { // left alone: the provider closes it when idle
			idle(clock, 2*timeout)
			if n := srv.Sessions(); n != 0 {
				t.Fatalf("session %d: %d sessions still open after the idle timeout", i, n)
			}
		} else if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			base = heap()
		}
	}
	grew := int64(heap()) - int64(base)
	t.Logf("heap grew %d KiB over %d sessions of an 8 MiB input after the first two", grew>>10, sessions-2)
	if grew > 16<<20 {
		t.Errorf("the provider's heap grew %d MiB over %d closed sessions: they are not freed", grew>>20, sessions-2)
	}
}

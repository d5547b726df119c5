package transport_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
)

// closedPort returns a loopback address where nothing listens: a port
// that was bound and released.
func closedPort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// silentListener accepts connections and never answers on them, until
// the test ends.
func silentListener(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

func TestDialTimesOutWithTheCause(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name  string
		addr  func(*testing.T) string
		cause string
	}{
		{"no listener", closedPort, "connection refused"},
		{"listener that never speaks gRPC", silentListener, "no gRPC answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr(t)
			// No deadline on ctx: only the dial timeout bounds the wait.
			_, err := transport.Dial(context.Background(), addr, transport.WithDialTimeout(timeout))
			var de *transport.DialError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a *DialError", err)
			}
			if de.Addr != addr || de.Peer != "provider" || de.Timeout != timeout {
				t.Errorf("got addr %q peer %q timeout %v, want %q provider %v", de.Addr, de.Peer, de.Timeout, addr, timeout)
			}
			if !errors.Is(err, transport.ErrUnavailable) {
				t.Errorf("got %v, want it to match ErrUnavailable", err)
			}
			for _, want := range []string{"transport: dial " + addr, "no provider answered within 300ms", tc.cause} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestDialCancelledReturnsContextError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := transport.Dial(ctx, closedPort(t), transport.WithDialTimeout(time.Hour))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// A provider that dies during a run is named in the error of the next
// call, with the part it ran.
func TestLostProviderIsNamed(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	c, err := transport.Connect(context.Background(), addr, transport.WithDialTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := openFirstPart(t, c, newMLP(t, tensor.Float32, 8, 20, 16, 4))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	<-served
	err = s.Step(context.Background())
	if !errors.Is(err, transport.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if want := "step on provider " + addr + ", part 0"; !strings.Contains(err.Error(), want) {
		t.Errorf("got %q, want it to contain %q", err, want)
	}
}

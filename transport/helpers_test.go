package transport_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/test/bufconn"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
)

// startBufconn serves e over an in-memory listener and returns the server
// and a client dialled to it; both are stopped when the test ends.
func startBufconn(t testing.TB, e exec.Executor, opts ...transport.ServerOption) (*transport.Server, *transport.Client) {
	t.Helper()
	lis := bufconn.Listen(4 << 20)
	opts = append([]transport.ServerOption{transport.WithBenchmark(0)}, opts...)
	srv := transport.NewServer(e, opts...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Connect(ctx, "bufnet", transport.WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}))
	if err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv, c
}

// startTCP serves e on a loopback TCP port and returns the server and a
// client dialled to it.
func startTCP(t testing.TB, e exec.Executor, opts ...transport.ServerOption) (*transport.Server, *transport.Client) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]transport.ServerOption{transport.WithBenchmark(0)}, opts...)
	srv := transport.NewServer(e, opts...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Connect(ctx, lis.Addr().String())
	if err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	})
	return srv, c
}

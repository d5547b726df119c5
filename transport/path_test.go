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

// pathConn is a connection that reports its path, as transport/p2p's do.
type pathConn struct {
	net.Conn
	path string
}

func (c pathConn) Path() string { return c.path }

// TestClientPath: a client says "tcp" for a connection it dialled over
// TCP or from a dialer whose connection says nothing, and what the
// dialer's connection reports otherwise.
func TestClientPath(t *testing.T) {
	_, c := startTCP(t, exec.NewCPU())
	if got := c.Path(); got != transport.PathTCP {
		t.Errorf("over loopback TCP: path %q, want %q", got, transport.PathTCP)
	}

	lis := bufconn.Listen(1 << 20)
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
		want string
	}{
		{"relayed", func(c net.Conn) net.Conn { return pathConn{Conn: c, path: "relayed"} }, "relayed"},
		{"direct", func(c net.Conn) net.Conn { return pathConn{Conn: c, path: "direct"} }, "direct"},
		{"silent dialer", func(c net.Conn) net.Conn { return c }, transport.PathTCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := transport.Connect(ctx, "bufnet", transport.WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				c, err := lis.DialContext(ctx)
				if err != nil {
					return nil, err
				}
				return tc.wrap(c), nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.Path(); got != tc.want {
				t.Errorf("path %q, want %q", got, tc.want)
			}
		})
	}
}

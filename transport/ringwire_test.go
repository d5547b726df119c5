package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/transport"
)

// wireReplicas opens r one-part replicas of m on loopback providers
// started with opts, in sharded rings, and returns them with the servers.
func wireReplicas(t *testing.T, m exectest.Model, r int, opts ...transport.ServerOption) (*exec.Replicas, []*transport.Server) {
	t.Helper()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	var execs [][]exec.Executor
	var srvs []*transport.Server
	for range r {
		srv, c := startTCP(t, exec.NewCPU(), opts...)
		execs = append(execs, []exec.Executor{c})
		srvs = append(srvs, srv)
	}
	rs, err := exec.NewReplicas(context.Background(), ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 1), execs,
		exec.WithSolver(exec.Adam(0.01)), exec.WithReduction(exec.ReduceRing))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return rs, srvs
}

// ringRounds sums the rounds the servers sent on the ring wire and on
// RingPass streams.
func ringRounds(srvs []*transport.Server) (wire, streams int64) {
	for _, s := range srvs {
		w, st := s.RingRounds()
		wire, streams = wire+w, streams+st
	}
	return wire, streams
}

// TestRingWire: rings send their rounds on the ring wire by default, and
// on RingPass streams with WithoutRingWire, and both train the same bits;
// the segments of a model with several segments per chunk, in float32
// and float64, and the gathered solver state, all cross it.
func TestRingWire(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		t.Run(dt.String(), func(t *testing.T) {
			m := exectest.MLP(dt, 16, 784, 700, 10) // 556,510 parameters: several segments per chunk
			wired, wsrv := wireReplicas(t, m, 3)
			streamed, ssrv := wireReplicas(t, m, 3, transport.WithoutRingWire())
			_, wp := exectest.TrainReplicas(t, m, wired, 3, 4)
			_, sp := exectest.TrainReplicas(t, m, streamed, 3, 4)
			for i := range wp {
				if !exectest.SameBits(wp[i], sp[i]) {
					t.Errorf("parameter %d: the ring wire trained other bits than RingPass streams", i)
				}
			}
			ctx := context.Background()
			if err := wired.SyncState(ctx); err != nil {
				t.Fatal(err)
			}
			if err := streamed.SyncState(ctx); err != nil {
				t.Fatal(err)
			}
			if w, s := ringRounds(wsrv); w == 0 || s != 0 {
				t.Errorf("default servers: %d rounds on the wire, %d on streams; want all on the wire", w, s)
			}
			if w, s := ringRounds(ssrv); w != 0 || s == 0 {
				t.Errorf("WithoutRingWire: %d rounds on the wire, %d on streams; want all on streams", w, s)
			}
		})
	}
}

// TestRingWireTLS: providers given TLS with WithCredentials run the ring
// wire over TLS, with the credentials they dial each other with.
func TestRingWireTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srvCreds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	cliCreds := credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
	m := exectest.MLP(tensor.Float32, 8, 6, 5, 3)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	execs, srvs := tlsProviders(t, 2, cliCreds, transport.WithCredentials(srvCreds),
		transport.WithPeerDialOptions(transport.WithDialTimeout(2*time.Second), transport.WithTransportCredentials(cliCreds)))
	rs, err := exec.NewReplicas(context.Background(), ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 1), execs,
		exec.WithSolver(exec.SGD(0.1, 0.9)), exec.WithReduction(exec.ReduceRing))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	exectest.TrainReplicas(t, m, rs, 2, 1)
	if w, s := ringRounds(srvs); w == 0 || s != 0 {
		t.Errorf("%d rounds on the wire, %d on streams; want all on the wire", w, s)
	}
}

// TestRingWireRefusesStrangers: a connection that presents the ring
// wire's magic but no member's session and key is refused with a reason
// and closed, and one that says nothing more is closed; the provider
// still serves gRPC on the same port.
func TestRingWireRefusesStrangers(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		<-done
	}()
	addr := lis.Addr().String()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	c := dial()
	hello := []byte("RKRWIRE1")
	hello = append(hello, 3, 0, 'a', 'b', 'c', 16, 0)
	hello = append(hello, make([]byte, 16)...)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	c.Close()
	if err != nil || len(reply) < 3 || reply[0] != 1 {
		t.Fatalf("a stranger's hello got %q (%v), want a refusal", reply, err)
	}
	// A key that is too short is refused before any session is looked up.
	c = dial()
	if _, err := c.Write(append([]byte("RKRWIRE1"), 1, 0, 'a', 2, 0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	reply, _ = io.ReadAll(c)
	c.Close()
	if len(reply) < 3 || reply[0] != 1 {
		t.Fatalf("a short key got %q, want a refusal", reply)
	}
	// A connection that begins as the magic does and then differs is
	// closed without a word (reset, as what it sent is left unread).
	c = dial()
	if _, err := c.Write([]byte("RKRWIRE9 and more")); err != nil {
		t.Fatal(err)
	}
	reply, err = io.ReadAll(c)
	c.Close()
	if (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(reply) != 0 {
		t.Fatalf("a wrong magic got %q (%v), want the connection closed", reply, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := transport.Connect(ctx, addr)
	if err != nil {
		t.Fatalf("gRPC beside the ring wire: %v", err)
	}
	cl.Close()
}

// tlsProviders starts n providers on loopback TCP with opts (their TLS
// among them) and connects to each over TLS with cliCreds.
func tlsProviders(t *testing.T, n int, cliCreds credentials.TransportCredentials, opts ...transport.ServerOption) ([][]exec.Executor, []*transport.Server) {
	t.Helper()
	var execs [][]exec.Executor
	var srvs []*transport.Server
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := transport.NewServer(exec.NewCPU(), append([]transport.ServerOption{transport.WithBenchmark(0)}, opts...)...)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(lis) }()
		t.Cleanup(func() {
			srv.Stop()
			<-done
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := transport.Connect(ctx, lis.Addr().String(), transport.WithTransportCredentials(cliCreds))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		execs = append(execs, []exec.Executor{c})
		srvs = append(srvs, srv)
	}
	return execs, srvs
}

// TestRingWireBroken: members whose ring wire connections break between
// rounds send the next rounds on RingPass streams, and the replicas train
// the bits that replicas without the wire do.
func TestRingWireBroken(t *testing.T) {
	m := exectest.MLP(tensor.Float32, 16, 30, 20, 10)
	broken, srvs := wireReplicas(t, m, 3)
	plain, _ := wireReplicas(t, m, 3, transport.WithoutRingWire())
	exectest.TrainReplicas(t, m, broken, 2, 6)
	closed := 0
	for _, s := range srvs {
		closed += transport.BreakRingWires(s)
	}
	if closed != 3 {
		t.Fatalf("closed %d ring wires, want 3", closed)
	}
	wire, _ := ringRounds(srvs)
	_, got := exectest.TrainReplicas(t, m, broken, 2, 7)
	exectest.TrainReplicas(t, m, plain, 2, 6)
	_, want := exectest.TrainReplicas(t, m, plain, 2, 7)
	for i := range want {
		if !exectest.SameBits(got[i], want[i]) {
			t.Errorf("parameter %d: after the wires broke, the replicas trained other bits", i)
		}
	}
	if w, s := ringRounds(srvs); w != wire || s == 0 {
		t.Errorf("after the wires broke: %d more rounds on the wire, %d on streams; want none and some", w-wire, s)
	}
}

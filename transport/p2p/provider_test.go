package p2p_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand"
	"net"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/p2p"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// serve serves srv (a provider or a seed node) on h's listener until
// the test ends.
func serve(t *testing.T, h *p2p.Host, srv interface {
	Serve(net.Listener) error
	Stop()
}) {
	t.Helper()
	lis, err := h.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
}

// matmulSpec is a one-node part: y = x·w with a learnable w.
func matmulSpec() exec.SessionSpec {
	g := graph.New()
	g.MustAdd(graph.Node{ID: 1, Name: "x", Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{1, 2}})
	w := tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]float64{3, 4}))
	g.MustAdd(graph.Node{ID: 2, Name: "w", Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{2, 1}, Value: w})
	g.MustAdd(graph.Node{ID: 3, Name: "y", Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2},
		DType: graph.Float64, Shape: graph.Shape{1, 1}})
	return exec.SessionSpec{Graph: g, DataInputs: []int64{1}, Outputs: []int64{3}, Solver: exec.SGD(0.1, 0)}
}

// forward opens a session of matmulSpec on e, runs it once, checks
// y = 1·3 + 2·4 and closes it.
func forward(ctx context.Context, t *testing.T, e exec.Executor) error {
	t.Helper()
	s, err := e.Open(ctx, matmulSpec())
	if err != nil {
		return err
	}
	defer s.Close()
	out, err := s.Forward(ctx, 0, map[int64]*tensor.Dense{1: tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{1, 2}))})
	if err != nil {
		t.Fatal(err)
	}
	if got := out[3].Float64s()[0]; got != 11 {
		t.Fatalf("y = %v, want 11", got)
	}
	return nil
}

// TestProviderOverP2P: a provider served on a host's listener is reached
// at its peer address through the requester's host; the client knows
// the provider's identity key and its connection's path, and sessions
// run over it.
func TestProviderOverP2P(t *testing.T) {
	provKey := newKey(t)
	seed := start(t, p2p.Config{Seed: true})
	prov := start(t, p2p.Config{Key: provKey, Seeds: seed.Addrs(), Reserve: true})
	serve(t, prov, transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithIdentity(provKey)))
	req := start(t, p2p.Config{Seeds: seed.Addrs(), DirectWait: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := transport.Connect(ctx, prov.Address(), req.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := c.IdentityKey(), provKey.Public().(ed25519.PublicKey); !want.Equal(got) {
		t.Errorf("identity key %x, want the provider's %x", got, want)
	}
	if got := c.Path(); got != p2p.PathRelayed && got != p2p.PathDirect {
		t.Errorf("path %q, want %q or %q", got, p2p.PathRelayed, p2p.PathDirect)
	}
	if got, want := c.Path(), req.Path(prov.Address()); got != want {
		t.Errorf("client path %q, host path %q", got, want)
	}
	if c.Addr() != prov.Address() {
		t.Errorf("addr %q, want %q", c.Addr(), prov.Address())
	}
	if err := forward(ctx, t, c); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseBoundToPeer: a provider on libp2p takes a lease bound to a
// requester key only over a connection from that key's peer. A second
// requester that holds the first one's lease and key signs valid proofs,
// but its connection comes from its own peer, and is refused.
func TestLeaseBoundToPeer(t *testing.T) {
	leaseKey, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	leasePub := leaseKey.Public().(ed25519.PublicKey)
	seed := start(t, p2p.Config{Seed: true})
	serve(t, seed, seednode.NewRegistry(seednode.WithLeaseSigning(leaseKey, time.Hour),
		seednode.WithProber(seednode.DialProber(5*time.Second, seed.DialOptions()...))))
	seedAddr := "/p2p/" + seed.ID().String()

	provKey := newKey(t)
	prov := start(t, p2p.Config{Key: provKey, Seeds: seed.Addrs(), Reserve: true})
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithIdentity(provKey),
		transport.WithLeaseKey(leasePub, prov.Address()))
	serve(t, prov, srv)
	actx, stop := context.WithCancel(context.Background())
	announced := make(chan error, 1)
	go func() { announced <- srv.Announce(actx, seedAddr, prov.Address(), prov.DialOptions()...) }()
	t.Cleanup(func() {
		stop()
		<-announced
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k1 := newKey(t)
	req1 := start(t, p2p.Config{Key: k1, Seeds: seed.Addrs(), DirectWait: -1})
	var entry string
	for i := 0; i < 200; i++ {
		es, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 1}, req1.DialOptions()...)
		if err == nil {
			if es[0].Address != prov.Address() || es[0].Lease == "" {
				t.Fatalf("entry %q with lease %q, want %q with a lease", es[0].Address, es[0].Lease, prov.Address())
			}
			entry = es[0].Lease
			break
		}
		if !errors.Is(err, seednode.ErrNotEnough) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if entry == "" {
		t.Fatal("the provider did not register within 10 s")
	}

	execs, _, release, err := seednode.Lease(ctx, seedAddr, seednode.Need{N: 1}, req1.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := forward(ctx, t, execs[0]); err != nil {
		t.Fatalf("the leasing requester's session: %v", err)
	}

	// Requester 2 presents requester 1's lease and signs with its key.
	req2 := start(t, p2p.Config{Seeds: seed.Addrs(), DirectWait: -1})
	c, err := transport.Connect(ctx, prov.Address(), transport.WithDialer(req2.DialContext),
		transport.WithLease(entry), transport.WithRequesterKey(k1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = forward(ctx, t, c)
	var ae *transport.AuthError
	if !errors.As(err, &ae) || ae.Reason != transport.ReasonOtherRequester || !errors.Is(err, transport.ErrPermissionDenied) {
		t.Fatalf("open from another peer with the lease and key of the first: got %v, want an AuthError of reason %q matching ErrPermissionDenied",
			err, transport.ReasonOtherRequester)
	}
	// The same lease and key over requester 1's own host still open.
	c1, err := transport.Connect(ctx, prov.Address(), transport.WithDialer(req1.DialContext),
		transport.WithLease(entry), transport.WithRequesterKey(k1))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := forward(ctx, t, c1); err != nil {
		t.Fatalf("the lease from its own peer: %v", err)
	}
}

// TestRingOverP2P: replicas on providers reached over libp2p sum their
// gradients in a ring between the providers, each dialling the next
// through its own host (transport.WithPeerDialOptions) and sending its
// segments on the ring wire over a libp2p stream, and train as replicas
// that sum through the requester do.
func TestRingOverP2P(t *testing.T) {
	seed := start(t, p2p.Config{Seed: true})
	req := start(t, p2p.Config{Seeds: seed.Addrs(), DirectWait: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var execs [][]exec.Executor
	var srvs []*transport.Server
	for range 3 {
		key := newKey(t)
		h := start(t, p2p.Config{Key: key, Seeds: seed.Addrs(), DirectWait: -1})
		srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithIdentity(key),
			transport.WithPeerDialOptions(h.DialOptions()...))
		serve(t, h, srv)
		srvs = append(srvs, srv)
		// At its own address: the hosts reach each other on loopback.
		c, err := transport.Connect(ctx, h.Addrs()[0], req.DialOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		execs = append(execs, []exec.Executor{c})
	}
	m := exectest.MLP(tensor.Float64, 12, 6, 5, 3)
	g, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	feeds := make(map[int64]*tensor.Dense)
	for n, v := range m.Batch(rand.New(rand.NewSource(4))) {
		feeds[int64(n.ID())] = v
	}
	train := func(red exec.Reduction) (map[int64]*tensor.Dense, exec.ReplicaStats) {
		rs, err := exec.NewReplicas(ctx, g, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(g, 1), execs,
			exec.WithSolver(exec.SGD(0.05, 0.9)), exec.WithReduction(red))
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		for s := range 3 {
			if _, err := rs.Step(ctx, feeds); err != nil {
				t.Fatalf("%v, step %d: %v", red, s, err)
			}
		}
		p, err := rs.Params(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p, rs.Stats()
	}
	ring, st := train(exec.ReduceRing)
	if st.RingParts != 1 || st.RingBytes <= 0 {
		t.Errorf("ring stats %+v: want one part summed in a ring", st)
	}
	for i, srv := range srvs {
		if wire, streams := srv.RingRounds(); wire == 0 || streams != 0 {
			t.Errorf("provider %d sent %d rounds on the ring wire and %d on streams; want all on the wire", i, wire, streams)
		}
	}
	want, _ := train(exec.ReduceRequester)
	for id, w := range want {
		for i, v := range w.Float64s() {
			if d := ring[id].Float64s()[i] - v; d > 1e-12 || d < -1e-12 {
				t.Fatalf("parameter %d[%d]: %v in the ring, %v through the requester", id, i, ring[id].Float64s()[i], v)
			}
		}
	}
}

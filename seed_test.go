package rookery_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand"
	"net"
	"testing"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// seedCluster starts a seed node and n providers that announce
// themselves to it, all in this process on loopback, and returns the
// seed's address once all n are registered. With a key, the seed node
// signs leases with it and the providers require them.
func seedCluster(t *testing.T, n int, key ed25519.PrivateKey) string {
	t.Helper()
	addr, _ := seedClusterServers(t, n, key)
	return addr
}

// seedClusterServers is seedCluster, and also returns the providers'
// servers.
func seedClusterServers(t *testing.T, n int, key ed25519.PrivateKey) (string, []*transport.Server) {
	t.Helper()
	var servers []*transport.Server
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedOpts := []seednode.Option{seednode.WithTTL(5 * time.Second)}
	if key != nil {
		seedOpts = append(seedOpts, seednode.WithLeaseSigning(key, time.Minute))
	}
	seed := seednode.NewRegistry(seedOpts...)
	go seed.Serve(lis)
	t.Cleanup(seed.Stop)
	addr := lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for i := 0; i < n; i++ {
		plis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srvOpts := []transport.ServerOption{transport.WithBenchmark(0)}
		if key != nil {
			srvOpts = append(srvOpts, transport.WithLeaseKey(key.Public().(ed25519.PublicKey), plis.Addr().String()))
		}
		srv := transport.NewServer(exec.NewCPU(), srvOpts...)
		servers = append(servers, srv)
		go srv.Serve(plis)
		done := make(chan error, 1)
		go func() { done <- srv.Announce(ctx, addr, plis.Addr().String()) }()
		t.Cleanup(func() {
			cancel()
			<-done
			srv.Stop()
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := seednode.Find(fctx, addr, seednode.Need{N: n})
		fcancel()
		if err == nil {
			return addr, servers
		}
		if time.Now().After(deadline) {
			t.Fatalf("providers did not register: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func classifier(batch int) (*gorgonia.ExprGraph, *gorgonia.Node, gorgonia.Nodes, gorgonia.Nodes, map[*gorgonia.Node]*tensor.Dense) {
	const in, hidden, classes = 12, 16, 3
	rng := rand.New(rand.NewSource(5))
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, classes), gorgonia.WithName("y"))
	randDense := func(scale float64, shape ...int) *tensor.Dense {
		d := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(shape...))
		for i := range d.Float64s() {
			d.Float64s()[i] = rng.NormFloat64() * scale
		}
		return d
	}
	w1 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(in, hidden), gorgonia.WithName("w1"), gorgonia.WithValue(randDense(0.3, in, hidden)))
	w2 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(hidden, classes), gorgonia.WithName("w2"), gorgonia.WithValue(randDense(0.3, hidden, classes)))
	h := gorgonia.Must(gorgonia.Tanh(gorgonia.Must(gorgonia.Mul(x, w1))))
	logits := gorgonia.Must(gorgonia.Mul(h, w2))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(
		gorgonia.Must(gorgonia.LogSoftMax(logits)), y))))))
	xs := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, in))
	ys := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, classes))
	for i := 0; i < batch; i++ {
		for j := 0; j < in; j++ {
			xs.Float64s()[i*in+j] = rng.NormFloat64()
		}
		ys.Float64s()[i*classes+i%classes] = 1
	}
	return g, loss, gorgonia.Nodes{w1, w2}, gorgonia.Nodes{x, y}, map[*gorgonia.Node]*tensor.Dense{x: xs, y: ys}
}

// TestWithSeedNode trains through a seed node and two providers and gets
// the losses of the same training on two in-process executors of the
// providers' kind (the tape machine), bit for bit.
func TestWithSeedNode(t *testing.T) {
	addr := seedCluster(t, 2, nil)
	ctx := context.Background()
	run := func(opts ...rookery.Option) []float64 {
		g, loss, learn, inputs, feeds := classifier(8)
		opts = append(opts, rookery.WithMicroBatches(2), rookery.WithSolver(exec.SGD(0.1, 0.9)),
			rookery.WithPartitionOptions(partition.WithMaxImbalance(1)))
		tr, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		var losses []float64
		for i := 0; i < 5; i++ {
			l, err := tr.Step(ctx, map[*gorgonia.Node]*tensor.Dense{inputs[0]: feeds[inputs[0]], inputs[1]: feeds[inputs[1]]})
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, l)
		}
		return losses
	}
	want := run(rookery.WithExecutors(exec.NewCPU(), exec.NewCPU()))
	got := run(rookery.WithSeedNode(addr, 2))
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: loss %v through the seed node, %v in process", i, got[i], want[i])
		}
	}

	g, loss, learn, inputs, _ := classifier(8)
	if _, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, rookery.WithSeedNode(addr, 3),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(1))); !errors.Is(err, seednode.ErrNotEnough) {
		t.Errorf("asking for 3 of 2 providers: got %v, want ErrNotEnough", err)
	}
	// The lease error wins over a part count that would not match anyway.
	if _, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, rookery.WithSeedNode(addr, 3), rookery.WithParts(4)); !errors.Is(err, seednode.ErrNotEnough) {
		t.Errorf("asking for 3 of 2 providers with 4 parts: got %v, want ErrNotEnough", err)
	}
}

// TestWithSeedNodeLeases trains through a seed node that signs leases and
// providers that require them: WithSeedNode carries each provider's lease,
// and the training matches the same one in process. A requester that
// dials a provider without its lease is refused.
func TestWithSeedNodeLeases(t *testing.T) {
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	addr := seedCluster(t, 2, key)
	ctx := context.Background()
	run := func(opts ...rookery.Option) []float64 {
		g, loss, learn, inputs, feeds := classifier(8)
		opts = append(opts, rookery.WithMicroBatches(2), rookery.WithSolver(exec.SGD(0.1, 0.9)),
			rookery.WithPartitionOptions(partition.WithMaxImbalance(1)))
		tr, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		var losses []float64
		for i := 0; i < 3; i++ {
			l, err := tr.Step(ctx, map[*gorgonia.Node]*tensor.Dense{inputs[0]: feeds[inputs[0]], inputs[1]: feeds[inputs[1]]})
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, l)
		}
		return losses
	}
	want := run(rookery.WithExecutors(exec.NewCPU(), exec.NewCPU()))
	got := run(rookery.WithSeedNode(addr, 2))
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: loss %v through leased providers, %v in process", i, got[i], want[i])
		}
	}

	entries, err := seednode.Find(ctx, addr, seednode.Need{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if entries[0].Lease == "" {
		t.Fatal("the seed node handed out no lease")
	}
	c, err := transport.Connect(ctx, entries[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, loss, learn, inputs, _ := classifier(8)
	_, err = rookery.NewTrainer(ctx, g, loss, learn, inputs, rookery.WithExecutors(c))
	if !errors.Is(err, transport.ErrUnauthenticated) {
		t.Errorf("a session without a lease: got %v, want ErrUnauthenticated", err)
	}
}

// TestWithSeedNodeSpares leases spares beyond the parts' providers: with
// as many providers as parts and no more, the lease fails; with one
// more, the trainer trains under a guard that holds it as a spare.
func TestWithSeedNodeSpares(t *testing.T) {
	ctx := context.Background()
	g, loss, learn, inputs, feeds := classifier(8)
	opts := []rookery.Option{rookery.WithMicroBatches(2), rookery.WithSolver(exec.SGD(0.1, 0.9)),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(1))}
	two := seedCluster(t, 2, nil)
	if _, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, append(opts, rookery.WithSeedNode(two, 2), rookery.WithSeedNodeSpares(1))...); !errors.Is(err, seednode.ErrNotEnough) {
		t.Fatalf("2 providers and 1 spare of 2: got %v, want ErrNotEnough", err)
	}
	three := seedCluster(t, 3, nil)
	tr, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, append(opts, rookery.WithSeedNode(three, 2), rookery.WithSeedNodeSpares(1))...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Guard() == nil {
		t.Fatal("no guard: the spare was not given to the trainer")
	}
	if _, err := tr.Step(ctx, feeds); err != nil {
		t.Fatal(err)
	}
}

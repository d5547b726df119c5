package seednode_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

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

// forward runs s once and checks y = 1·3 + 2·4.
func forward(t *testing.T, s exec.Session) {
	t.Helper()
	out, err := s.Forward(context.Background(), 0, map[int64]*tensor.Dense{1: tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{1, 2}))})
	if err != nil {
		t.Fatal(err)
	}
	if got := out[3].Float64s()[0]; got != 11 {
		t.Fatalf("y = %v, want 11", got)
	}
}

// TestLease: Lease connects to providers that require leases with the
// lease the seed node signed for each; the connections stay while the
// caller holds them or a session is open, and close when both are gone.
func TestLease(t *testing.T) {
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startRegistry(t, seednode.WithLeaseSigning(key, time.Minute))
	startProviders(t, addr, 2, key)
	ctx := context.Background()
	spec := matmulSpec()

	if _, _, _, err := seednode.Lease(ctx, addr, seednode.Need{N: 3}); !errors.Is(err, seednode.ErrNotEnough) {
		t.Fatalf("3 of 2 providers: got %v, want ErrNotEnough", err)
	}
	execs, caps, release, err := seednode.Lease(ctx, addr, seednode.Need{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	// The providers measured no speed of their own; the seed node did.
	if len(execs) != 2 || len(caps) != 2 || !(caps[0] >= caps[1] && caps[1] > 0) {
		t.Fatalf("got %d executors and capacities %v; want 2 and the speeds the seed node measured, fastest first", len(execs), caps)
	}
	// While held, sessions open, close and open again.
	for _, e := range execs {
		for range 2 {
			s, err := e.Open(ctx, spec)
			if err != nil {
				t.Fatalf("open with the lease: %v", err)
			}
			forward(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := execs[0].Open(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	release()
	release() // a second release does nothing
	// The open session keeps its connection; the other is closed.
	forward(t, s)
	if _, err := execs[1].Open(ctx, spec); !errors.Is(err, exec.ErrClosed) {
		t.Errorf("open after release: got %v, want exec.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := execs[0].Open(ctx, spec); !errors.Is(err, exec.ErrClosed) {
		t.Errorf("open after release and the last session's close: got %v, want exec.ErrClosed", err)
	}
}

// TestLeaseCapacities: the providers' measured speeds come back, in the
// order of the executors, fastest first.
func TestLeaseCapacities(t *testing.T) {
	_, addr := startRegistry(t)
	startProviders(t, addr, 2, nil, transport.WithBenchmark(time.Millisecond))
	execs, caps, release, err := seednode.Lease(context.Background(), addr, seednode.Need{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if len(execs) != 2 || len(caps) != 2 || !(caps[1] > 0) || caps[0] < caps[1] {
		t.Fatalf("capacities %v of %d executors; want 2 positive, fastest first", caps, len(execs))
	}
}

// TestLeaseSkipsSilentProvider: a provider listed first that does not
// answer is skipped, and Lease takes the next one the seed node knows.
func TestLeaseSkipsSilentProvider(t *testing.T) {
	seed, seedAddr := startRegistry(t, seednode.WithProber(trust))
	dead := &claims{key: keyOf(7), clock: transport.SystemClock}
	if _, err := seed.Register(context.Background(), dead.register(serveDead(t), &rookeryv1.Capabilities{Gflops: 1000})); err != nil {
		t.Fatal(err)
	}
	startProviders(t, seedAddr, 1, nil)
	registered(t, seedAddr, 2)
	// How long to wait for a provider: the silent one costs this much,
	// and the live one must answer within it even on a loaded machine.
	const wait = 2 * time.Second
	execs, _, release, err := seednode.Lease(context.Background(), seedAddr, seednode.Need{N: 1, ConnectTimeout: wait})
	if err != nil {
		t.Fatalf("Lease with one silent provider listed first: %v", err)
	}
	defer release()
	if len(execs) != 1 {
		t.Fatalf("got %d executors, want 1", len(execs))
	}
	if _, _, _, err := seednode.Lease(context.Background(), seedAddr, seednode.Need{N: 2, ConnectTimeout: wait}); !errors.Is(err, seednode.ErrNotEnough) {
		t.Fatalf("asking for both: %v, want ErrNotEnough", err)
	}
}

// TestFindWantsRequesterKey: a seed node that signs leases binds each to
// the requester key Find sends and names an unauthenticated requester by
// it; it refuses an unauthenticated Find without a key, whose lease
// anyone who saw it could replay, and a key of the wrong size.
func TestFindWantsRequesterKey(t *testing.T) {
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	reg, addr := startRegistry(t, seednode.WithLeaseSigning(key, time.Minute))
	startProviders(t, addr, 1, key)
	ctx := context.Background()
	alice := keyOf(9).Public().(ed25519.PublicKey)
	resp, err := reg.Find(ctx, &rookeryv1.FindRequest{N: 1, RequesterKey: alice})
	if err != nil {
		t.Fatal(err)
	}
	l, err := transport.ParseLease(resp.Providers[0].Lease, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if l.Requester != transport.KeyRequester(alice) || !alice.Equal(l.RequesterKey) {
		t.Fatalf("lease names %q with key %x, want %q", l.Requester, l.RequesterKey, transport.KeyRequester(alice))
	}
	_, err = reg.Find(ctx, &rookeryv1.FindRequest{N: 1, Requester: "r1"})
	var ae *transport.AuthError
	if err = transport.FromStatus(ctx, "find", err); !errors.As(err, &ae) || ae.Reason != transport.ReasonMissing {
		t.Fatalf("Find without a key: got %v, want an unauthenticated *AuthError (missing)", err)
	}
	if _, err := reg.Find(ctx, &rookeryv1.FindRequest{N: 1, RequesterKey: alice[:31]}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a 31-byte key: got %v, want InvalidArgument", err)
	}
}

package transport_test

import (
	"context"
	"crypto/ed25519"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// keyFrom returns a fixed requester key, different for each n.
func keyFrom(n byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = 'r', n
	return ed25519.NewKeyFromSeed(seed)
}

// TestLeaseBoundToRequesterKey: a seed node that authenticates nobody
// binds each lease to the key its requester sent. The requester trains
// with it end to end (seednode.Lease, Open, Forward); anyone else who
// saw the lease cannot use it: without a proof of the key, with another
// key, with a stale proof or a proof for another call, the provider
// refuses; and a session opened with the lease belongs to the key.
func TestLeaseBoundToRequesterKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leaseKey, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := leaseKey.Public().(ed25519.PublicKey)
	seedLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := seedLis.Addr().String()
	seed := seednode.NewRegistry(seednode.WithLeaseSigning(leaseKey, time.Minute))
	seedDone := make(chan error, 1)
	go func() { seedDone <- seed.Serve(seedLis) }()
	defer func() {
		seed.Stop()
		<-seedDone
	}()
	srv, addr := leaseServer(t, pub)
	annCtx, annCancel := context.WithCancel(ctx)
	annDone := make(chan error, 1)
	go func() { annDone <- srv.Announce(annCtx, seedAddr, addr) }()
	defer func() {
		annCancel()
		<-annDone
	}()

	alice, bob, mallory := keyFrom(1), keyFrom(2), keyFrom(3)
	alicePub := alice.Public().(ed25519.PublicKey)
	var entry *rookeryv1.ProviderEntry
	for i := 0; ; i++ {
		es, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 1}, transport.WithRequesterKey(alice))
		if err == nil {
			entry = es[0]
			break
		}
		if i == 500 {
			t.Fatalf("the provider did not register: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, err := transport.ParseLease(entry.Lease, pub)
	if err != nil {
		t.Fatal(err)
	}
	if l.Requester != transport.KeyRequester(alicePub) || !alicePub.Equal(l.RequesterKey) {
		t.Fatalf("lease names %q with key %x, want alice's key", l.Requester, l.RequesterKey)
	}

	// Alice, through the seed node: Lease, Open, Forward.
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	execs, _, release, err := seednode.Lease(ctx, seedAddr, seednode.Need{N: 1}, transport.WithRequesterKey(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	s, err := openFirstPart(t, execs[0], m)
	if err != nil {
		t.Fatalf("alice's own lease: %v", err)
	}
	if _, err := s.Forward(ctx, 0, map[int64]*tensor.Dense{m.data[0]: m.feeds[m.data[0]]}); err != nil {
		t.Fatalf("alice's Forward: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Her lease from Find, given to Connect with her key, opens a session.
	aliceC, err := transport.Connect(ctx, addr, transport.WithLease(entry.Lease), transport.WithRequesterKey(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer aliceC.Close()
	s, err = openFirstPart(t, aliceC, m)
	if err != nil {
		t.Fatalf("alice's lease through Connect: %v", err)
	}
	id, _ := transport.SessionID(s)

	// Mallory replays alice's lease with her own key.
	stolen, err := transport.Connect(ctx, addr, transport.WithLease(entry.Lease), transport.WithRequesterKey(mallory))
	if err != nil {
		t.Fatal(err) // Describe needs no lease
	}
	defer stolen.Close()
	_, err = openFirstPart(t, stolen, m)
	requireAuth(t, err, transport.ErrUnauthenticated, transport.ReasonKeyProof)
	w := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(4))
	requireAuth(t, stolen.Attach(id, 0).Put(ctx, "x", w), transport.ErrUnauthenticated, transport.ReasonKeyProof)

	// Bob, with a lease of his own, cannot use alice's session.
	es, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 1}, transport.WithRequesterKey(bob))
	if err != nil {
		t.Fatal(err)
	}
	bobC, err := transport.Connect(ctx, addr, transport.WithLease(es[0].Lease), transport.WithRequesterKey(bob))
	if err != nil {
		t.Fatal(err)
	}
	defer bobC.Close()
	requireAuth(t, bobC.Attach(id, 0).Put(ctx, "x", w), transport.ErrPermissionDenied, transport.ReasonNotOwner)

	// Raw calls with alice's lease and a proof that is missing, stale,
	// for another call, or right.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	closeWith := func(proof string) error {
		md := metadata.Pairs("authorization", "Lease "+entry.Lease)
		if proof != "" {
			md.Append(transport.LeaseProofHeader, proof)
		}
		_, err := rookeryv1.NewProviderClient(cc).Close(metadata.NewOutgoingContext(ctx, md), &rookeryv1.CloseRequest{Session: id})
		if err != nil {
			return transport.FromStatus(ctx, "close", err)
		}
		return nil
	}
	now := time.Now()
	closeMethod := rookeryv1.Provider_Close_FullMethodName
	for _, tc := range []struct {
		name, proof, detail string
	}{
		{"no proof", "", "carries no"},
		{"stale", transport.SignLeaseProof(alice, entry.Lease, addr, closeMethod, now.Add(-3*time.Minute)), "beyond"},
		{"from the future", transport.SignLeaseProof(alice, entry.Lease, addr, closeMethod, now.Add(3*time.Minute)), "beyond"},
		{"for another method", transport.SignLeaseProof(alice, entry.Lease, addr, rookeryv1.Provider_Step_FullMethodName, now), "not signed"},
		{"for another address", transport.SignLeaseProof(alice, entry.Lease, "127.0.0.1:1", closeMethod, now), "not signed"},
		{"by another key", transport.SignLeaseProof(mallory, entry.Lease, addr, closeMethod, now), "not signed"},
		{"garbled", "12.x", "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := closeWith(tc.proof)
			requireAuth(t, err, transport.ErrUnauthenticated, transport.ReasonKeyProof)
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("got %v, want it to say %q", err, tc.detail)
			}
		})
	}
	if srv.Sessions() != 1 {
		t.Fatalf("%d sessions after refused closes, want 1", srv.Sessions())
	}
	if err := closeWith(transport.SignLeaseProof(alice, entry.Lease, addr, closeMethod, now)); err != nil {
		t.Fatalf("alice's raw Close with a fresh proof: %v", err)
	}
	if srv.Sessions() != 0 {
		t.Fatalf("%d sessions after alice's Close, want 0", srv.Sessions())
	}
}

// TestLeaseProofClock: a provider checks a proof's time against its own
// clock (WithClock), within WithProofWindow.
func TestLeaseProofClock(t *testing.T) {
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	leaseKey, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := leaseKey.Public().(ed25519.PublicKey)
	const addr = "127.0.0.1:7070"
	alice := keyFrom(1)
	now := time.Now()
	tok, err := transport.SignLease(leaseKey, transport.Lease{ProviderAddress: addr, Requester: transport.KeyRequester(alice.Public().(ed25519.PublicKey)),
		RequesterKey: alice.Public().(ed25519.PublicKey), IssuedAt: now, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ahead := fakeclock.New(now.Add(3 * time.Minute))
	for _, tc := range []struct {
		name string
		opts []transport.ServerOption
		ok   bool
	}{
		{"in step", nil, true},
		{"3 minutes ahead", []transport.ServerOption{transport.WithClock(ahead)}, false},
		{"3 minutes ahead, 5-minute window", []transport.ServerOption{transport.WithClock(ahead), transport.WithProofWindow(5 * time.Minute)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]transport.ServerOption{transport.WithBenchmark(0), transport.WithLeaseKey(pub, addr)}, tc.opts...)
			c, err := bufDialer(t, transport.NewServer(exec.NewCPU(), opts...))(transport.WithLease(tok), transport.WithRequesterKey(alice))
			if err != nil {
				t.Fatal(err)
			}
			_, err = openFirstPart(t, c, m)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			requireAuth(t, err, transport.ErrUnauthenticated, transport.ReasonKeyProof)
		})
	}
}

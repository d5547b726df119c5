package seednode_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// TestSignedClaims: registrations, heartbeats and deregistrations must
// be signed; an entry is renewed, replaced or removed only by the key
// that registered it; a claim is refused when replayed or made far from
// the seed node's time.
func TestSignedClaims(t *testing.T) {
	clock := newClock()
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithProber(trust))
	defer seed.Stop()
	ctx := context.Background()
	code := func(what string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: got %v, want %v", what, err, want)
		}
	}
	code("an unsigned registration", second(seed.Register(ctx, &rookeryv1.RegisterRequest{Address: "127.0.0.1:7070"})), codes.Unauthenticated)

	owner, thief := &claims{key: keyOf(1), clock: clock}, &claims{key: keyOf(2), clock: clock}
	reg, err := seed.Register(ctx, owner.register("127.0.0.1:7070", &rookeryv1.Capabilities{Gflops: 10}))
	if err != nil {
		t.Fatal(err)
	}
	forged := owner.register("127.0.0.1:7070", nil)
	forged.Signed.Signature[0] ^= 1
	code("a forged signature", second(seed.Register(ctx, forged)), codes.Unauthenticated)
	code("another key at the address", second(seed.Register(ctx, thief.register("127.0.0.1:7070", nil))), codes.PermissionDenied)
	code("another key's heartbeat", second(seed.Heartbeat(ctx, thief.heartbeat(reg.Id, 0))), codes.PermissionDenied)
	code("another key's deregister by the published id", second(seed.Deregister(ctx, thief.deregister(reg.Id))), codes.PermissionDenied)
	code("an unsigned deregister", second(seed.Deregister(ctx, &rookeryv1.DeregisterRequest{Id: reg.Id})), codes.Unauthenticated)
	code("a registration claim sent as a heartbeat", second(seed.Heartbeat(ctx, &rookeryv1.HeartbeatRequest{Signed: owner.register("127.0.0.1:7070", nil).Signed})), codes.Unauthenticated)

	hb := owner.heartbeat(reg.Id, 1)
	if _, err := seed.Heartbeat(ctx, hb); err != nil {
		t.Fatalf("the owner's heartbeat: %v", err)
	}
	code("a replayed heartbeat", second(seed.Heartbeat(ctx, hb)), codes.Unauthenticated)
	list, _ := seed.List(ctx, &rookeryv1.ListRequest{})
	if len(list.Providers) != 1 || !bytes.Equal(list.Providers[0].IdentityKey, keyOf(1).Public().(ed25519.PublicKey)) {
		t.Fatalf("listing: %v", list.Providers)
	}
	old := owner.heartbeat(reg.Id, 1)
	clock.Advance(seednode.DefaultClaimWindow + time.Second)
	if _, err := seed.Heartbeat(ctx, owner.heartbeat(reg.Id, 1)); status.Code(err) != codes.NotFound {
		t.Fatalf("after the TTL: %v, want NotFound", err) // expired meanwhile; register again
	}
	code("a claim older than the window", second(seed.Heartbeat(ctx, old)), codes.Unauthenticated)

	if reg, err = seed.Register(ctx, owner.register("127.0.0.1:7070", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Deregister(ctx, owner.deregister(reg.Id)); err != nil {
		t.Fatalf("the owner's deregister: %v", err)
	}
	if list, _ := seed.List(ctx, &rookeryv1.ListRequest{}); len(list.Providers) != 0 {
		t.Fatalf("after the owner deregistered: %v", list.Providers)
	}
}

// TestAddressCheck: the seed node lists a registration only when the
// address answers its challenge with the key that signed it: nothing
// listening, or another provider's key, is refused; a provider that
// reports a lower speed there than it registered is marked and ranked
// by none.
func TestAddressCheck(t *testing.T) {
	seed := seednode.NewRegistry(seednode.WithProber(seednode.DialProber(10 * time.Second)))
	defer seed.Stop()
	ctx := context.Background()
	_, addr := serveProvider(t, nil, transport.WithIdentity(keyOf(5)))
	stranger := &claims{key: keyOf(9), clock: transport.SystemClock}
	_, err := seed.Register(ctx, stranger.register(addr, &rookeryv1.Capabilities{Gflops: 1e6}))
	var ae *transport.AuthError
	if status.Code(err) != codes.Unauthenticated || !errors.As(transport.FromStatus(ctx, "register", err), &ae) || ae.Reason != transport.ReasonUnverified {
		t.Fatalf("another key at a live provider's address: got %v, want Unauthenticated (unverified)", err)
	}
	dead := serveDead(t)
	if _, err := seed.Register(ctx, stranger.register(dead, nil)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an address where nothing answers: got %v, want Unauthenticated", err)
	}

	// The provider's own key, but a speed it does not report.
	p := &claims{key: keyOf(5), clock: transport.SystemClock}
	if _, err := seed.Register(ctx, p.register(addr, &rookeryv1.Capabilities{Gflops: 5000})); err != nil {
		t.Fatalf("the provider's own key: %v", err)
	}
	list, _ := seed.List(ctx, &rookeryv1.ListRequest{})
	if len(list.Providers) != 1 || !list.Providers[0].UnverifiedSpeed || list.Providers[0].ProbeRttUs <= 0 {
		t.Fatalf("listing: %v", list.Providers)
	}
}

// serveDead returns a loopback address where nothing listens.
func serveDead(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

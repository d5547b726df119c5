package transport_test

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	"github.com/rookery-ml/rookery/transport"
)

// TestSessionQuota: one requester that opens sessions and leaves them
// cannot take more than its quota of a provider's slots; another
// requester is still admitted, and the refusal names the provider and
// the limit.
func TestSessionQuota(t *testing.T) {
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithName("p1"),
		transport.WithTokens(tokens(t, aliceToken+" alice\n"+bobToken+" bob\n")),
		transport.WithLimits(transport.Limits{MaxSessions: 8})) // a quota of 2 each
	connect := bufDialer(t, srv)
	alice, err := connect(transport.WithToken(aliceToken))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := connect(transport.WithToken(bobToken))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := openFirstPart(t, alice, m); err != nil {
			t.Fatalf("alice's session %d: %v", i, err)
		}
	}
	_, err = openFirstPart(t, alice, m)
	requireLimit(t, err, "sessions per identity", true)
	if !strings.Contains(err.Error(), "provider p1") || !strings.Contains(err.Error(), "limit of 2") {
		t.Errorf("got %q, want the provider and the limit named", err)
	}
	for i := range 2 {
		if _, err := openFirstPart(t, bob, m); err != nil {
			t.Fatalf("bob's session %d beside alice's: %v", i, err)
		}
	}
	if n := srv.Sessions(); n != 4 {
		t.Errorf("%d sessions open, want 4", n)
	}
}

// TestUnusedSessions: sessions that no call used since their Open are
// closed after the unused timeout, well before the idle timeout, and
// when the provider is full they make room for a requester that holds
// fewer sessions than their owner.
func TestUnusedSessions(t *testing.T) {
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithClock(clock),
		transport.WithTokens(tokens(t, aliceToken+" alice\n"+bobToken+" bob\n")),
		transport.WithLimits(transport.Limits{MaxSessions: 4, MaxSessionsPerIdentity: 4, IdleTimeout: time.Hour, UnusedTimeout: time.Minute}))
	connect := bufDialer(t, srv)
	alice, err := connect(transport.WithToken(aliceToken))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := connect(transport.WithToken(bobToken))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := openFirstPart(t, alice, m); err != nil {
			t.Fatalf("alice's session %d: %v", i, err)
		}
	}
	// The provider is full of alice's unused sessions: bob is admitted
	// in place of one of them.
	s, err := openFirstPart(t, bob, m)
	if err != nil {
		t.Fatalf("bob on a provider full of unused sessions: %v", err)
	}
	if n := srv.Sessions(); n != 4 {
		t.Errorf("%d sessions open, want 4", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Put(ctx, "x", tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(4))); err != nil {
		t.Fatal(err)
	}
	// Bob holds one, alice three: alice is not admitted in place of bob's.
	_, err = openFirstPart(t, alice, m)
	requireLimit(t, err, "sessions", true)
	idle(clock, 2*time.Minute)
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("%d sessions open after the unused timeout, want bob's alone", n)
	}
	if err := s.Put(ctx, "x", tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(4))); err != nil {
		t.Errorf("bob's session, used, after the unused timeout: %v", err)
	}
}

// TestLeaseBoundToRequester: a lease that a seed node issued to an
// authenticated requester opens sessions for that requester only;
// another caller, authenticated or not, cannot replay it. A lease for an
// anonymous requester is for anonymous callers only.
func TestLeaseBoundToRequester(t *testing.T) {
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	const addr = "127.0.0.1:7070"
	now := time.Now()
	lease := func(requester string) string {
		tok, err := transport.SignLease(key, transport.Lease{ProviderAddress: addr, Requester: requester, IssuedAt: now, Expires: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	pub := key.Public().(ed25519.PublicKey)
	authed := bufDialer(t, transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithLeaseKey(pub, addr),
		transport.WithTokens(tokens(t, aliceToken+" alice\n"+bobToken+" bob\n"))))
	anon := bufDialer(t, transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithLeaseKey(pub, addr)))
	tests := []struct {
		name    string
		connect func(...transport.DialOption) (*transport.Client, error)
		opts    []transport.DialOption
		ok      bool
	}{
		{"its requester", authed, []transport.DialOption{transport.WithToken(aliceToken), transport.WithLease(lease("token:alice"))}, true},
		{"another requester", authed, []transport.DialOption{transport.WithToken(bobToken), transport.WithLease(lease("token:alice"))}, false},
		{"an anonymous requester's lease", authed, []transport.DialOption{transport.WithToken(bobToken), transport.WithLease(lease("anon:r1"))}, false},
		{"an anonymous caller", anon, []transport.DialOption{transport.WithLease(lease("token:alice"))}, false},
		{"anonymous with an anonymous lease", anon, []transport.DialOption{transport.WithLease(lease("anon:r1"))}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.connect(tc.opts...)
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
			requireAuth(t, err, transport.ErrPermissionDenied, transport.ReasonOtherRequester)
		})
	}
}

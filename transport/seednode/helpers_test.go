package seednode_test

import (
	"context"
	"crypto/ed25519"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// newClock is a fake clock at a fixed start, moved by Advance.
func newClock() *fakeclock.Clock { return fakeclock.New(time.Unix(1_700_000_000, 0)) }

// startRegistry serves a registry on loopback until the test ends.
func startRegistry(t *testing.T, opts ...seednode.Option) (*seednode.Registry, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := seednode.NewRegistry(opts...)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return s, lis.Addr().String()
}

// serveProvider serves an in-process CPU executor on loopback until the
// test ends. With a key, it requires leases signed by it.
func serveProvider(t *testing.T, key ed25519.PrivateKey, opts ...transport.ServerOption) (*transport.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	opts = append([]transport.ServerOption{transport.WithBenchmark(0)}, opts...)
	if key != nil {
		opts = append(opts, transport.WithLeaseKey(key.Public().(ed25519.PublicKey), addr))
	}
	srv := transport.NewServer(exec.NewCPU(), opts...)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return srv, addr
}

// announce runs srv's announce loop to the seed node at seedAddr; the
// function it returns ends the loop and returns the loop's error (later
// calls, and the test's cleanup, return nil).
func announce(t *testing.T, srv *transport.Server, seedAddr, addr string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Announce(ctx, seedAddr, addr) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// startProviders starts n providers announced to the seed node at
// seedAddr and waits until the seed node knows them all. With a key,
// they require leases signed by it.
func startProviders(t *testing.T, seedAddr string, n int, key ed25519.PrivateKey, opts ...transport.ServerOption) {
	t.Helper()
	for range n {
		srv, addr := serveProvider(t, key, opts...)
		announce(t, srv, seedAddr, addr)
	}
	registered(t, seedAddr, n)
}

// eventually waits until ok holds, polling; the test's own timeout bounds
// the wait.
func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	for !ok() {
		time.Sleep(5 * time.Millisecond)
	}
}

// registered waits until the seed node at addr knows n providers.
func registered(t *testing.T, addr string, n int) {
	t.Helper()
	eventually(t, func() bool {
		_, err := seednode.Find(context.Background(), addr, seednode.Need{N: n})
		return err == nil
	})
}

func addrs(es []*rookeryv1.ProviderEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Address)
	}
	return out
}

func tokens(t *testing.T, text string) *transport.TokenSet {
	t.Helper()
	ts, err := transport.ParseTokens(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

const (
	aliceToken = "alice-0123456789abcdef"
	bobToken   = "bob-0123456789abcdef00"
)

func second[T any](_ T, err error) error { return err }

// keyOf returns a deterministic identity key for provider n.
func keyOf(n byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = 'p', n
	return ed25519.NewKeyFromSeed(seed)
}

// trust is a prober that believes every address, for tests of the
// registry's rules on addresses where nothing listens.
func trust(context.Context, string, ed25519.PublicKey) (*rookeryv1.Capabilities, time.Duration, error) {
	return nil, 0, nil
}

// claims signs a provider's claims with key, each stamped with the
// clock's time and newer than the last.
type claims struct {
	key   ed25519.PrivateKey
	clock transport.Clock
	last  int64
}

func (c *claims) sign(cl *rookeryv1.ProviderClaim) *rookeryv1.SignedClaim {
	c.last = max(c.clock.Now().UnixMilli(), c.last+1)
	cl.UnixMs = c.last
	sc, err := transport.SignClaim(c.key, cl)
	if err != nil {
		panic(err)
	}
	return sc
}

func (c *claims) register(addr string, caps *rookeryv1.Capabilities) *rookeryv1.RegisterRequest {
	return &rookeryv1.RegisterRequest{Signed: c.sign(&rookeryv1.ProviderClaim{Kind: rookeryv1.ProviderClaim_KIND_REGISTER, Address: addr, Capabilities: caps})}
}

func (c *claims) heartbeat(id string, sessions int32) *rookeryv1.HeartbeatRequest {
	return &rookeryv1.HeartbeatRequest{Signed: c.sign(&rookeryv1.ProviderClaim{Kind: rookeryv1.ProviderClaim_KIND_HEARTBEAT, Id: id, Sessions: sessions})}
}

func (c *claims) deregister(id string) *rookeryv1.DeregisterRequest {
	return &rookeryv1.DeregisterRequest{Signed: c.sign(&rookeryv1.ProviderClaim{Kind: rookeryv1.ProviderClaim_KIND_DEREGISTER, Id: id})}
}

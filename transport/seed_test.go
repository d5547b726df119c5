package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rookery-ml/rookery/exec"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// fakeClock is a clock that tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func startSeed(t *testing.T, opts ...transport.SeedOption) (*transport.Seed, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := transport.NewSeed(opts...)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return s, lis.Addr().String()
}

// TestSeedRegistry: registered providers are found, matched against
// needs, fastest first; one that stops heart-beating is dropped after the
// TTL, one that keeps beating stays.
func TestSeedRegistry(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	seed, addr := startSeed(t, transport.WithTTL(10*time.Second), transport.WithClock(clock.Now))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc := rookeryv1.NewSeedClient(cc)
	reg := func(address string, gflops float64, mem int64, gpus int) string {
		caps := &rookeryv1.Capabilities{Name: address, Gflops: gflops, MemoryBytes: mem}
		for i := 0; i < gpus; i++ {
			caps.Gpus = append(caps.Gpus, &rookeryv1.GPU{Name: "gpu", MemoryBytes: 16 << 30})
		}
		resp, err := sc.Register(ctx, &rookeryv1.RegisterRequest{Address: address, Capabilities: caps})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Id
	}
	slow := reg("127.0.0.1:7001", 10, 8<<30, 0)
	fast := reg("127.0.0.1:7002", 50, 4<<30, 0)
	gpu := reg("127.0.0.1:7003", 30, 16<<30, 1)

	got, err := transport.FindProviders(ctx, addr, transport.Need{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Id != fast || got[1].Id != gpu {
		t.Fatalf("found %v, want the two fastest", addrs(got))
	}
	got, err = transport.FindProviders(ctx, addr, transport.Need{N: 2, MinMemory: 8 << 30})
	if err != nil || len(got) != 2 || got[0].Id != gpu || got[1].Id != slow {
		t.Fatalf("min memory: found %v, %v", addrs(got), err)
	}
	got, err = transport.FindProviders(ctx, addr, transport.Need{N: 1, GPU: true})
	if err != nil || len(got) != 1 || got[0].Id != gpu {
		t.Fatalf("gpu: found %v, %v", addrs(got), err)
	}
	if _, err := transport.FindProviders(ctx, addr, transport.Need{N: 2, MinGFLOPS: 40}); !errors.Is(err, transport.ErrNotEnough) {
		t.Fatalf("asking too much: got %v, want ErrNotEnough", err)
	}

	// fast and gpu beat; slow does not.
	for i := 0; i < 3; i++ {
		clock.Add(4 * time.Second)
		for _, id := range []string{fast, gpu} {
			if _, err := sc.Heartbeat(ctx, &rookeryv1.HeartbeatRequest{Id: id, Sessions: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	list, err := sc.List(ctx, &rookeryv1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Providers) != 2 || list.Providers[0].Id != fast || list.Providers[1].Id != gpu {
		t.Fatalf("after the TTL: %v, want the two that beat", addrs(list.Providers))
	}
	if _, err := sc.Heartbeat(ctx, &rookeryv1.HeartbeatRequest{Id: slow}); status.Code(err) != codes.NotFound {
		t.Fatalf("heartbeat of an expired provider: got %v, want NotFound", err)
	}

	// The HTTP view shows the same providers with their machines.
	hs := httptest.NewServer(seed.Handler())
	defer hs.Close()
	clock.Add(6 * time.Second) // past half the TTL: "late"
	resp, err := http.Get(hs.URL + "/v1/providers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var view struct {
		Providers []transport.ProviderJSON `json:"providers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
		t.Fatal(err)
	}
	if len(view.Providers) != 2 || view.Providers[0].Address != "127.0.0.1:7002" || view.Providers[0].Machine.GFLOPS != 50 ||
		view.Providers[0].Health != "late" || view.Providers[0].Sessions != 1 || len(view.Providers[1].Machine.GPUs) != 1 {
		t.Fatalf("HTTP view: %+v", view.Providers)
	}
	if want := clock.Now().Add(-6 * time.Second).UTC(); !view.Providers[0].LastHeartbeat.Equal(want) {
		t.Errorf("last heartbeat %v, want %v", view.Providers[0].LastHeartbeat, want)
	}
}

func addrs(es []*rookeryv1.ProviderEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Address)
	}
	return out
}

// TestAnnounce runs a real provider's announce loop against a seed with a
// short TTL: the provider appears, stays while it beats, and goes when
// the loop ends (deregistered) or, if it dies without a word, after the
// TTL.
func TestAnnounce(t *testing.T) {
	const ttl = time.Second
	_, seedAddr := startSeed(t, transport.WithTTL(ttl))
	srv, c := startTCP(t, exec.NewCPU(), transport.WithName("p1"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Announce(ctx, seedAddr, c.Addr()) }()
	find := func() []*rookeryv1.ProviderEntry {
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer fcancel()
		got, _ := transport.FindProviders(fctx, seedAddr, transport.Need{N: 1})
		return got
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("registration", func() bool { return len(find()) == 1 })
	time.Sleep(2 * ttl) // two TTLs: only the heartbeats keep it
	got := find()
	if len(got) != 1 || got[0].Address != c.Addr() || got[0].Capabilities.GetName() != "p1" {
		t.Fatalf("after %v: %v", 2*ttl, addrs(got))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := find(); len(got) != 0 {
		t.Fatalf("after the loop ended: %v", addrs(got))
	}
}

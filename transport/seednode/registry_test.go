package seednode_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// TestRegistry: registered providers are found, matched against needs,
// fastest first; one that stops heart-beating is dropped after the TTL,
// one that keeps beating stays.
func TestRegistry(t *testing.T) {
	clock := newClock()
	seed, addr := startRegistry(t, seednode.WithTTL(10*time.Second), seednode.WithClock(clock), seednode.WithProber(trust))
	ctx := context.Background()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc := rookeryv1.NewSeedClient(cc)
	signers := map[string]*claims{}
	reg := func(address string, gflops float64, mem int64, gpus int) string {
		caps := &rookeryv1.Capabilities{Name: address, Gflops: gflops, MemoryBytes: mem}
		for i := 0; i < gpus; i++ {
			caps.Gpus = append(caps.Gpus, &rookeryv1.GPU{Name: "gpu", MemoryBytes: 16 << 30})
		}
		c := &claims{key: keyOf(byte(len(signers))), clock: clock}
		resp, err := sc.Register(ctx, c.register(address, caps))
		if err != nil {
			t.Fatal(err)
		}
		signers[resp.Id] = c
		return resp.Id
	}
	slow := reg("127.0.0.1:7001", 10, 8<<30, 0)
	fast := reg("127.0.0.1:7002", 50, 4<<30, 0)
	gpu := reg("127.0.0.1:7003", 30, 16<<30, 1)

	got, err := seednode.Find(ctx, addr, seednode.Need{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Id != fast || got[1].Id != gpu {
		t.Fatalf("found %v, want the two fastest", addrs(got))
	}
	got, err = seednode.Find(ctx, addr, seednode.Need{N: 2, MinMemory: 8 << 30})
	if err != nil || len(got) != 2 || got[0].Id != gpu || got[1].Id != slow {
		t.Fatalf("min memory: found %v, %v", addrs(got), err)
	}
	got, err = seednode.Find(ctx, addr, seednode.Need{N: 1, GPU: true})
	if err != nil || len(got) != 1 || got[0].Id != gpu {
		t.Fatalf("gpu: found %v, %v", addrs(got), err)
	}
	if _, err := seednode.Find(ctx, addr, seednode.Need{N: 2, MinGFLOPS: 40}); !errors.Is(err, seednode.ErrNotEnough) {
		t.Fatalf("asking too much: got %v, want ErrNotEnough", err)
	}

	// fast and gpu beat; slow does not.
	for i := 0; i < 3; i++ {
		clock.Advance(4 * time.Second)
		for _, id := range []string{fast, gpu} {
			if _, err := sc.Heartbeat(ctx, signers[id].heartbeat(id, 1)); err != nil {
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
	if _, err := sc.Heartbeat(ctx, signers[slow].heartbeat(slow, 0)); status.Code(err) != codes.NotFound {
		t.Fatalf("heartbeat of an expired provider: got %v, want NotFound", err)
	}

	// The HTTP view shows the same providers with their machines.
	hs := httptest.NewServer(seed.Handler())
	defer hs.Close()
	clock.Advance(6 * time.Second) // past half the TTL: "late"
	resp, err := http.Get(hs.URL + "/v1/providers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var view struct {
		Providers []seednode.ProviderJSON `json:"providers"`
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

// TestAnnounce runs a real provider's announce loop against a registry
// on a fake clock: the provider appears, stays over several TTLs of the
// registry's time because its heartbeats renew the entry, and goes when
// the loop ends (deregistered, not expired).
func TestAnnounce(t *testing.T) {
	// The TTL sets the loop's heartbeat interval (a third of it) in real
	// time; the registry's clock alone decides expiry.
	const ttl = 30 * time.Millisecond
	clock := newClock()
	seed, seedAddr := startRegistry(t, seednode.WithTTL(ttl), seednode.WithClock(clock))
	srv, addr := serveProvider(t, nil, transport.WithName("p1"), transport.WithClock(clock))
	stop := announce(t, srv, seedAddr, addr)
	ctx := context.Background()
	entry := func() *rookeryv1.ProviderEntry {
		list, err := seed.List(ctx, &rookeryv1.ListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Providers) != 1 {
			return nil
		}
		return list.Providers[0]
	}
	eventually(t, func() bool { return entry() != nil })
	// Move the registry's time on by two thirds of the TTL at a time, and
	// wait for a heartbeat stamped with the new time before the next move:
	// only the heartbeats keep the entry over four TTLs.
	for i := 0; i < 6; i++ {
		clock.Advance(ttl * 2 / 3)
		now := clock.Now().UnixMilli()
		eventually(t, func() bool {
			e := entry()
			if e == nil {
				t.Fatalf("the entry expired after %d moves", i+1)
			}
			return e.LastHeartbeatUnixMs == now
		})
	}
	got, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 1})
	if err != nil || len(got) != 1 || got[0].Address != addr || got[0].Capabilities.GetName() != "p1" {
		t.Fatalf("after four TTLs: %v, %v", addrs(got), err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 1}); !errors.Is(err, seednode.ErrNotEnough) {
		t.Fatalf("after the loop ended: %v, want ErrNotEnough", err)
	}
}

// TestEntryOwnership: on a seed node with tokens, a provider's entry
// belongs to the identity that registered it: another identity can
// neither renew, remove nor take over its address.
func TestEntryOwnership(t *testing.T) {
	ctx := context.Background()
	_, addr := startRegistry(t, seednode.WithTokens(tokens(t, aliceToken+" alice\n"+bobToken+" bob\n")), seednode.WithProber(trust))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc := rookeryv1.NewSeedClient(cc)
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	// One identity key, the provider's: only the token differs.
	p := &claims{key: keyOf(1), clock: transport.SystemClock}
	reg, err := sc.Register(as(aliceToken), p.register("127.0.0.1:7070", nil))
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"heartbeat":  second(sc.Heartbeat(as(bobToken), p.heartbeat(reg.Id, 0))),
		"deregister": second(sc.Deregister(as(bobToken), p.deregister(reg.Id))),
		"register":   second(sc.Register(as(bobToken), p.register("127.0.0.1:7070", nil))),
	} {
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("another identity's %s: got %v, want PermissionDenied", name, err)
		}
	}
	if _, err := sc.Heartbeat(ctx, p.heartbeat(reg.Id, 0)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("heartbeat without a token: got %v, want Unauthenticated", err)
	}
	if _, err := sc.Heartbeat(as(aliceToken), p.heartbeat(reg.Id, 0)); err != nil {
		t.Errorf("the owner's heartbeat: %v", err)
	}
	if _, err := sc.Deregister(as(aliceToken), p.deregister(reg.Id)); err != nil {
		t.Errorf("the owner's deregister: %v", err)
	}
	list, err := sc.List(as(bobToken), &rookeryv1.ListRequest{})
	if err != nil || len(list.Providers) != 0 {
		t.Errorf("after the owner deregistered: %v, %v", list, err)
	}
}

// TestFindInsecure: Find refuses clear text beyond loopback before
// dialling anything.
func TestFindInsecure(t *testing.T) {
	for _, addr := range []string{"192.0.2.1:7070", "[2001:db8::1]:7070", "provider.example:7070"} {
		_, err := seednode.Find(context.Background(), addr, seednode.Need{N: 1})
		if !errors.Is(err, transport.ErrInsecure) {
			t.Errorf("Find(%s): got %v, want ErrInsecure", addr, err)
		}
	}
}

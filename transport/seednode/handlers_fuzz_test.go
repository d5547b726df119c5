package seednode_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rookery-ml/rookery/internal/fuzzcalls"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// The handler fuzz target calls a registry's RPC handlers directly, so
// that every input check runs at the speed of a function call.

// placeholder in a message's bytes stands for the id of the last provider
// entry registered, which the fuzzer cannot guess: it has the length of a
// real id, so the bytes around it stay valid protobuf.
var placeholder = []byte("SESSIONIDSESSIONIDSESSIONIDSESSI")

// FuzzHandlers sends arbitrary call sequences to a registry that
// signs leases: claims the target signs with a provider's key (ops 0-2),
// and raw requests, signed or not (ops 6, 7). No input may panic it or get an error that is not a gRPC
// status, and every lease Find hands out must verify and name the entry
// it comes with.
func FuzzHandlers(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	id := string(placeholder)
	caps := &rookeryv1.Capabilities{Name: "p", MemoryBytes: 1 << 30, Gflops: 10}
	f.Add(fuzzcalls.Encode(
		[]any{byte(0), &rookeryv1.ProviderClaim{Address: "127.0.0.1:7070", Capabilities: caps}},
		[]any{byte(1), &rookeryv1.ProviderClaim{Id: id, Sessions: 2}},
		[]any{byte(3), &rookeryv1.FindRequest{N: 1, Requester: "r", RequesterKey: keyOf(2).Public().(ed25519.PublicKey)}},
		[]any{byte(4), &rookeryv1.ListRequest{}},
		[]any{byte(2), &rookeryv1.ProviderClaim{Id: id}},
		[]any{byte(5), &rookeryv1.LeaseKeyRequest{}}))
	f.Add(fuzzcalls.Encode([]any{byte(0), &rookeryv1.ProviderClaim{Address: "[::1]:1"}}, []any{byte(3), &rookeryv1.FindRequest{N: -1, Gpu: true}}))
	// Peer-to-peer addresses: the registering key's own peer ID, and
	// another's.
	f.Add(fuzzcalls.Encode([]any{byte(0), &rookeryv1.ProviderClaim{Address: peerAddress(f, keyOf(1)), Capabilities: caps}},
		[]any{byte(0), &rookeryv1.ProviderClaim{Address: peerAddress(f, keyOf(2)), Capabilities: caps}},
		[]any{byte(3), &rookeryv1.FindRequest{N: 1, RequesterKey: keyOf(2).Public().(ed25519.PublicKey)}}))
	signed, err := transport.SignClaim(keyOf(1), &rookeryv1.ProviderClaim{Kind: rookeryv1.ProviderClaim_KIND_REGISTER, Address: "127.0.0.1:7071", UnixMs: 1 << 40})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fuzzcalls.Encode([]any{byte(6), &rookeryv1.RegisterRequest{Signed: signed}}, []any{byte(7), &rookeryv1.HeartbeatRequest{Signed: signed}}))
	clock := &settableClock{}
	seed := seednode.NewRegistry(seednode.WithLeaseSigning(key, time.Minute), seednode.WithClock(clock), seednode.WithProber(trust))
	f.Cleanup(seed.Stop)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		// Entries of earlier inputs expire.
		clock.set(time.UnixMilli(1 << 40).Add(time.Duration(len(data)) * time.Hour))
		ops, msgs := fuzzcalls.Decode(data, 24)
		last := id
		p := &claims{key: keyOf(1), clock: clock}
		for i, op := range ops {
			if len(msgs[i]) == 0 {
				continue
			}
			b := bytes.ReplaceAll(msgs[i][0], placeholder, []byte(last))
			var err error
			var c rookeryv1.ProviderClaim
			claimed := op%8 <= 2 && proto.Unmarshal(b, &c) == nil
			switch op % 8 {
			case 0:
				if claimed {
					var resp *rookeryv1.RegisterResponse
					if resp, err = seed.Register(ctx, p.register(c.Address, c.Capabilities)); err == nil {
						last = resp.Id
					}
				}
			case 1:
				if claimed {
					_, err = seed.Heartbeat(ctx, p.heartbeat(c.Id, c.Sessions))
				}
			case 2:
				if claimed {
					_, err = seed.Deregister(ctx, p.deregister(c.Id))
				}
			case 6:
				var req rookeryv1.RegisterRequest
				if proto.Unmarshal(b, &req) == nil {
					_, err = seed.Register(ctx, &req)
				}
			case 7:
				var req rookeryv1.HeartbeatRequest
				if proto.Unmarshal(b, &req) == nil {
					_, err = seed.Heartbeat(ctx, &req)
				}
			case 3:
				var req rookeryv1.FindRequest
				if proto.Unmarshal(b, &req) == nil {
					var resp *rookeryv1.FindResponse
					if resp, err = seed.Find(ctx, &req); err == nil {
						if len(resp.Providers) != int(req.N) {
							t.Fatalf("asked for %d, found %d", req.N, len(resp.Providers))
						}
						for _, e := range resp.Providers {
							l, lerr := transport.ParseLease(e.Lease, pub)
							if lerr != nil || l.ProviderID != e.Id || l.ProviderAddress != e.Address ||
								l.Requester != transport.KeyRequester(req.RequesterKey) || !bytes.Equal(l.RequesterKey, req.RequesterKey) {
								t.Fatalf("lease for %s at %s: %+v, %v", e.Id, e.Address, l, lerr)
							}
						}
					}
				}
			case 4:
				_, err = seed.List(ctx, &rookeryv1.ListRequest{})
			case 5:
				var resp *rookeryv1.LeaseKeyResponse
				if resp, err = seed.LeaseKey(ctx, &rookeryv1.LeaseKeyRequest{}); err == nil && !pub.Equal(ed25519.PublicKey(resp.Ed25519PublicKey)) {
					t.Fatal("LeaseKey returned another key")
				}
			}
			fuzzcalls.CheckStatus(t, "seed call", err)
		}
	})
}

// settableClock is a clock the fuzz target sets to a time of its own per
// input; nothing waits on it.
type settableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settableClock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func (c *settableClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *settableClock) After(time.Duration) <-chan time.Time { return nil }

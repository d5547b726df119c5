package main

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/p2p"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// TestP2PDaemons: `rookery seed --p2p` and `rookery provider --p2p` on
// loopback; a requester with a libp2p host of its own finds the
// provider at /p2p/<its identity key's peer ID> through the seed node,
// leases it and trains on it, and the trainer says how the part is
// reached.
func TestP2PDaemons(t *testing.T) {
	dir := t.TempDir()
	seed := startCommand(t, seedMain, []string{"--p2p", "/ip4/127.0.0.1/tcp/0", "--p2p-key", filepath.Join(dir, "seed.key"),
		"--http", "", "--no-ledger", "--lease-key", filepath.Join(dir, "lease.key"), "--log-level", "warn"},
		"p2p address", "lease key", "listening on")
	seedAddr, leasePub, seedPeer := seed[0], seed[1], seed[2]
	if !strings.HasSuffix(seedAddr, seedPeer) || !strings.HasPrefix(seedPeer, "/p2p/") {
		t.Fatalf("seed node at %q listens on %q", seedAddr, seedPeer)
	}
	keyFile := filepath.Join(dir, "provider.key")
	prov := startCommand(t, providerMain, []string{"--p2p", "/ip4/127.0.0.1/tcp/0", "--seed-node", seedAddr, "--seed-pubkey", leasePub,
		"--key", keyFile, "--gpu", "off", "--bench", "0", "--log-level", "warn"}, "listening on")
	// The provider's address is its identity key's peer ID.
	key, _, err := transport.LoadIdentity(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := p2p.ParseAddr(prov[0])
	if err != nil {
		t.Fatal(err)
	}
	if pub, err := id.ExtractPublicKey(); err != nil {
		t.Fatal(err)
	} else if raw, _ := pub.Raw(); !ed25519.PublicKey(raw).Equal(key.Public()) {
		t.Fatalf("the provider listens as %s, not as its identity key", prov[0])
	}

	_, reqKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p2p.New(p2p.Config{Key: reqKey, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Seeds: []string{seedAddr},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var entries int
	for i := 0; i < 200 && entries == 0; i++ {
		if found, err := seednode.Find(ctx, seedPeer, seednode.Need{N: 1}, h.DialOptions()...); err == nil {
			entries = len(found)
			if found[0].Address != prov[0] {
				t.Fatalf("the seed node lists %q, want %q", found[0].Address, prov[0])
			}
			if found[0].Lease == "" {
				t.Fatal("the seed node signed no lease")
			}
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if entries == 0 {
		t.Fatal("the provider was not listed within 10 s")
	}
	g, loss, learn, inputs, feeds := classifier()
	tr, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, rookery.WithSeedNode(seedPeer, 1, h.DialOptions()...),
		rookery.WithSolver(exec.SGD(0.1, 0.9)))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	first, err := tr.Step(ctx, feeds)
	if err != nil {
		t.Fatal(err)
	}
	var last float64
	for range 5 {
		if last, err = tr.Step(ctx, feeds); err != nil {
			t.Fatal(err)
		}
	}
	if !(last < first) {
		t.Fatalf("loss %g after 6 steps, from %g", last, first)
	}
	place := tr.Placement()
	if len(place) != 1 || !strings.HasPrefix(place[0], "part 1: provider "+prov[0]+" (") {
		t.Fatalf("placement %q", place)
	}
	t.Log(place[0])
}

package p2p_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"

	"github.com/rookery-ml/rookery/transport/p2p"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func start(t *testing.T, cfg p2p.Config) *p2p.Host {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = newKey(t)
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.Default()
	}
	h, err := p2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// echo serves one echo per accepted connection on h.
func echo(t *testing.T, h *p2p.Host) {
	t.Helper()
	lis, err := h.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}(c)
		}
	}()
}

func roundTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	msg := make([]byte, n)
	_, _ = rand.Read(msg)
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, n)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != msg[i] {
			t.Fatalf("byte %d differs", i)
		}
	}
}

// waitReserved waits, boundedly, until h holds a relay slot.
func waitReserved(t *testing.T, h *p2p.Host) {
	t.Helper()
	for i := 0; i < 200 && len(h.Reserved()) == 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if len(h.Reserved()) == 0 {
		t.Fatal("no relay slot reserved within 10 s")
	}
}

// relayedConn connects a requester with hole punching off to an echoing
// provider through a seed node with the relay resources given (nil:
// the default), and checks that the connection is relayed.
func relayedConn(t *testing.T, relay *relayv2.Resources) net.Conn {
	t.Helper()
	seed := start(t, p2p.Config{Seed: true, Relay: relay})
	prov := start(t, p2p.Config{Seeds: seed.Addrs(), Reserve: true})
	echo(t, prov)
	waitReserved(t, prov)
	req := start(t, p2p.Config{Seeds: seed.Addrs(), NoHolePunch: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := req.DialContext(ctx, prov.Address())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if got := req.Path(prov.Address()); got != p2p.PathRelayed {
		t.Fatalf("path %q, want %q", got, p2p.PathRelayed)
	}
	return c
}

// TestRelayed reaches a provider whose addresses the requester does not
// know through the seed's relay, and carries more than libp2p's default
// relay data limit over it.
func TestRelayed(t *testing.T) {
	roundTrip(t, relayedConn(t, nil), 1<<20)
}

// TestRelayLimit: a seed node whose relay limits the bytes of a relayed
// connection cuts one that carries more.
func TestRelayLimit(t *testing.T) {
	relay := p2p.DefaultRelay()
	relay.Limit = &relayv2.RelayLimit{Data: 64 << 10, Duration: time.Hour}
	c := relayedConn(t, &relay)
	msg := make([]byte, 1<<20)
	go func() { _, _ = c.Write(msg) }()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	n, err := io.ReadFull(c, msg)
	if err == nil {
		t.Fatalf("1 MiB went through a relay limited to 64 KiB")
	}
	if n > 64<<10 {
		t.Fatalf("%d bytes came back through a relay limited to 64 KiB", n)
	}
	t.Logf("cut after %d bytes: %v", n, err)
}

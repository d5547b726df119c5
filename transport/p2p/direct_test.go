package p2p_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"

	"github.com/rookery-ml/rookery/transport/p2p"
)

// TestDirectAfterHolePunch: once loopback counts as public, a provider
// reached first through the seed's relay makes a direct connection to
// the requester (DCUtR's direct dial), and the requester's stream, which
// waits for it, takes it.
func TestDirectAfterHolePunch(t *testing.T) {
	p2p.KeepPublicNets(t)
	if err := p2p.TreatAsPublic("127.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	seed := start(t, p2p.Config{Seed: true})
	prov := start(t, p2p.Config{Seeds: seed.Addrs(), Reserve: true})
	echo(t, prov)
	waitReserved(t, prov)
	// The provider's hole punching starts once it knows a public address
	// of its own, and acts only on relayed connections that come after:
	// wait for it, as a provider that has been up a while has.
	for i := 0; i < 200 && !slices.Contains(prov.LibP2P().Mux().Protocols(), holepunch.Protocol); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Contains(prov.LibP2P().Mux().Protocols(), holepunch.Protocol) {
		t.Fatal("the provider's hole punching did not start within 10 s")
	}
	req := start(t, p2p.Config{Seeds: seed.Addrs(), DirectWait: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := req.DialContext(ctx, prov.Address())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, 1<<10)
	if got := req.Path(prov.Address()); got != p2p.PathDirect {
		t.Fatalf("path %q, want %q", got, p2p.PathDirect)
	}
	if pc, ok := c.(interface{ Path() string }); !ok || pc.Path() != p2p.PathDirect {
		t.Fatalf("the connection does not report the direct path (%T)", c)
	}
}

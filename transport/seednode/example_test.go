package seednode_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// A seed node that signs leases, a provider that requires them and
// announces itself to the seed node, and a requester that leases it.
// (`rookery seed` and `rookery provider --seed-node` do the same as
// daemons.)
func Example() {
	ctx := context.Background()
	key, _ := transport.GenerateLeaseKey()
	seedLis, _ := net.Listen("tcp", "127.0.0.1:0")
	seed := seednode.NewRegistry(seednode.WithLeaseSigning(key, time.Hour))
	go seed.Serve(seedLis)
	defer seed.Stop()
	seedAddr := seedLis.Addr().String()

	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := lis.Addr().String()
	srv := transport.NewServer(exec.NewCPU(), transport.WithName("example"), transport.WithBenchmark(0),
		transport.WithLeaseKey(key.Public().(ed25519.PublicKey), addr))
	go srv.Serve(lis)
	defer srv.Stop()
	actx, stopAnnouncing := context.WithCancel(ctx)
	announced := make(chan error, 1)
	go func() { announced <- srv.Announce(actx, seedAddr, addr) }()
	defer func() {
		stopAnnouncing()
		<-announced
	}()

	// Wait until the provider has registered.
	entries, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 1})
	for errors.Is(err, seednode.ErrNotEnough) {
		time.Sleep(10 * time.Millisecond)
		entries, err = seednode.Find(ctx, seedAddr, seednode.Need{N: 1})
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("found:", entries[0].Capabilities.GetName(), "with a lease:", entries[0].Lease != "")

	execs, _, release, err := seednode.Lease(ctx, seedAddr, seednode.Need{N: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer release()
	s, err := execs[0].Open(ctx, matmulSpec())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println("session opened on the leased provider")
	// Output:
	// found: example with a lease: true
	// session opened on the leased provider
}

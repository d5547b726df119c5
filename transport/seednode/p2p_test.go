package seednode_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// waitRegistered waits, boundedly, until the seed node at addr knows n
// providers.
func waitRegistered(t *testing.T, addr string, n int) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if _, err := seednode.Find(context.Background(), addr, seednode.Need{N: n}); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("the seed node at %s did not know %d providers within 10 s", addr, n)
}

// TestFindSeveralSeedNodes: Find with a comma-separated list asks the
// seed nodes in turn and returns the first answer; when none answers,
// its error holds each one's.
func TestFindSeveralSeedNodes(t *testing.T) {
	_, live := startRegistry(t)
	startProviders(t, live, 2, nil)
	waitRegistered(t, live, 2)
	_, empty := startRegistry(t)
	dead, dead2 := serveDead(t), serveDead(t)
	ctx := context.Background()
	fast := transport.WithDialTimeout(500 * time.Millisecond)

	want, err := seednode.Find(ctx, live, seednode.Need{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, list := range []string{dead + "," + live, dead + ", " + live, live + "," + dead, empty + "," + live, dead + "," + empty + "," + live} {
		got, err := seednode.Find(ctx, list, seednode.Need{N: 2}, fast)
		if err != nil {
			t.Errorf("Find(%q): %v", list, err)
			continue
		}
		if !slices.Equal(addrs(got), addrs(want)) {
			t.Errorf("Find(%q) = %v, want the live seed node's %v", list, addrs(got), addrs(want))
		}
	}

	_, err = seednode.Find(ctx, dead+","+dead2, seednode.Need{N: 1}, fast)
	if err == nil {
		t.Fatal("Find with two dead seed nodes succeeded")
	}
	for _, a := range []string{dead, dead2} {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error %q does not name %s", err, a)
		}
	}
	var de *transport.DialError
	if !errors.Is(err, transport.ErrUnavailable) || !errors.As(err, &de) {
		t.Errorf("error %v: want it to match transport.ErrUnavailable and hold a *transport.DialError", err)
	}
	// An answer of too few providers is an error too, and the next seed
	// node is asked; the error of each is kept.
	_, err = seednode.Find(ctx, empty+","+dead, seednode.Need{N: 1}, fast)
	if !errors.Is(err, seednode.ErrNotEnough) || !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("Find(empty, dead): got %v, want it to match ErrNotEnough and ErrUnavailable", err)
	}
}

// peerAddress is the /p2p/<peer ID> address of key.
func peerAddress(t testing.TB, key ed25519.PrivateKey) string {
	t.Helper()
	pub, err := crypto.UnmarshalEd25519PublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return "/p2p/" + id.String()
}

// TestRegisterPeerAddress: a provider may register a peer-to-peer
// address only of its own identity key's peer ID.
func TestRegisterPeerAddress(t *testing.T) {
	seed := seednode.NewRegistry(seednode.WithProber(trust))
	ctx := context.Background()
	owner := &claims{key: keyOf(1), clock: transport.SystemClock}
	if _, err := seed.Register(ctx, owner.register(peerAddress(t, keyOf(1)), nil)); err != nil {
		t.Fatalf("registering its own peer address: %v", err)
	}
	for _, tc := range []struct {
		addr, want string
	}{
		{peerAddress(t, keyOf(2)), "peer ID is not the provider's identity key"},
		{"/p2p/garbage", "peer ID"},
		{"/p2p/", "peer ID"},
		{"/ip4/127.0.0.1/tcp/1/p2p/" + strings.TrimPrefix(peerAddress(t, keyOf(1)), "/p2p/"), "missing port"},
		{"no-port", "missing port"},
	} {
		_, err := seed.Register(ctx, owner.register(tc.addr, nil))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("registering %q: got %v, want InvalidArgument naming %q", tc.addr, err, tc.want)
		}
	}
}

// pathConn is a connection that reports its path, as transport/p2p's do.
type pathConn struct {
	net.Conn
	path string
}

func (c pathConn) Path() string { return c.path }

// TestLeaseRelayedLast: Lease puts the providers whose connection is
// relayed after the others, each with its own capacity, and keeps
// Find's order otherwise.
func TestLeaseRelayedLast(t *testing.T) {
	_, seedAddr := startRegistry(t)
	startProviders(t, seedAddr, 3, nil)
	waitRegistered(t, seedAddr, 3)
	ctx := context.Background()
	entries, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 3})
	if err != nil {
		t.Fatal(err)
	}
	speed := map[string]float64{}
	for _, e := range entries {
		speed[e.Address] = seednode.Speed(e)
	}
	order := addrs(entries)
	for _, relayed := range [][]string{nil, {order[0]}, {order[1]}, {order[0], order[1]}, order} {
		dial := transport.WithDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil || !slices.Contains(relayed, addr) {
				return c, err
			}
			return pathConn{Conn: c, path: "relayed"}, nil
		})
		execs, caps, release, err := seednode.Lease(ctx, seedAddr, seednode.Need{N: 3}, dial)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, e := range execs {
			a := e.(interface{ Addr() string }).Addr()
			got = append(got, a)
			p := e.(interface{ Path() string }).Path()
			if slices.Contains(relayed, a) != (p == "relayed") {
				t.Errorf("relayed %v: %s has path %q", relayed, a, p)
			}
			if caps != nil && caps[i] != speed[a] {
				t.Errorf("relayed %v: capacity %d is %v, want %s's %v", relayed, i, caps[i], a, speed[a])
			}
		}
		release()
		var want []string
		for _, a := range order {
			if !slices.Contains(relayed, a) {
				want = append(want, a)
			}
		}
		for _, a := range order {
			if slices.Contains(relayed, a) {
				want = append(want, a)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("relayed %v: Lease order %v, want %v", relayed, got, want)
		}
		if caps == nil {
			t.Errorf("relayed %v: no capacities", relayed)
		}
	}
}

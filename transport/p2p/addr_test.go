package p2p_test

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/rookery-ml/rookery/transport/p2p"
)

// peerID is the peer ID of a fresh ed25519 key.
func peerID(t *testing.T) peer.ID {
	t.Helper()
	k := newKey(t)
	pub, err := crypto.UnmarshalEd25519PublicKey(k.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestParseAddr: a peer address is /p2p/<ID>, alone or after a
// transport address; anything else is ErrAddress.
func TestParseAddr(t *testing.T) {
	id := peerID(t)
	got, tr, err := p2p.ParseAddr("/p2p/" + id.String())
	if err != nil || got != id || tr != nil {
		t.Errorf("ParseAddr(/p2p/<id>) = %s, %v, %v; want %s, nil, nil", got, tr, err, id)
	}
	got, tr, err = p2p.ParseAddr("/ip4/127.0.0.1/tcp/4001/p2p/" + id.String())
	if err != nil || got != id || tr == nil || tr.String() != "/ip4/127.0.0.1/tcp/4001" {
		t.Errorf("ParseAddr(full multiaddr) = %s, %v, %v; want %s, /ip4/127.0.0.1/tcp/4001, nil", got, tr, err, id)
	}
	for _, bad := range []string{"127.0.0.1:4001", "garbage", "", "/ip4/127.0.0.1/tcp/4001", "/p2p/garbage"} {
		if _, _, err := p2p.ParseAddr(bad); !errors.Is(err, p2p.ErrAddress) {
			t.Errorf("ParseAddr(%q): got %v, want ErrAddress", bad, err)
		}
	}
	if !p2p.IsAddr("/p2p/"+id.String()) || p2p.IsAddr("127.0.0.1:4001") {
		t.Error("IsAddr does not tell a peer address from host:port")
	}
}

// TestPeerAddresses: one peer's several addresses give one /p2p/<ID>,
// peers in the order first named.
func TestPeerAddresses(t *testing.T) {
	a, b := peerID(t), peerID(t)
	got, err := p2p.PeerAddresses([]string{
		"/ip4/127.0.0.1/tcp/1/p2p/" + b.String(),
		"/ip4/127.0.0.1/tcp/2/p2p/" + a.String(),
		"/ip4/127.0.0.1/udp/3/quic-v1/p2p/" + b.String(),
		"/p2p/" + a.String(),
	})
	want := []string{"/p2p/" + b.String(), "/p2p/" + a.String()}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("PeerAddresses = %v, %v; want %v", got, err, want)
	}
	if _, err := p2p.PeerAddresses([]string{"/p2p/" + a.String(), "127.0.0.1:1"}); !errors.Is(err, p2p.ErrAddress) {
		t.Errorf("PeerAddresses with a host:port: got %v, want ErrAddress", err)
	}
	if _, err := p2p.ParseAddrInfos([]string{"/ip4/127.0.0.1/tcp/1"}); !errors.Is(err, p2p.ErrAddress) {
		t.Errorf("ParseAddrInfos without /p2p: got %v, want ErrAddress", err)
	}
}

// TestNewKey: a host's key must be a whole ed25519 private key.
func TestNewKey(t *testing.T) {
	for _, k := range [][]byte{nil, make([]byte, 32), newKey(t)[:63]} {
		if h, err := p2p.New(p2p.Config{Key: k, Listen: []string{"/ip4/127.0.0.1/tcp/0"}}); !errors.Is(err, p2p.ErrKey) {
			if h != nil {
				_ = h.Close()
			}
			t.Errorf("New with a %d-byte key: got %v, want ErrKey", len(k), err)
		}
	}
	if _, err := p2p.New(p2p.Config{Key: newKey(t), Seeds: []string{"127.0.0.1:1"}}); !errors.Is(err, p2p.ErrAddress) {
		t.Errorf("New with a host:port seed: got %v, want ErrAddress", err)
	}
}

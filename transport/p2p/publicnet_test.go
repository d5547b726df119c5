package p2p

import (
	"errors"
	"net"
	"slices"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

func cidrs(t *testing.T, ss ...string) []*net.IPNet {
	t.Helper()
	var out []*net.IPNet
	for _, s := range ss {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func strs(ns []*net.IPNet) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.String())
	}
	return out
}

// TestSubtract: subtract takes exactly the cut's addresses out of a list
// of networks.
func TestSubtract(t *testing.T) {
	for _, tc := range []struct {
		name string
		nets []string
		cut  string
		want []string
	}{
		{"lower half of a /15", []string{"198.18.0.0/15"}, "198.18.0.0/16", []string{"198.19.0.0/16"}},
		{"upper half of a /15", []string{"198.18.0.0/15"}, "198.19.0.0/16", []string{"198.18.0.0/16"}},
		{"net inside the cut goes", []string{"10.1.0.0/16"}, "10.0.0.0/8", []string{}},
		{"same net goes", []string{"127.0.0.0/8"}, "127.0.0.0/8", []string{}},
		{"unrelated nets stay", []string{"10.0.0.0/8", "192.168.0.0/16"}, "198.18.0.0/16", []string{"10.0.0.0/8", "192.168.0.0/16"}},
		{"deeper cut leaves each sibling", []string{"10.0.0.0/8"}, "10.0.0.0/10",
			[]string{"10.64.0.0/10", "10.128.0.0/9"}},
		{"cut in the middle", []string{"10.0.0.0/8"}, "10.192.0.0/10",
			[]string{"10.0.0.0/9", "10.128.0.0/10"}},
		{"IPv6 cut leaves IPv4 nets", []string{"198.18.0.0/15"}, "2001:db8::/32", []string{"198.18.0.0/15"}},
		{"IPv4 cut leaves IPv6 nets", []string{"2001:db8::/32", "fc00::/7"}, "198.18.0.0/16", []string{"2001:db8::/32", "fc00::/7"}},
		{"IPv6 halves", []string{"fc00::/7"}, "fc00::/8", []string{"fd00::/8"}},
		{"only the net that holds the cut changes", []string{"10.0.0.0/8", "198.18.0.0/15", "100.64.0.0/10"}, "198.19.0.0/16",
			[]string{"10.0.0.0/8", "198.18.0.0/16", "100.64.0.0/10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nets := cidrs(t, tc.nets...)
			before := strs(nets)
			got := strs(subtract(nets, cidrs(t, tc.cut)[0]))
			if !slices.Equal(got, tc.want) {
				t.Errorf("subtract(%v, %s) = %v, want %v", tc.nets, tc.cut, got, tc.want)
			}
			if after := strs(nets); !slices.Equal(after, before) {
				t.Errorf("subtract changed its input to %v", after)
			}
		})
	}
}

// TestWithoutCoversTheRest: what without leaves of a net, with the cut,
// covers the net exactly once, probed address by address across a /20.
func TestWithoutCoversTheRest(t *testing.T) {
	n := cidrs(t, "10.0.0.0/20")[0]
	for _, c := range []string{"10.0.5.0/24", "10.0.0.0/21", "10.0.15.128/25", "10.0.7.7/32"} {
		cut := cidrs(t, c)[0]
		rest := without(n, cut)
		for i := 0; i < 1<<12; i++ {
			ip := net.IPv4(10, 0, byte(i>>8), byte(i)).To4()
			in := 0
			for _, r := range rest {
				if r.Contains(ip) {
					in++
				}
			}
			if cut.Contains(ip) {
				in++
			}
			if in != 1 {
				t.Fatalf("cut %s: %s is in %d of the rest %v and the cut, want 1", c, ip, in, strs(rest))
			}
		}
	}
}

// TestTreatAsPublic: after TreatAsPublic("198.18.0.0/16") libp2p takes
// addresses in it for public, and those in the rest of 198.18.0.0/15
// still for unroutable.
func TestTreatAsPublic(t *testing.T) {
	KeepPublicNets(t)
	in := ma.StringCast("/ip4/198.18.0.5/tcp/1")
	out := ma.StringCast("/ip4/198.19.0.5/tcp/1")
	if manet.IsPublicAddr(in) || manet.IsPublicAddr(out) {
		t.Fatal("198.18.0.0/15 is public before TreatAsPublic; the test assumes libp2p lists it as unroutable")
	}
	if err := TreatAsPublic("198.18.0.0/16"); err != nil {
		t.Fatal(err)
	}
	if !manet.IsPublicAddr(in) {
		t.Errorf("%s is not public after TreatAsPublic(198.18.0.0/16)", in)
	}
	if manet.IsPublicAddr(out) {
		t.Errorf("%s is public after TreatAsPublic(198.18.0.0/16), which does not cover it", out)
	}
	if manet.IsPublicAddr(ma.StringCast("/ip4/10.0.0.1/tcp/1")) {
		t.Error("10.0.0.1 became public")
	}
	var perr *net.ParseError
	if err := TreatAsPublic("198.18.0.0"); !errors.As(err, &perr) {
		t.Errorf("TreatAsPublic of a bare address: got %v, want a *net.ParseError", err)
	}
}

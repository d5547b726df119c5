package p2p

import (
	"fmt"
	"net"
	"sync"

	manet "github.com/multiformats/go-multiaddr/net"
)

var publicMu sync.Mutex

// TreatAsPublic makes libp2p take addresses in cidr for public internet
// addresses in this process. libp2p hole-punches only between public
// addresses and counts the ranges reserved for documentation and
// benchmarking networks (198.18.0.0/15 among them) as unroutable, so an
// emulated internet built from those ranges (internal/netlab, the test
// of examples/nat) needs its "public" part named here. Only the ranges
// libp2p lists as private or unroutable are changed: the part of a listed
// range that cidr covers is taken out of the list, the rest stays. It
// changes a process-wide table and is meant for test networks; a
// provider on the real internet never needs it.
func TreatAsPublic(cidr string) error {
	_, want, err := net.ParseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("p2p: public network %q: %w", cidr, err)
	}
	publicMu.Lock()
	defer publicMu.Unlock()
	manet.Unroutable4 = subtract(manet.Unroutable4, want)
	manet.Private4 = subtract(manet.Private4, want)
	manet.Unroutable6 = subtract(manet.Unroutable6, want)
	manet.Private6 = subtract(manet.Private6, want)
	return nil
}

// subtract returns nets without the addresses in cut: a net inside cut
// goes, a net that holds cut is split into the halves that do not.
func subtract(nets []*net.IPNet, cut *net.IPNet) []*net.IPNet {
	var out []*net.IPNet
	for _, n := range nets {
		out = append(out, without(n, cut)...)
	}
	return out
}

func without(n, cut *net.IPNet) []*net.IPNet {
	nOnes, bits := n.Mask.Size()
	cutOnes, cutBits := cut.Mask.Size()
	if bits != cutBits || len(n.IP) != len(cut.IP) {
		return []*net.IPNet{n}
	}
	switch {
	case cutOnes <= nOnes && cut.Contains(n.IP):
		return nil // n lies inside cut
	case cutOnes > nOnes && n.Contains(cut.IP):
		// Split n in two and keep going into the half that holds cut.
		ones := nOnes + 1
		mask := net.CIDRMask(ones, bits)
		lo := &net.IPNet{IP: n.IP.Mask(mask), Mask: mask}
		hiIP := make(net.IP, len(lo.IP))
		copy(hiIP, lo.IP)
		hiIP[nOnes/8] |= 0x80 >> (nOnes % 8)
		hi := &net.IPNet{IP: hiIP, Mask: mask}
		return append(without(lo, cut), without(hi, cut)...)
	}
	return []*net.IPNet{n}
}

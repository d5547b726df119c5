package p2p

import (
	"slices"
	"testing"

	manet "github.com/multiformats/go-multiaddr/net"
)

// KeepPublicNets restores, when t ends, libp2p's process-wide tables of
// private and unroutable networks that TreatAsPublic changes.
func KeepPublicNets(t testing.TB) {
	publicMu.Lock()
	u4, p4 := slices.Clone(manet.Unroutable4), slices.Clone(manet.Private4)
	u6, p6 := slices.Clone(manet.Unroutable6), slices.Clone(manet.Private6)
	publicMu.Unlock()
	t.Cleanup(func() {
		publicMu.Lock()
		defer publicMu.Unlock()
		manet.Unroutable4, manet.Private4 = u4, p4
		manet.Unroutable6, manet.Private6 = u6, p6
	})
}

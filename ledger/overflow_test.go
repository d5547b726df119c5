package ledger

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/rookery-ml/rookery/internal/fakeclock"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// TestTotalsSaturate: a key's totals stop at the largest int64 instead
// of wrapping negative, however much work its receipts add up to, and a
// span as long as a receipt may claim counts as the longest.
func TestTotalsSaturate(t *testing.T) {
	clk := fakeclock.New(t0)
	s, err := Open(filepath.Join(t.TempDir(), "ledger.db"), WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const big = 6e18
	for i := int64(0); i < 2; i++ {
		r := &rookeryv1.Receipt{
			Job: "job", Session: "s", Index: uint32(i), ProviderKey: pub(provA), RequesterKey: pub(reqA),
			Work:        &rookeryv1.Work{Flops: big, BytesIn: big, BytesOut: big, Steps: big, MicroBatches: big},
			StartUnixMs: math.MinInt64, EndUnixMs: math.MaxInt64,
		}
		sr, err := SignReceipt(provA, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := Countersign(reqA, sr); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendReceipt(sr); err != nil {
			t.Fatal(err)
		}
	}
	for who, w := range map[string]Work{"provider": s.Totals().Providers[b64(provA)], "requester": s.Totals().Requesters[b64(reqA)]} {
		for name, v := range map[string]int64{"flops": w.FLOPs, "bytes in": w.BytesIn, "bytes out": w.BytesOut, "steps": w.Steps,
			"micro-batches": w.MicroBatches, "wall ms": w.WallMS} {
			if v != math.MaxInt64 {
				t.Errorf("%s %s total %d, want %d", who, name, v, int64(math.MaxInt64))
			}
		}
	}
}

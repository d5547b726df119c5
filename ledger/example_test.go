package ledger_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// A provider signs a receipt of a session's work, the requester
// countersigns it, and the seed node appends it to its ledger.
func ExampleStore() {
	dir, _ := os.MkdirTemp("", "ledger")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ledger.db")

	seed := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	provider, requester := ed25519.NewKeyFromSeed(seed("provider")), ed25519.NewKeyFromSeed(seed("requester"))
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	sr, err := ledger.SignReceipt(provider, &rookeryv1.Receipt{
		Job: "mnist", Session: "s1",
		ProviderKey: provider.Public().(ed25519.PublicKey), RequesterKey: requester.Public().(ed25519.PublicKey),
		Work:        &rookeryv1.Work{Flops: 6e9, Steps: 30},
		StartUnixMs: start.UnixMilli(), EndUnixMs: start.Add(90 * time.Second).UnixMilli(), Final: true,
	})
	if err == nil {
		err = ledger.Countersign(requester, sr)
	}
	if err != nil {
		fmt.Println(err)
		return
	}

	s, err := ledger.Open(path, ledger.WithClock(func() time.Time { return start.Add(time.Hour) }))
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := s.AppendReceipt(sr)
	if err != nil {
		fmt.Println(err)
		return
	}
	w := s.Totals().Providers[base64.StdEncoding.EncodeToString(provider.Public().(ed25519.PublicKey))]
	fmt.Printf("entry %d at %s: %d FLOPs in %d steps over %d ms\n", e.Seq, e.Time.Format(time.RFC3339), w.FLOPs, w.Steps, w.WallMS)
	s.Close()

	n, err := ledger.Verify(path)
	fmt.Printf("Verify: %d entry, error %v\n", n, err)
	// Output:
	// entry 1 at 2025-03-01T13:00:00Z: 6000000000 FLOPs in 30 steps over 90000 ms
	// Verify: 1 entry, error <nil>
}

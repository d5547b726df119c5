package main

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// signedReceipt returns a receipt signed by a provider key and
// countersigned by a requester key, both made from n.
func signedReceipt(t *testing.T, n byte) *rookeryv1.SignedReceipt {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = n
	prov := ed25519.NewKeyFromSeed(seed)
	seed[1] = 1
	req := ed25519.NewKeyFromSeed(seed)
	sr, err := ledger.SignReceipt(prov, &rookeryv1.Receipt{Job: "j", Session: "s", ProviderKey: prov.Public().(ed25519.PublicKey),
		RequesterKey: req.Public().(ed25519.PublicKey), Work: &rookeryv1.Work{Flops: 1000, Steps: 1}, StartUnixMs: 1, EndUnixMs: 2, Final: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Countersign(req, sr); err != nil {
		t.Fatal(err)
	}
	return sr
}

// TestSeedLedger: `rookery seed --ledger` keeps what requesters submit
// and serves it at GET /v1/ledger; after a byte of a stored entry is
// flipped, the seed node refuses to start, naming the entry.
func TestSeedLedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	// The seed node stops when the subtest ends.
	t.Run("serve", func(t *testing.T) {
		addrs := startCommand(t, seedMain, []string{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--ledger", path, "--log-level", "warn"},
			"listening on", "http on")
		seqs, _, err := seednode.Submit(context.Background(), addrs[0], []*rookeryv1.SignedReceipt{signedReceipt(t, 1), signedReceipt(t, 2)}, nil)
		if err != nil || len(seqs) != 2 {
			t.Fatalf("submit: %v, %v", seqs, err)
		}
		resp, err := http.Get("http://" + addrs[1] + "/v1/ledger")
		if err != nil {
			t.Fatal(err)
		}
		var page seednode.LedgerJSON
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || page.Head.Seq != 2 || len(page.Entries) != 2 || len(page.Totals.Providers) != 2 {
			t.Fatalf("GET /v1/ledger: %+v, %v", page, err)
		}
	})
	if t.Failed() {
		return
	}

	// Flip a byte of entry 2's stored bytes: the last, in the requester's
	// signature.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		key := binary.BigEndian.AppendUint64(nil, 2)
		v := append([]byte(nil), b.Get(key)...)
		v[len(v)-1] ^= 0x40
		return b.Put(key, v)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runArgs("seed", "--listen", "127.0.0.1:0", "--http", "", "--ledger", path)
	if code != 1 || strings.Contains(stdout, "listening on") || !strings.Contains(stderr, "entry 2") ||
		!strings.HasSuffix(stderr, "\n") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("a corrupt ledger: exit %d, stdout %q, stderr %q; want exit 1 and one line naming entry 2", code, stdout, stderr)
	}
	t.Logf("%s", stderr)
	// --no-ledger starts without it.
	if code, _, stderr := runArgs("seed", "--no-ledger", "--ledger", path); code != 2 {
		t.Fatalf("--no-ledger with --ledger: exit %d %q, want a usage error", code, stderr)
	}
}

package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// writeLedger writes a ledger of three receipts and returns its path and
// head line.
func writeLedger(t *testing.T) (path, line string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ledger.db")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := ledger.Open(path, ledger.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	prov, req := testKey("provider"), testKey("requester")
	for i := range int64(3) {
		sr, err := ledger.SignReceipt(prov, &rookeryv1.Receipt{
			Job: "job", Session: strconv.FormatInt(i, 10),
			ProviderKey: prov.Public().(ed25519.PublicKey), RequesterKey: req.Public().(ed25519.PublicKey),
			Work: &rookeryv1.Work{Flops: 100, Steps: 1}, StartUnixMs: now.UnixMilli(), EndUnixMs: now.UnixMilli() + 10,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.Countersign(req, sr); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendReceipt(sr); err != nil {
			t.Fatal(err)
		}
	}
	_, head := s.Head()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, fmt.Sprintf("ledger: 3 entries, head %x, all signatures and the chain check\n", head)
}

// resignEntry2 stores entry 2 again with its provider signature made by
// another key: a valid encoding whose signature does not check.
func resignEntry2(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		k := binary.BigEndian.AppendUint64(nil, 2)
		le, err := ledger.DecodeEntry(b.Get(k))
		if err != nil {
			return err
		}
		sr := le.GetReceipt()
		sr.ProviderSignature = ed25519.Sign(testKey("impostor"), append([]byte("rookery.v1.Receipt\x00"), sr.Receipt...))
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(le)
		if err != nil {
			return err
		}
		return b.Put(k, raw)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLedgerVerifyFile(t *testing.T) {
	path, line := writeLedger(t)
	code, out, errOut := runArgs("ledger", "verify", path)
	if code != 0 || out != line {
		t.Fatalf("good ledger: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out, errOut, line)
	}

	resignEntry2(t, path)
	code, out, errOut = runArgs("ledger", "verify", path)
	want := "rookery ledger: " + path + ": entry 2: receipt: the provider's signature does not check\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("tampered ledger: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
	}
}

func TestLedgerVerifyLockedFile(t *testing.T) {
	path, _ := writeLedger(t)
	s, err := ledger.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, _, errOut := runArgs("ledger", "verify", path)
	if code != 1 || !strings.Contains(errOut, "in use by another process") || !strings.Contains(errOut, "--seed") {
		t.Errorf("ledger held by a seed: exit %d, stderr %q", code, errOut)
	}
}

// serveLedger serves a ledger file's entries as the seed node's GET
// /v1/ledger does, two entries a page; change may alter an entry's raw
// bytes.
func serveLedger(t *testing.T, path string, change func(seq uint64, raw []byte) []byte) *httptest.Server {
	t.Helper()
	s, err := ledger.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	seq, head := s.Head()
	all, err := s.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	type entry struct {
		Seq uint64 `json:"seq"`
		Raw []byte `json:"raw"`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/ledger" {
			http.NotFound(w, r)
			return
		}
		from, err := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		if err != nil || from == 0 {
			http.Error(w, "bad from", http.StatusBadRequest)
			return
		}
		var page struct {
			Head struct {
				Seq  uint64 `json:"seq"`
				Hash string `json:"hash"`
			} `json:"head"`
			Next    uint64  `json:"next"`
			Entries []entry `json:"entries"`
		}
		page.Head.Seq, page.Head.Hash = seq, hex.EncodeToString(head[:])
		for i := from; i <= seq && i < from+2; i++ {
			page.Entries = append(page.Entries, entry{i, change(i, all[i-1].Raw)})
		}
		if from+2 <= seq {
			page.Next = from + 2
		}
		json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLedgerVerifySeed(t *testing.T) {
	path, line := writeLedger(t)
	srv := serveLedger(t, path, func(_ uint64, raw []byte) []byte { return raw })
	code, out, errOut := runArgs("ledger", "verify", "--seed", srv.URL)
	if code != 0 || out != line {
		t.Fatalf("good seed: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, out, errOut, line)
	}

	flipped := serveLedger(t, path, func(seq uint64, raw []byte) []byte {
		if seq == 3 {
			raw = append([]byte(nil), raw...)
			raw[len(raw)-1] ^= 1
		}
		return raw
	})
	code, out, errOut = runArgs("ledger", "verify", "--seed", flipped.URL)
	want := "rookery ledger: " + flipped.URL + ": entry 3: receipt: the requester's signature does not check\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("seed serving a flipped byte: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
	}

	missing := serveLedger(t, path, func(_ uint64, raw []byte) []byte { return raw })
	code, _, errOut = runArgs("ledger", "verify", "--seed", missing.URL+"/nothing-here")
	if code != 1 || !strings.Contains(errOut, "404 Not Found") {
		t.Errorf("wrong URL: exit %d, stderr %q", code, errOut)
	}
}

func TestLedgerUsage(t *testing.T) {
	path, _ := writeLedger(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ledger"}, 2, "rookery ledger: want a sub-command: verify\nrun 'rookery help ledger' for usage\n"},
		{[]string{"ledger", "check"}, 2, "unknown sub-command \"check\""},
		{[]string{"ledger", "verify"}, 2, "no database file"},
		{[]string{"ledger", "verify", "--seed", "http://127.0.0.1:1", path}, 2, "not both"},
		{[]string{"ledger", "verify", "--seed", "ftp://x"}, 2, "want http://HOST:PORT"},
		{[]string{"ledger", "verify", "--port", "1"}, 2, "rookery ledger: flag provided but not defined: -port\n"},
		{[]string{"ledger", "verify", filepath.Join(t.TempDir(), "missing.db")}, 1, "no such file"},
	} {
		code, _, errOut := runArgs(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("rookery %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	code, out, _ := runArgs("help", "ledger")
	if code != 0 || !strings.Contains(out, "usage: rookery ledger verify") || !strings.Contains(out, "-seed URL") {
		t.Errorf("help ledger: exit %d, stdout %q", code, out)
	}
}

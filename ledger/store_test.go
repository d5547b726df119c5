package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/rookery-ml/rookery/internal/fakeclock"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// key returns the ed25519 key derived from name.
func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pub(k ed25519.PrivateKey) []byte { return k.Public().(ed25519.PublicKey) }

func b64(k ed25519.PrivateKey) string { return base64.StdEncoding.EncodeToString(pub(k)) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// receipt is a receipt of work i, signed by prov and countersigned by
// req.
func receipt(t testing.TB, prov, req ed25519.PrivateKey, i int64) *rookeryv1.SignedReceipt {
	t.Helper()
	r := &rookeryv1.Receipt{
		Job: "job", Session: fmt.Sprintf("s%d", i), Part: int32(i % 3),
		ProviderKey: pub(prov), RequesterKey: pub(req),
		Work:        &rookeryv1.Work{Flops: 1000 * i, BytesIn: 10 * i, BytesOut: 20 * i, Steps: i, MicroBatches: 2 * i},
		StartUnixMs: t0.UnixMilli(), EndUnixMs: t0.UnixMilli() + 100*i, Final: true,
	}
	sr, err := SignReceipt(prov, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := Countersign(req, sr); err != nil {
		t.Fatal(err)
	}
	return sr
}

func fault(t testing.TB, prov, req ed25519.PrivateKey) *rookeryv1.SignedFault {
	t.Helper()
	sf, err := SignFault(req, &rookeryv1.Fault{Job: "job", Session: "s9", ProviderKey: pub(prov), RequesterKey: pub(req), Kind: "disagreed", Evidence: "step 3 loss differs", UnixMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	return sf
}

var (
	provA, provB = key("provider a"), key("provider b")
	reqA         = key("requester a")
)

// fill opens a store at path and appends receipts 1..4 (A, B, A, B) and
// a fault of A, one second apart on clk.
func fill(t *testing.T, path string, clk *fakeclock.Clock) *Store {
	t.Helper()
	s, err := Open(path, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 4; i++ {
		prov := provA
		if i%2 == 0 {
			prov = provB
		}
		clk.Advance(time.Second)
		if _, err := s.AppendReceipt(receipt(t, prov, reqA, i)); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Second)
	if _, err := s.AppendFault(fault(t, provA, reqA)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAppendEntriesAndTotals(t *testing.T) {
	clk := fakeclock.New(t0)
	s := fill(t, filepath.Join(t.TempDir(), "ledger.db"), clk)
	defer s.Close()

	all, err := s.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("got %d entries, want 5", len(all))
	}
	var prev [32]byte
	for i, e := range all {
		if e.Seq != uint64(i+1) || e.PrevHash != prev || e.Hash != sha256.Sum256(e.Raw) {
			t.Errorf("entry %d: seq %d, prev %x (want %x), hash %x of raw %x", i+1, e.Seq, e.PrevHash, prev, e.Hash, sha256.Sum256(e.Raw))
		}
		if want := t0.Add(time.Duration(i+1) * time.Second); !e.Time.Equal(want) {
			t.Errorf("entry %d: time %v, want %v", e.Seq, e.Time, want)
		}
		if (e.Receipt != nil) == (e.Fault != nil) || (e.Fault != nil) != (i == 4) {
			t.Errorf("entry %d: receipt %v, fault %v", e.Seq, e.Receipt, e.Fault)
		}
		prev = e.Hash
	}
	if all[2].Receipt.GetSession() != "s3" || all[4].Fault.GetKind() != "disagreed" {
		t.Errorf("entry 3's receipt %v, entry 5's fault %v", all[2].Receipt, all[4].Fault)
	}
	if seq, h := s.Head(); seq != 5 || h != prev {
		t.Errorf("head %d %x, want 5 %x", seq, h, prev)
	}

	for _, tc := range []struct {
		from  uint64
		limit int
		seqs  []uint64
	}{
		{0, 2, []uint64{1, 2}},
		{2, 2, []uint64{2, 3}},
		{4, 10, []uint64{4, 5}},
		{5, 1, []uint64{5}},
		{6, 10, nil},
		{1, 0, nil},
	} {
		page, err := s.Entries(tc.from, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, e := range page {
			seqs = append(seqs, e.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(tc.seqs) {
			t.Errorf("Entries(%d, %d): seqs %v, want %v", tc.from, tc.limit, seqs, tc.seqs)
		}
	}

	got := s.Totals()
	want := Totals{
		Providers: map[string]Work{
			b64(provA): {FLOPs: 4000, BytesIn: 40, BytesOut: 80, Steps: 4, MicroBatches: 8, WallMS: 400, Receipts: 2, Faults: 1, LastFault: t0.Add(5 * time.Second)},
			b64(provB): {FLOPs: 6000, BytesIn: 60, BytesOut: 120, Steps: 6, MicroBatches: 12, WallMS: 600, Receipts: 2},
		},
		Requesters: map[string]Work{
			b64(reqA): {FLOPs: 10000, BytesIn: 100, BytesOut: 200, Steps: 10, MicroBatches: 20, WallMS: 1000, Receipts: 4, Faults: 1, LastFault: t0.Add(5 * time.Second)},
		},
	}
	if !totalsEqual(got, want) {
		t.Errorf("totals\n got %+v\nwant %+v", got, want)
	}
	// Totals is a copy.
	got.Providers[b64(provA)] = Work{}
	if s.Totals().Providers[b64(provA)].Receipts != 2 {
		t.Error("changing the returned totals changed the store's")
	}
}

func totalsEqual(a, b Totals) bool {
	eq := func(x, y map[string]Work) bool {
		if len(x) != len(y) {
			return false
		}
		for k, w := range x {
			v, ok := y[k]
			if !ok || !w.LastFault.Equal(v.LastFault) {
				return false
			}
			w.LastFault, v.LastFault = time.Time{}, time.Time{}
			if w != v {
				return false
			}
		}
		return true
	}
	return eq(a.Providers, b.Providers) && eq(a.Requesters, b.Requesters)
}

func TestAppendRefusesBadRecords(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	uncountersigned := receipt(t, provA, reqA, 1)
	uncountersigned.RequesterSignature = nil
	otherRequester := fault(t, provA, reqA)
	otherRequester.RequesterSignature = ed25519.Sign(key("someone else"), append([]byte(faultContext), otherRequester.Fault...))
	for _, tc := range []struct {
		name   string
		append func() (Entry, error)
		want   error
	}{
		{"receipt without the requester's signature", func() (Entry, error) { return s.AppendReceipt(uncountersigned) }, ErrSignature},
		{"empty receipt", func() (Entry, error) { return s.AppendReceipt(&rookeryv1.SignedReceipt{}) }, ErrMalformed},
		{"fault signed by another key", func() (Entry, error) { return s.AppendFault(otherRequester) }, ErrSignature},
		{"fault of garbage", func() (Entry, error) { return s.AppendFault(&rookeryv1.SignedFault{Fault: []byte{0xff}}) }, ErrMalformed},
	} {
		_, err := tc.append()
		var re *RecordError
		if !errors.As(err, &re) || !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want a *RecordError wrapping %v", tc.name, err, tc.want)
		}
	}
	if seq, h := s.Head(); seq != 0 || h != [32]byte{} {
		t.Errorf("head %d %x after refused appends, want 0 and zero", seq, h)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "ledger.db")
	clk := fakeclock.New(t0)
	s := fill(t, path, clk)
	seq, head := s.Head()
	totals := s.Totals()
	before, err := s.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendReceipt(receipt(t, provA, reqA, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v, want ErrClosed", err)
	}

	s, err = Open(path, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if seq2, head2 := s.Head(); seq2 != seq || head2 != head {
		t.Errorf("head after restart %d %x, want %d %x", seq2, head2, seq, head)
	}
	if got := s.Totals(); !totalsEqual(got, totals) {
		t.Errorf("totals after restart\n got %+v\nwant %+v", got, totals)
	}
	after, err := s.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if string(after[i].Raw) != string(before[i].Raw) || !after[i].Time.Equal(before[i].Time) {
			t.Errorf("entry %d changed across the restart", i+1)
		}
	}
	e, err := s.AppendReceipt(receipt(t, provB, reqA, 7))
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != seq+1 || e.PrevHash != head {
		t.Errorf("first entry after restart: seq %d prev %x, want %d %x", e.Seq, e.PrevHash, seq+1, head)
	}
}

// edit changes the database at path through bbolt.
func edit(t *testing.T, path string, f func(entries, meta *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return f(tx.Bucket(entriesBucket), tx.Bucket(metaBucket)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// rewrite decodes entry seq, lets change alter it, and stores it again in
// its deterministic encoding.
func rewrite(seq uint64, change func(le *rookeryv1.LedgerEntry)) func(entries, meta *bolt.Bucket) error {
	return func(entries, _ *bolt.Bucket) error {
		le, err := DecodeEntry(entries.Get(seqKey(seq)))
		if err != nil {
			return err
		}
		change(le)
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(le)
		if err != nil {
			return err
		}
		return entries.Put(seqKey(seq), raw)
	}
}

func flip(seq uint64, at func(raw []byte) int) func(entries, meta *bolt.Bucket) error {
	return func(entries, _ *bolt.Bucket) error {
		raw := append([]byte(nil), entries.Get(seqKey(seq))...)
		raw[at(raw)] ^= 0x01
		return entries.Put(seqKey(seq), raw)
	}
}

// Every kind of tampering is refused by Open and by Verify, naming the
// first bad entry.
func TestTamperingIsCaught(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(entries, meta *bolt.Bucket) error
		seq    uint64
		reason string
	}{
		{"flipped byte in a signature", flip(3, func(raw []byte) int { return len(raw) - 1 }), 3, "receipt: the requester's signature does not check"},
		{"flipped byte in a receipt's work", rewrite(2, func(le *rookeryv1.LedgerEntry) {
			b := le.GetReceipt().Receipt
			r := &rookeryv1.Receipt{}
			if err := proto.Unmarshal(b, r); err != nil {
				panic(err)
			}
			r.Work.Flops ^= 1 << 20
			le.GetReceipt().Receipt, _ = proto.MarshalOptions{Deterministic: true}.Marshal(r)
		}), 2, "receipt: the provider's signature does not check"},
		{"flipped byte in an entry's time", rewrite(3, func(le *rookeryv1.LedgerEntry) { le.UnixMs ^= 1 }), 4, "prev_hash does not match entry 3"},
		{"flipped byte in the last entry's time", rewrite(5, func(le *rookeryv1.LedgerEntry) { le.UnixMs ^= 1 }), 5, "does not match the head's hash"},
		{"flipped byte in a prev_hash", rewrite(4, func(le *rookeryv1.LedgerEntry) { le.PrevHash[7] ^= 1 }), 4, "prev_hash does not match entry 3"},
		{"flipped byte in the encoding", flip(2, func([]byte) int { return 0 }), 2, "does not decode"},
		{"receipt re-signed by the wrong key", rewrite(2, func(le *rookeryv1.LedgerEntry) {
			sr := le.GetReceipt()
			sr.ProviderSignature = ed25519.Sign(key("impostor"), append([]byte(receiptContext), sr.Receipt...))
		}), 2, "receipt: the provider's signature does not check"},
		{"fault re-signed by the wrong key", rewrite(5, func(le *rookeryv1.LedgerEntry) {
			sf := le.GetFault()
			sf.RequesterSignature = ed25519.Sign(key("impostor"), append([]byte(faultContext), sf.Fault...))
		}), 5, "fault: the requester's signature does not check"},
		{"entry renumbered", rewrite(2, func(le *rookeryv1.LedgerEntry) { le.Seq = 9 }), 2, "stored as entry 2 but says it is entry 9"},
		{"removed middle entry", func(entries, _ *bolt.Bucket) error { return entries.Delete(seqKey(3)) }, 3, "missing: the next stored entry is 4"},
		{"removed last entry", func(entries, _ *bolt.Bucket) error { return entries.Delete(seqKey(5)) }, 5, "missing: the head is entry 5 but the last entry is 4"},
		{"removed first entry", func(entries, _ *bolt.Bucket) error { return entries.Delete(seqKey(1)) }, 1, "missing: the next stored entry is 2"},
		{"entry beyond the head", func(entries, meta *bolt.Bucket) error {
			last := entries.Get(seqKey(5))
			le, err := DecodeEntry(last)
			if err != nil {
				return err
			}
			h := sha256.Sum256(last)
			le.Seq, le.PrevHash = 6, h[:]
			raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(le)
			if err != nil {
				return err
			}
			return entries.Put(seqKey(6), raw)
		}, 6, "beyond the head, which is entry 5"},
		{"edited head", func(_, meta *bolt.Bucket) error {
			h := append([]byte(nil), meta.Get(headKey)...)
			h[20] ^= 1
			return meta.Put(headKey, h)
		}, 5, "does not match the head's hash"},
		{"removed head", func(_, meta *bolt.Bucket) error { return meta.Delete(headKey) }, 0, "a head of 0 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			s := fill(t, path, fakeclock.New(t0))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(path); err != nil {
				t.Fatalf("before the edit: %v", err)
			}
			edit(t, path, tc.edit)
			check := func(what string, err error) {
				t.Helper()
				var ce *CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Seq != tc.seq || !strings.Contains(err.Error(), tc.reason) {
					t.Errorf("%s: got %v, want a *CorruptError for entry %d saying %q", what, err, tc.seq, tc.reason)
				}
			}
			s, err := Open(path)
			if err == nil {
				s.Close()
			}
			check("Open", err)
			_, err = Verify(path)
			check("Verify", err)
		})
	}
}

func TestCorruptErrorMessage(t *testing.T) {
	err := error(&CorruptError{Seq: 7, Reason: "prev_hash does not match entry 6"})
	if got, want := err.Error(), "ledger: entry 7: prev_hash does not match entry 6"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	err = &CorruptError{Seq: 2, Reason: "receipt: the provider's signature does not check", Err: &RecordError{What: "receipt", Err: ErrSignature}}
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrSignature) {
		t.Errorf("%v is not both ErrCorrupt and ErrSignature", err)
	}
}

// rawEntries returns the stored bytes of a filled store's entries and its
// head.
func rawEntries(t *testing.T) ([][]byte, [32]byte) {
	t.Helper()
	s := fill(t, filepath.Join(t.TempDir(), "ledger.db"), fakeclock.New(t0))
	defer s.Close()
	es, err := s.Entries(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	for _, e := range es {
		raw = append(raw, e.Raw)
	}
	_, head := s.Head()
	return raw, head
}

// A flipped bit in any byte of an entry is caught at that entry (for the
// last one, at the latest by the head), or, when the entry still decodes
// and its signatures check, at the next one's prev_hash.
func TestVerifyEntriesCatchesEveryFlip(t *testing.T) {
	raw, head := rawEntries(t)
	if n, err := VerifyEntries(raw, head); n != 5 || err != nil {
		t.Fatalf("VerifyEntries: %d, %v; want 5 entries", n, err)
	}
	for _, seq := range []int{2, 5} {
		orig := raw[seq-1]
		for i := range orig {
			bit := i % 8
			b := append([]byte(nil), orig...)
			b[i] ^= 1 << bit
			raw[seq-1] = b
			_, err := VerifyEntries(raw, head)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("entry %d, byte %d, bit %d flipped: got %v, want a *CorruptError", seq, i, bit, err)
			}
			atNext := ce.Seq == uint64(seq+1) && ce.Reason == fmt.Sprintf("prev_hash does not match entry %d", seq)
			if ce.Seq != uint64(seq) && !atNext {
				t.Fatalf("entry %d, byte %d, bit %d flipped: %v", seq, i, bit, err)
			}
		}
		raw[seq-1] = orig
	}
	if _, err := VerifyEntries(raw[:4], head); err == nil || !strings.Contains(err.Error(), "entry 4: does not match the head's hash") {
		t.Errorf("a truncated list: %v", err)
	}
	if _, err := VerifyEntries(append(raw[:2:2], raw[3:]...), head); err == nil || !strings.Contains(err.Error(), "entry 3: stored as entry 3 but says it is entry 4") {
		t.Errorf("a list without entry 3: %v", err)
	}
	if n, err := VerifyEntries(nil, [32]byte{}); n != 0 || err != nil {
		t.Errorf("no entries, zero head: %d, %v", n, err)
	}
}

func TestOpenAndVerifyErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	s := fill(t, path, fakeclock.New(t0))
	// A running seed holds the file: Verify and a second Open say so at
	// once.
	if _, err := Verify(path); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "--seed") {
		t.Errorf("Verify of an open ledger: %v, want ErrLocked", err)
	}
	if _, err := Open(path); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	s.Close()
	if n, err := Verify(path); n != 5 || err != nil {
		t.Errorf("Verify: %d, %v; want 5 entries", n, err)
	}

	if _, err := Verify(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify of a missing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify created the file it was asked to check")
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{"Verify": second(Verify(garbage)), "Open": second(Open(garbage))} {
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Seq != 0 {
			t.Errorf("%s of a file that is not a database: %v, want a *CorruptError", what, err)
		}
	}
	// A bbolt database without the ledger's buckets is not a ledger.
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(other); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a ledger") {
		t.Errorf("Open of another bbolt database: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

// Appends from many goroutines make one chain.
func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 5
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.AppendReceipt(receipt(t, provA, reqA, int64(w*each+i+1))); err != nil {
					t.Error(err)
					return
				}
				s.Totals()
				if _, err := s.Entries(1, 3); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := s.Totals().Providers[b64(provA)].Receipts; got != writers*each {
		t.Errorf("%d receipts counted, want %d", got, writers*each)
	}
	s.Close()
	if n, err := Verify(path); n != writers*each || err != nil {
		t.Errorf("Verify: %d, %v; want %d entries", n, err, writers*each)
	}
}

// Bytes overwritten in the file behind bbolt's back are refused by Open
// and Verify alike (or, in a page the ledger does not use, ignored),
// never a crash.
func TestDamagedFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	s := fill(t, path, fakeclock.New(t0))
	s.Close()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	refused, tried := 0, 0
	for off := 2 * page; off < len(orig); off += page / 2 {
		for _, fillByte := range []byte{0x00, 0xff} {
			b := append([]byte(nil), orig...)
			for i := off; i < off+64 && i < len(b); i++ {
				b[i] = fillByte
			}
			// A copy each for Verify and Open: a file whose free list
			// made bbolt panic stays mapped, and locked, in this process.
			var paths [2]string
			for i := range paths {
				paths[i] = filepath.Join(dir, fmt.Sprintf("damaged-%d-%#x-%d.db", off, fillByte, i))
				if err := os.WriteFile(paths[i], b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			tried++
			_, verr := Verify(paths[0])
			s, oerr := Open(paths[1])
			if oerr == nil {
				s.Close()
			}
			if (verr == nil) != (oerr == nil) {
				t.Errorf("64 bytes of %#x at %d: Verify says %v, Open %v", fillByte, off, verr, oerr)
			}
			if oerr != nil {
				refused++
				if !errors.Is(oerr, ErrCorrupt) || !errors.Is(verr, ErrCorrupt) {
					t.Errorf("64 bytes of %#x at %d: Verify says %v, Open %v; want ErrCorrupt", fillByte, off, verr, oerr)
				}
			}
		}
	}
	t.Logf("%d of %d damaged files refused", refused, tried)
	if refused == 0 {
		t.Error("no damage was refused")
	}
}

// TestFaultsNeedASession: a fault counts against a provider only when
// its requester has a receipt with that provider in the ledger (before
// or after it); anyone else's fault is kept but counted apart. The same fault or
// receipt submitted twice is stored and counted once, also after a
// restart.
func TestFaultsNeedASession(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	prov, req, stranger := key("p"), key("r"), key("x")
	for _, sf := range []*rookeryv1.SignedFault{fault(t, prov, stranger), fault(t, prov, req)} {
		if _, err := s.AppendFault(sf); err != nil {
			t.Fatal(err)
		}
	}
	if w := s.Totals().Providers[b64(prov)]; w.Faults != 0 || w.UnbackedFaults != 2 || !w.LastFault.IsZero() {
		t.Fatalf("before any receipt: %+v, want 0 faults and 2 unbacked", w)
	}
	// The requester's receipt, after its fault, backs the fault; the
	// stranger's stays unbacked.
	r := receipt(t, prov, req, 0)
	first, err := s.AppendReceipt(r)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.AppendReceipt(r)
	if err != nil || again.Seq != first.Seq {
		t.Fatalf("the receipt again: entry %d, %v; want entry %d", again.Seq, err, first.Seq)
	}
	sf := fault(t, prov, req)
	sf2 := fault(t, prov, stranger)
	// The same faults as before: kept where they are.
	for _, f := range []*rookeryv1.SignedFault{sf, sf2} {
		e, err := s.AppendFault(f)
		if err != nil || e.Seq > 2 {
			t.Fatalf("a fault again: entry %d, %v", e.Seq, err)
		}
	}
	if w := s.Totals().Providers[b64(prov)]; w.Faults != 1 || w.UnbackedFaults != 1 || w.LastFault.IsZero() {
		t.Fatalf("after the receipt: %+v, want 1 fault and 1 unbacked", w)
	}
	// A new fault of the requester, after its receipt: it counts.
	f := &rookeryv1.Fault{Job: "j", Session: "s2", ProviderKey: pub(prov), RequesterKey: pub(req), Kind: "disagreed", Evidence: "e"}
	newer, err := SignFault(req, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendFault(newer); err != nil {
		t.Fatal(err)
	}
	want := Work{}
	check := func(s *Store) {
		t.Helper()
		w := s.Totals().Providers[b64(prov)]
		if n, _ := s.Head(); n != 4 || w.Faults != 2 || w.UnbackedFaults != 1 || w.Receipts != 1 || w.LastFault.IsZero() {
			t.Fatalf("%d entries, provider %+v; want 4 entries, 2 faults, 1 unbacked, 1 receipt", n, w)
		}
		if want.Receipts == 0 {
			want = w
		} else if w != want {
			t.Fatalf("after a restart %+v, before %+v", w, want)
		}
	}
	check(s)
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
}

// TestFaultOncePerSession: a requester's faults of one session against a
// provider count once; more are kept and counted apart.
func TestFaultOncePerSession(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prov, req := key("p"), key("r")
	if _, err := s.AppendReceipt(receipt(t, prov, req, 1)); err != nil {
		t.Fatal(err)
	}
	for i, sess := range []string{"s1", "s1", "s1", "s2"} {
		sf, err := SignFault(req, &rookeryv1.Fault{Job: "j", Session: sess, ProviderKey: pub(prov), RequesterKey: pub(req), Kind: "disagreed", Evidence: fmt.Sprint("fault ", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendFault(sf); err != nil {
			t.Fatal(err)
		}
	}
	if w := s.Totals().Providers[b64(prov)]; w.Faults != 2 || w.UnbackedFaults != 2 {
		t.Fatalf("provider %+v, want 2 faults (one per session) and 2 counted apart", w)
	}
}

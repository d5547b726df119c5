package ledger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// seedEntries returns the stored bytes of a receipt entry and a fault
// entry, chained.
func seedEntries(f *testing.F) [][]byte {
	first := &rookeryv1.LedgerEntry{Seq: 1, PrevHash: make([]byte, 32), UnixMs: t0.UnixMilli(),
		Record: &rookeryv1.LedgerEntry_Receipt{Receipt: receipt(f, provA, reqA, 3)}}
	a, err := proto.MarshalOptions{Deterministic: true}.Marshal(first)
	if err != nil {
		f.Fatal(err)
	}
	h := sha256.Sum256(a)
	second := &rookeryv1.LedgerEntry{Seq: 2, PrevHash: h[:], UnixMs: t0.UnixMilli() + 1,
		Record: &rookeryv1.LedgerEntry_Fault{Fault: fault(f, provB, reqA)}}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(second)
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{a, b}
}

// FuzzDecodeEntry: DecodeEntry never panics; what it accepts has a seq,
// a 32-byte prev_hash and a record, and is exactly the deterministic
// encoding of what it decoded to, so one entry has one stored form; and
// VerifyEntries on it alone either accepts it as entry 1 or names entry
// 1 in a *CorruptError.
func FuzzDecodeEntry(f *testing.F) {
	for _, raw := range seedEntries(f) {
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	f.Fuzz(func(t *testing.T, raw []byte) {
		le, err := DecodeEntry(raw)
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not a *RecordError wrapping ErrMalformed", err)
			}
			if _, verr := VerifyEntries([][]byte{raw}, sha256.Sum256(raw)); verr == nil {
				t.Fatal("VerifyEntries accepts an entry DecodeEntry refuses")
			}
			return
		}
		if le.GetSeq() == 0 || len(le.GetPrevHash()) != 32 || le.GetRecord() == nil {
			t.Fatalf("accepted an entry with seq %d, prev_hash of %d bytes, record %v", le.GetSeq(), len(le.GetPrevHash()), le.GetRecord())
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(le)
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("accepted bytes re-encode differently (%v):\n got %x\nwant %x", err, again, raw)
		}
		le2, err := DecodeEntry(again)
		if err != nil || !proto.Equal(le, le2) {
			t.Fatalf("the re-encoding decodes to %v (%v), want %v", le2, err, le)
		}
		n, err := VerifyEntries([][]byte{raw}, sha256.Sum256(raw))
		var ce *CorruptError
		switch {
		case err == nil && (n != 1 || le.GetSeq() != 1 || !bytes.Equal(le.GetPrevHash(), make([]byte, 32))):
			t.Fatalf("VerifyEntries accepts entry %d with prev_hash %x as the first", le.GetSeq(), le.GetPrevHash())
		case err != nil && (!errors.As(err, &ce) || ce.Seq != 1):
			t.Fatalf("VerifyEntries: %v, want a *CorruptError for entry 1", err)
		}
	})
}

// FuzzOpenReceipt: OpenReceipt, OpenProviderReceipt and OpenFault never
// panic on any SignedReceipt or SignedFault bytes; they fail with a
// *RecordError wrapping ErrMalformed or ErrSignature, or return a record
// whose keys have the ed25519 size; what OpenReceipt accepts,
// OpenProviderReceipt accepts too.
func FuzzOpenReceipt(f *testing.F) {
	for _, m := range []proto.Message{receipt(f, provA, reqA, 1), receipt(f, provB, reqA, 0), fault(f, provA, reqA)} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, err error) bool {
			t.Helper()
			if err == nil {
				return true
			}
			var re *RecordError
			if !errors.As(err, &re) || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrSignature)) {
				t.Fatalf("%s: error %v is not a *RecordError wrapping ErrMalformed or ErrSignature", what, err)
			}
			return false
		}
		sr := &rookeryv1.SignedReceipt{}
		if proto.Unmarshal(data, sr) == nil {
			r, err := OpenReceipt(sr)
			both := check("OpenReceipt", err)
			if both && (len(r.GetProviderKey()) != 32 || len(r.GetRequesterKey()) != 32 || r.GetWork() == nil) {
				t.Fatalf("OpenReceipt accepted %v", r)
			}
			_, err = OpenProviderReceipt(sr)
			if !check("OpenProviderReceipt", err) && both {
				t.Fatalf("OpenProviderReceipt refuses a receipt OpenReceipt accepts: %v", err)
			}
		}
		sf := &rookeryv1.SignedFault{}
		if proto.Unmarshal(data, sf) == nil {
			ft, err := OpenFault(sf)
			if check("OpenFault", err) && (len(ft.GetProviderKey()) != 32 || len(ft.GetRequesterKey()) != 32) {
				t.Fatalf("OpenFault accepted %v", ft)
			}
		}
	})
}

package seednode_test

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// openStore opens a fresh ledger in the test's directory, stamped by
// clock, closed when the test ends (after the registry stops).
func openStore(t testing.TB, clock interface{ Now() time.Time }) *ledger.Store {
	t.Helper()
	store, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), ledger.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// requesterOf returns a deterministic requester key n.
func requesterOf(n byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = 'r', n
	return ed25519.NewKeyFromSeed(seed)
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// receipt returns a receipt of flops signed by provider and
// countersigned by requester.
func receipt(t testing.TB, provider, requester ed25519.PrivateKey, session string, flops int64) *rookeryv1.SignedReceipt {
	t.Helper()
	sr, err := ledger.SignReceipt(provider, &rookeryv1.Receipt{Job: "job", Session: session, ProviderKey: pubOf(provider), RequesterKey: pubOf(requester),
		Work: &rookeryv1.Work{Flops: flops, BytesIn: 10, BytesOut: 20, Steps: 2, MicroBatches: 4}, StartUnixMs: 1_700_000_000_000, EndUnixMs: 1_700_000_001_500, Final: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Countersign(requester, sr); err != nil {
		t.Fatal(err)
	}
	return sr
}

// fault returns a fault against provider signed by requester.
func fault(t testing.TB, provider ed25519.PublicKey, requester ed25519.PrivateKey) *rookeryv1.SignedFault {
	t.Helper()
	sf, err := ledger.SignFault(requester, &rookeryv1.Fault{Job: "job", Session: "s", ProviderKey: provider, RequesterKey: pubOf(requester),
		Kind: "disagreed", Evidence: "loss differs from the replica's", UnixMs: 1_700_000_000_000})
	if err != nil {
		t.Fatal(err)
	}
	return sf
}

// TestSubmit: receipts and faults signed by their keys are appended in
// order and their positions and the head answered; a receipt whose
// requester signature does not check is refused with InvalidArgument
// naming it, the records before it kept; too many records at once are
// refused; a seed node without a ledger says so.
func TestSubmit(t *testing.T) {
	clock := newClock()
	store := openStore(t, clock)
	_, addr := startRegistry(t, seednode.WithClock(clock), seednode.WithProber(trust), seednode.WithLedger(store))
	ctx := context.Background()
	prov, req := keyOf(1), requesterOf(1)

	seqs, head, err := seednode.Submit(ctx, addr, []*rookeryv1.SignedReceipt{receipt(t, prov, req, "a", 100), receipt(t, prov, req, "b", 200)},
		[]*rookeryv1.SignedFault{fault(t, pubOf(prov), req)})
	if err != nil {
		t.Fatal(err)
	}
	n, want := store.Head()
	if fmt.Sprint(seqs) != "[1 2 3]" || n != 3 || string(head) != string(want[:]) {
		t.Fatalf("got seqs %v head %x, want [1 2 3] and the store's head %d %x", seqs, head, n, want)
	}

	// A receipt signed by the wrong requester key.
	forged := receipt(t, prov, req, "c", 300)
	forged.RequesterSignature = ed25519.Sign(requesterOf(9), append([]byte("rookery.v1.Receipt\x00"), forged.Receipt...))
	batch := &rookeryv1.SubmitRequest{Receipts: []*rookeryv1.SignedReceipt{receipt(t, prov, req, "d", 1), forged, receipt(t, prov, req, "e", 1)}}
	cc, err := transport.DialConn(ctx, addr, "seed node")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = rookeryv1.NewSeedClient(cc).Submit(ctx, batch)
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "receipt 1 ") ||
		!strings.Contains(st.Message(), "requester's signature") || !strings.Contains(st.Message(), "1 records before it kept") {
		t.Fatalf("forged receipt: got %v, want InvalidArgument naming receipt 1 and the requester's signature", err)
	}
	if n, _ := store.Head(); n != 4 {
		t.Fatalf("after a refused batch the ledger has %d entries, want 4 (the record before the bad one kept)", n)
	}
	_, _, err = seednode.Submit(ctx, addr, []*rookeryv1.SignedReceipt{forged}, nil)
	if !errors.Is(err, seednode.ErrRefused) {
		t.Fatalf("client: got %v, want ErrRefused", err)
	}
	// A fault signed by another key than its requester's.
	bad := fault(t, pubOf(prov), req)
	bad.RequesterSignature[0] ^= 1
	if _, _, err := seednode.Submit(ctx, addr, nil, []*rookeryv1.SignedFault{bad}); !errors.Is(err, seednode.ErrRefused) || !strings.Contains(err.Error(), "fault 0") {
		t.Fatalf("bad fault: got %v, want ErrRefused naming fault 0", err)
	}

	// Too many records in one call; the client function splits them.
	many := make([]*rookeryv1.SignedReceipt, seednode.MaxSubmitRecords+1)
	for i := range many {
		many[i] = receipt(t, prov, req, fmt.Sprint("m", i), 1)
	}
	_, err = rookeryv1.NewSeedClient(cc).Submit(ctx, &rookeryv1.SubmitRequest{Receipts: many})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%d records at once: got %v, want InvalidArgument", len(many), err)
	}
	// The fault is the one of the first call: submitted again, it keeps
	// its place (entry 3) and is not counted twice.
	seqs, _, err = seednode.Submit(ctx, addr, many, []*rookeryv1.SignedFault{fault(t, pubOf(prov), req)})
	if err != nil || len(seqs) != len(many)+1 || seqs[0] != 5 || seqs[len(many)-1] != uint64(4+len(many)) || seqs[len(many)] != 3 {
		t.Fatalf("split submission: got %d seqs %v, %v", len(seqs), seqs, err)
	}
	if n, _ := store.Head(); n != uint64(4+len(many)) {
		t.Fatalf("the ledger has %d entries, want %d: a record submitted again is not appended", n, 4+len(many))
	}
	// Receipts submitted again (a retried batch) keep their places.
	again, _, err := seednode.Submit(ctx, addr, many[:2], nil)
	if err != nil || fmt.Sprint(again) != "[5 6]" {
		t.Fatalf("receipts submitted again: got %v, %v; want [5 6]", again, err)
	}
	if w := store.Totals().Providers[transport.EncodeIdentityKey(pubOf(prov))]; w.Faults != 1 || w.Receipts != 3+len(many) {
		t.Fatalf("totals count %d faults and %d receipts, want 1 and %d", w.Faults, w.Receipts, 3+len(many))
	}

	// No ledger.
	_, bare := startRegistry(t, seednode.WithProber(trust))
	if _, _, err := seednode.Submit(ctx, bare, nil, nil); !errors.Is(err, seednode.ErrNoLedger) {
		t.Fatalf("no ledger: got %v, want ErrNoLedger", err)
	}
}

// TestSubmitLimit: Submit calls past a source's burst are refused with
// ResourceExhausted until the clock refills the bucket.
func TestSubmitLimit(t *testing.T) {
	clock := newClock()
	_, addr := startRegistry(t, seednode.WithClock(clock), seednode.WithProber(trust), seednode.WithLedger(openStore(t, clock)),
		seednode.WithSubmitLimit(2, time.Second))
	ctx := context.Background()
	for i := range 2 {
		if _, _, err := seednode.Submit(ctx, addr, nil, nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, _, err := seednode.Submit(ctx, addr, nil, nil); !errors.Is(err, transport.ErrLimit) {
		t.Fatalf("third call at once: got %v, want ErrLimit", err)
	}
	clock.Advance(time.Second)
	if _, _, err := seednode.Submit(ctx, addr, nil, nil); err != nil {
		t.Fatalf("after a second: %v", err)
	}
}

// get serves a GET of path on h and decodes its JSON into v, failing
// unless the status is want.
func get(t *testing.T, h http.Handler, path string, want int, v any) string {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	if w.Code != want {
		t.Fatalf("GET %s: %d %q, want %d", path, w.Code, w.Body.String(), want)
	}
	if v != nil {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v in %q", path, err, w.Body.String())
		}
	}
	return w.Body.String()
}

// TestLedgerView: GET /v1/ledger pages through every entry, whose
// stored bytes verify as a chain up to the head, with the totals per
// provider and requester; bad parameters get a 400; without a ledger
// the path is a 404.
func TestLedgerView(t *testing.T) {
	clock := newClock()
	store := openStore(t, clock)
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithProber(trust), seednode.WithLedger(store))
	defer seed.Stop()
	p1, p2, req := keyOf(1), keyOf(2), requesterOf(1)
	rs := []*rookeryv1.SignedReceipt{receipt(t, p1, req, "a", 1000), receipt(t, p2, req, "b", 10), receipt(t, p1, req, "c", 500), receipt(t, p2, req, "d", 5)}
	if _, err := seed.Submit(context.Background(), &rookeryv1.SubmitRequest{Receipts: rs, Faults: []*rookeryv1.SignedFault{fault(t, pubOf(p2), req)}}); err != nil {
		t.Fatal(err)
	}
	h := seed.Handler()
	var (
		entries []seednode.LedgerEntryJSON
		page    seednode.LedgerJSON
		pages   int
	)
	for next := uint64(1); next != 0 && pages < 10; pages++ {
		get(t, h, fmt.Sprintf("/v1/ledger?from=%d&limit=2", next), http.StatusOK, &page)
		entries = append(entries, page.Entries...)
		next = page.Next
	}
	if pages != 3 || len(entries) != 5 || page.Head.Seq != 5 {
		t.Fatalf("got %d entries in %d pages, head %d; want 5 in 3, head 5", len(entries), pages, page.Head.Seq)
	}
	raws := make([][]byte, len(entries))
	for i, e := range entries {
		raws[i] = e.Raw
		if e.Seq != uint64(i+1) || (i > 0 && e.PrevHash != entries[i-1].Hash) {
			t.Fatalf("entry %d: seq %d, prev_hash %s after %s", i, e.Seq, e.PrevHash, entries[max(i-1, 0)].Hash)
		}
	}
	var head [32]byte
	hex.Decode(head[:], []byte(page.Head.Hash))
	if n, err := ledger.VerifyEntries(raws, head); err != nil || n != 5 {
		t.Fatalf("the served entries verify as %d, %v", n, err)
	}
	if e := entries[0]; e.Kind != "receipt" || e.FLOPs != 1000 || e.WallMS != 1500 || e.Provider != transport.EncodeIdentityKey(pubOf(p1)) ||
		e.Requester != transport.EncodeIdentityKey(pubOf(req)) || !e.Final || e.Session != "a" || e.Start != "2023-11-14T22:13:20Z" {
		t.Fatalf("first entry: %+v", e)
	}
	if e := entries[4]; e.Kind != "fault" || e.FaultKind != "disagreed" || e.Evidence == "" || e.Provider != transport.EncodeIdentityKey(pubOf(p2)) {
		t.Fatalf("fault entry: %+v", e)
	}
	tp := page.Totals.Providers
	if w := tp[transport.EncodeIdentityKey(pubOf(p1))]; w.FLOPs != 1500 || w.Receipts != 2 || w.Faults != 0 || w.Steps != 4 {
		t.Fatalf("p1's totals: %+v", w)
	}
	if w := tp[transport.EncodeIdentityKey(pubOf(p2))]; w.FLOPs != 15 || w.Faults != 1 {
		t.Fatalf("p2's totals: %+v", w)
	}
	if w := page.Totals.Requesters[transport.EncodeIdentityKey(pubOf(req))]; w.FLOPs != 1515 || w.Receipts != 4 || w.Faults != 1 {
		t.Fatalf("the requester's totals: %+v", w)
	}
	// Defaults, and past the end.
	get(t, h, "/v1/ledger", http.StatusOK, &page)
	if len(page.Entries) != 5 || page.Next != 0 {
		t.Fatalf("default page: %d entries, next %d", len(page.Entries), page.Next)
	}
	get(t, h, "/v1/ledger?from=99", http.StatusOK, &page)
	if len(page.Entries) != 0 || page.Entries == nil || page.Next != 0 {
		t.Fatalf("past the end: %+v", page)
	}
	for _, q := range []string{"from=0", "from=x", "from=-1", "limit=0", "limit=1001", "limit=1e3", "from="} {
		get(t, h, "/v1/ledger?"+q, http.StatusBadRequest, nil)
	}
	bare := seednode.NewRegistry(seednode.WithProber(trust))
	defer bare.Stop()
	get(t, bare.Handler(), "/v1/ledger", http.StatusNotFound, nil)
	get(t, bare.Handler(), "/v1/standing?key="+url.QueryEscape(transport.EncodeIdentityKey(pubOf(p1))), http.StatusNotFound, nil)
}

// TestStanding: GET /v1/standing gives a key's work as provider and as
// requester, its score and its rank; a fault sinks a provider below a
// newcomer and keeps it out of Find until the cooldown passes on the
// registry's clock.
func TestStanding(t *testing.T) {
	clock := newClock()
	store := openStore(t, clock)
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithProber(trust), seednode.WithLedger(store), seednode.WithTTL(24*time.Hour))
	defer seed.Stop()
	ctx := context.Background()
	p1, p2, req := keyOf(1), keyOf(2), requesterOf(1)
	if _, err := seed.Submit(ctx, &rookeryv1.SubmitRequest{Receipts: []*rookeryv1.SignedReceipt{
		receipt(t, p1, req, "a", 1e11), receipt(t, p2, req, "b", 1e9)}}); err != nil {
		t.Fatal(err)
	}
	h := seed.Handler()
	standing := func(k ed25519.PrivateKey) seednode.StandingJSON {
		var st seednode.StandingJSON
		get(t, h, "/v1/standing?key="+url.QueryEscape(transport.EncodeIdentityKey(pubOf(k))), http.StatusOK, &st)
		return st
	}
	s1, s2, sr := standing(p1), standing(p2), standing(req)
	if s1.Provider.Rank != 1 || s2.Provider.Rank != 2 || s1.Provider.Score <= s2.Provider.Score || s1.Provider.FLOPs != 1e11 || s1.Provider.ExcludedUntil != "" {
		t.Fatalf("standings: %+v and %+v", s1, s2)
	}
	if sr.Requester.FLOPs != 1e11+1e9 || sr.Requester.Receipts != 2 || sr.Provider.Receipts != 0 || sr.Provider.Rank != 3 {
		t.Fatalf("the requester's standing: %+v", sr)
	}
	// The key's '+' left unescaped in the query reads as a space; a
	// URL-safe key reads too.
	raw := transport.EncodeIdentityKey(pubOf(p1))
	var st seednode.StandingJSON
	get(t, h, "/v1/standing?key="+raw, http.StatusOK, &st)
	if st.Key != raw {
		t.Fatalf("unescaped key: got %q, want %q", st.Key, raw)
	}
	for _, q := range []string{"", "?key=", "?key=abc", "?key=" + url.QueryEscape(raw+"AAAA")} {
		get(t, h, "/v1/standing"+q, http.StatusBadRequest, nil)
	}

	// Register both as providers: p1 faster.
	for i, k := range []ed25519.PrivateKey{p1, p2} {
		c := &claims{key: k, clock: clock}
		if _, err := seed.Register(ctx, c.register(fmt.Sprintf("127.0.0.1:%d", 7001+i), &rookeryv1.Capabilities{Gflops: float64(100 - 50*i), MemoryBytes: 1 << 30})); err != nil {
			t.Fatal(err)
		}
	}
	find := func(n int) ([]string, error) {
		resp, err := seed.Find(ctx, &rookeryv1.FindRequest{N: int32(n), RequesterKey: pubOf(req)})
		return addrs(resp.GetProviders()), err
	}
	if got, err := find(2); err != nil || fmt.Sprint(got) != "[127.0.0.1:7001 127.0.0.1:7002]" {
		t.Fatalf("before the fault: %v, %v", got, err)
	}

	// A fault against p1: left out for the cooldown.
	caught := clock.Now()
	if _, err := seed.Submit(ctx, &rookeryv1.SubmitRequest{Faults: []*rookeryv1.SignedFault{fault(t, pubOf(p1), req)}}); err != nil {
		t.Fatal(err)
	}
	if got, err := find(1); err != nil || fmt.Sprint(got) != "[127.0.0.1:7002]" {
		t.Fatalf("after the fault: %v, %v; want only the other provider", got, err)
	}
	if _, err := find(2); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "1 more left out for a recent fault") {
		t.Fatalf("asking for both after the fault: %v", err)
	}
	until := caught.Add(seednode.DefaultFaultCooldown).UTC().Format(time.RFC3339Nano)
	if s := standing(p1); s.Provider.ExcludedUntil != until || s.Provider.Faults != 1 || s.Provider.Rank != 2 {
		t.Fatalf("p1 after the fault: %+v, want excluded until %s and rank 2", s.Provider, until)
	}
	var view struct{ Providers []seednode.ProviderJSON }
	get(t, h, "/v1/providers", http.StatusOK, &view)
	if len(view.Providers) != 2 || view.Providers[0].ExcludedUntil != until || view.Providers[1].ExcludedUntil != "" {
		t.Fatalf("/v1/providers after the fault: %+v", view.Providers)
	}

	clock.Advance(seednode.DefaultFaultCooldown - time.Millisecond)
	if got, _ := find(2); got != nil {
		t.Fatalf("just before the cooldown ends: found %v", got)
	}
	// Back, but behind the slower provider in good standing: its fault
	// outweighs its work.
	clock.Advance(time.Millisecond)
	if got, err := find(2); err != nil || fmt.Sprint(got) != "[127.0.0.1:7002 127.0.0.1:7001]" {
		t.Fatalf("after the cooldown: %v, %v; want the provider with a fault last", got, err)
	}
	// Work that outweighs the fault restores its place: fastest first.
	if _, err := seed.Submit(ctx, &rookeryv1.SubmitRequest{Receipts: []*rookeryv1.SignedReceipt{receipt(t, p1, req, "c", 1e15)}}); err != nil {
		t.Fatal(err)
	}
	if got, err := find(2); err != nil || fmt.Sprint(got) != "[127.0.0.1:7001 127.0.0.1:7002]" {
		t.Fatalf("after more work: %v, %v; want the faster first again", got, err)
	}
}

// TestScore: a newcomer scores 0; work adds its order of magnitude, a
// fault takes FaultPenalty.
func TestScore(t *testing.T) {
	for _, c := range []struct {
		w    ledger.Work
		want float64
	}{
		{ledger.Work{}, 0},
		{ledger.Work{FLOPs: 999e9}, 3},
		{ledger.Work{FLOPs: 999e9, Faults: 1}, 0},
		{ledger.Work{Faults: 2}, -6},
		{ledger.Work{FLOPs: -5}, 0},
	} {
		if got := seednode.Score(c.w); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("Score(%+v) = %g, want %g", c.w, got, c.want)
		}
	}
}

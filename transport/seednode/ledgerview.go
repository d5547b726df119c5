package seednode

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rookery-ml/rookery/ledger"
	"github.com/rookery-ml/rookery/transport"
)

// The page sizes of GET /v1/ledger.
const (
	DefaultLedgerPage = 100
	MaxLedgerPage     = 1000
)

// WorkJSON is the work of a key, as provider or as requester, in the
// seed node's HTTP/JSON view.
type WorkJSON struct {
	FLOPs        int64 `json:"flops"`
	BytesIn      int64 `json:"bytes_in"`
	BytesOut     int64 `json:"bytes_out"`
	Steps        int64 `json:"steps"`
	MicroBatches int64 `json:"micro_batches"`
	WallMS       int64 `json:"wall_ms"`
	Receipts     int   `json:"receipts"`
	// Faults counts the faults that count (ledger.Work.Faults),
	// UnbackedFaults those from requesters with no session with the
	// provider in the ledger.
	Faults         int `json:"faults"`
	UnbackedFaults int `json:"unbacked_faults"`
}

func workJSON(w ledger.Work) WorkJSON {
	return WorkJSON{FLOPs: w.FLOPs, BytesIn: w.BytesIn, BytesOut: w.BytesOut, Steps: w.Steps, MicroBatches: w.MicroBatches,
		WallMS: w.WallMS, Receipts: w.Receipts, Faults: w.Faults, UnbackedFaults: w.UnbackedFaults}
}

// TotalsJSON is the ledger's work per provider key and per requester key.
type TotalsJSON struct {
	Providers  map[string]WorkJSON `json:"providers"`
	Requesters map[string]WorkJSON `json:"requesters"`
}

// LedgerEntryJSON is one ledger entry in GET /v1/ledger: a receipt
// (kind "receipt", with the work figures and its span, start to end) or
// a fault (kind "fault", with fault_kind and evidence, and the time it
// was caught as both start and end). Raw is the entry's stored bytes,
// from which anyone can check its signatures and the chain
// (ledger.VerifyEntries).
type LedgerEntryJSON struct {
	Seq          uint64 `json:"seq"`
	Time         string `json:"time"`
	Kind         string `json:"kind"`
	Hash         string `json:"hash"`
	PrevHash     string `json:"prev_hash"`
	Job          string `json:"job"`
	Session      string `json:"session"`
	Part         int32  `json:"part"`
	Provider     string `json:"provider"`
	Requester    string `json:"requester"`
	FLOPs        int64  `json:"flops"`
	BytesIn      int64  `json:"bytes_in"`
	BytesOut     int64  `json:"bytes_out"`
	Steps        int64  `json:"steps"`
	MicroBatches int64  `json:"micro_batches"`
	WallMS       int64  `json:"wall_ms"`
	Start        string `json:"start"`
	End          string `json:"end"`
	Final        bool   `json:"final"`
	FaultKind    string `json:"fault_kind"`
	Evidence     string `json:"evidence"`
	Raw          []byte `json:"raw"`
}

// HeadJSON is the ledger's last entry: its seq (0 for an empty ledger)
// and hash.
type HeadJSON struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// LedgerJSON is the answer of GET /v1/ledger: a page of entries from
// the one asked for, Next (the seq of the next page, 0 when there is
// none), the head, and the totals of the whole ledger.
type LedgerJSON struct {
	Head    HeadJSON          `json:"head"`
	Next    uint64            `json:"next"`
	Entries []LedgerEntryJSON `json:"entries"`
	Totals  TotalsJSON        `json:"totals"`
}

// ProviderStandingJSON is a key's standing as a provider: its work, its
// Score, its rank among the ledger's providers (1 is the best; equal
// scores share a rank) and, while a recent fault keeps it out of Find's
// answers, until when (RFC 3339; empty otherwise).
type ProviderStandingJSON struct {
	WorkJSON
	Score         float64 `json:"score"`
	Rank          int     `json:"rank"`
	ExcludedUntil string  `json:"excluded_until"`
}

// StandingJSON is the answer of GET /v1/standing.
type StandingJSON struct {
	Key       string               `json:"key"`
	Provider  ProviderStandingJSON `json:"provider"`
	Requester WorkJSON             `json:"requester"`
}

func jsonTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func entryJSON(e ledger.Entry) LedgerEntryJSON {
	j := LedgerEntryJSON{Seq: e.Seq, Time: jsonTime(e.Time), Hash: hex.EncodeToString(e.Hash[:]), PrevHash: hex.EncodeToString(e.PrevHash[:]), Raw: e.Raw}
	switch {
	case e.Receipt != nil:
		r, w := e.Receipt, e.Receipt.GetWork()
		j.Kind, j.Job, j.Session, j.Part, j.Final = "receipt", r.Job, r.Session, r.Part, r.Final
		j.Provider, j.Requester = transport.EncodeIdentityKey(r.ProviderKey), transport.EncodeIdentityKey(r.RequesterKey)
		j.FLOPs, j.BytesIn, j.BytesOut, j.Steps, j.MicroBatches = w.GetFlops(), w.GetBytesIn(), w.GetBytesOut(), w.GetSteps(), w.GetMicroBatches()
		j.WallMS = ledger.SpanMS(r)
		j.Start, j.End = jsonTime(time.UnixMilli(r.StartUnixMs)), jsonTime(time.UnixMilli(r.EndUnixMs))
	case e.Fault != nil:
		f := e.Fault
		j.Kind, j.Job, j.Session, j.FaultKind, j.Evidence = "fault", f.Job, f.Session, f.Kind, f.Evidence
		j.Provider, j.Requester = transport.EncodeIdentityKey(f.ProviderKey), transport.EncodeIdentityKey(f.RequesterKey)
		j.Start = jsonTime(time.UnixMilli(f.UnixMs))
		j.End = j.Start
	}
	return j
}

// uintParam reads the query parameter name as a whole number within
// [lo, hi], or def when it is absent.
func uintParam(q url.Values, name string, def, lo, hi uint64) (uint64, error) {
	v := q.Get(name)
	if !q.Has(name) {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%.40q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// parseKey reads an identity key in base64, standard (as
// transport.EncodeIdentityKey writes it, with a '+' that a query string
// turned into a space put back) or URL-safe, padded or not.
func parseKey(s string) (ed25519.PublicKey, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), " ", "+")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, fmt.Errorf("key=%.60q: want the base64 of a %d-byte ed25519 public key", s, ed25519.PublicKeySize)
}

// handleLedger serves GET /v1/ledger?from=SEQ&limit=N (LedgerJSON).
func (s *Registry) handleLedger(w http.ResponseWriter, r *http.Request) {
	store := s.cfg.ledger
	if store == nil {
		http.Error(w, ErrNoLedger.Error(), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	from, err := uintParam(q, "from", 1, 1, 1<<62)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	limit, err := uintParam(q, "limit", DefaultLedgerPage, 1, MaxLedgerPage)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The head first: entries appended meanwhile are left for the next
	// page, and the totals may count them.
	seq, hash := store.Head()
	out := LedgerJSON{Head: HeadJSON{Seq: seq, Hash: hex.EncodeToString(hash[:])}, Entries: []LedgerEntryJSON{}}
	if from <= seq {
		n := min(limit, seq-from+1)
		es, err := store.Entries(from, int(n))
		if err != nil {
			s.log.Error("reading the ledger", "from", from, "err", err)
			http.Error(w, "reading the ledger: "+err.Error(), http.StatusInternalServerError)
			return
		}
		for _, e := range es {
			out.Entries = append(out.Entries, entryJSON(e))
		}
		if last := from + uint64(len(es)) - 1; len(es) > 0 && last < seq {
			out.Next = last + 1
		}
	}
	t := store.Totals()
	out.Totals = TotalsJSON{Providers: make(map[string]WorkJSON, len(t.Providers)), Requesters: make(map[string]WorkJSON, len(t.Requesters))}
	for k, w := range t.Providers {
		out.Totals.Providers[k] = workJSON(w)
	}
	for k, w := range t.Requesters {
		out.Totals.Requesters[k] = workJSON(w)
	}
	writeJSON(w, out)
}

// handleStanding serves GET /v1/standing?key=KEY (StandingJSON).
func (s *Registry) handleStanding(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ledger == nil {
		http.Error(w, ErrNoLedger.Error(), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	if !q.Has("key") {
		http.Error(w, "key=: missing; want the base64 of an ed25519 public key", http.StatusBadRequest)
		return
	}
	pub, err := parseKey(q.Get("key"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := transport.EncodeIdentityKey(pub)
	st := s.standings()
	pw, score := st.provider(key)
	out := StandingJSON{Key: key, Requester: workJSON(st.totals.Requesters[key]),
		Provider: ProviderStandingJSON{WorkJSON: workJSON(pw), Score: finite(score), Rank: st.rank(score),
			ExcludedUntil: jsonTime(s.excludedUntil(pw, s.cfg.clock.Now()))}}
	writeJSON(w, out)
}

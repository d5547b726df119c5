package seednode_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/internal/fakeclock"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// The JSON of the seed node's ledger view (GET /v1/ledger and GET
// /v1/standing), as the page reads it.
type (
	workJSON struct {
		FLOPs        int64 `json:"flops"`
		BytesIn      int64 `json:"bytes_in"`
		BytesOut     int64 `json:"bytes_out"`
		Steps        int64 `json:"steps"`
		MicroBatches int64 `json:"micro_batches"`
		WallMS       int64 `json:"wall_ms"`
		Receipts     int   `json:"receipts"`
		Faults       int   `json:"faults"`
	}
	entryJSON struct {
		Seq          uint64 `json:"seq"`
		Time         string `json:"time"`
		Kind         string `json:"kind"`
		Hash         string `json:"hash"`
		PrevHash     string `json:"prev_hash"`
		Job          string `json:"job"`
		Session      string `json:"session"`
		Part         int    `json:"part"`
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
		Raw          string `json:"raw"`
	}
	headJSON struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	}
	totalsJSON struct {
		Providers  map[string]workJSON `json:"providers"`
		Requesters map[string]workJSON `json:"requesters"`
	}
	ledgerJSON struct {
		Head    headJSON    `json:"head"`
		Next    uint64      `json:"next"`
		Entries []entryJSON `json:"entries"`
		Totals  totalsJSON  `json:"totals"`
	}
	standingJSON struct {
		Key      string `json:"key"`
		Provider struct {
			workJSON
			Score         float64 `json:"score"`
			Rank          int     `json:"rank"`
			ExcludedUntil string  `json:"excluded_until"`
		} `json:"provider"`
		Requester workJSON `json:"requester"`
	}
)

// pageFixture is a seed node with providers registered and a ledger of
// canned entries: what the page is tested against.
type pageFixture struct {
	handler http.Handler
	// names of the registered providers, and the identity key of each
	// provider the ledger names (the last is registered no more).
	names    []string
	keys     []string
	jobs     []string
	head     headJSON
	evidence string
}

// pageSize is the most entries the canned /v1/ledger returns at once,
// fewer than the page asks for, so that the page must follow "next".
const pageSize = 4

// newPageFixture registers two providers with a registry (one whose
// measured speed falls far short of its claim), and serves beside its
// HTTP view a ledger of two jobs by three providers, one of them no
// longer registered, with one fault, and the standing of the two
// registered providers.
func newPageFixture(t *testing.T) *pageFixture {
	t.Helper()
	clock := fakeclock.New(time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC))
	addrs := []string{"10.0.0.11:7070", "10.0.0.12:7070"}
	measured := map[string]float64{addrs[0]: 884.5, addrs[1]: 41.2}
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithProber(trust),
		seednode.WithSpeedProbe(func(_ context.Context, addr, _ string) (float64, error) { return measured[addr], nil }))
	t.Cleanup(seed.Stop)
	f := &pageFixture{names: []string{"alpha-gpu", "bravo-cpu"}, jobs: []string{"mnist-mlp-7f3a", "cifar-cnn-02b1"}}
	claimed := []float64{950, 200}
	for i, name := range f.names {
		p := &claims{key: keyOf(byte(i + 1)), clock: clock}
		caps := &rookeryv1.Capabilities{Name: name, Version: "0.19.0", CpuModel: "EPYC 9354", CpuCores: 32, MemoryBytes: 128 << 30,
			Os: "linux", Arch: "amd64", Gflops: claimed[i]}
		if i == 0 {
			caps.Gpus = []*rookeryv1.GPU{{Name: "NVIDIA L4", MemoryBytes: 24 << 30}}
		}
		if _, err := seed.Register(context.Background(), p.register(addrs[i], caps)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		f.keys = append(f.keys, transport.EncodeIdentityKey(keyOf(byte(i+1)).Public().(ed25519.PublicKey)))
	}
	requester := transport.EncodeIdentityKey(keyOf(9).Public().(ed25519.PublicKey))
	f.evidence = "spot check of step 41, micro-batch 3: loss 2.3026 where the replica on alpha-gpu computed 0.4127"

	var entries []entryJSON
	base := clock.Now().Add(-2 * time.Hour)
	var prev [32]byte
	add := func(e entryJSON, at time.Time) {
		e.Seq = uint64(len(entries) + 1)
		e.Time = at.UTC().Format(time.RFC3339)
		e.Requester = requester
		raw := fmt.Appendf(nil, "entry %d of job %s", e.Seq, e.Job)
		h := sha256.Sum256(append(prev[:], raw...))
		e.PrevHash, e.Hash, e.Raw = hex.EncodeToString(prev[:]), hex.EncodeToString(h[:]), base64.StdEncoding.EncodeToString(raw)
		prev = h
		entries = append(entries, e)
	}
	receipt := func(job string, part, provider int, gflop, mb, steps int64, start, end time.Duration) {
		add(entryJSON{Kind: "receipt", Job: job, Session: fmt.Sprintf("%s-s%d", job, part), Part: part, Provider: f.keys[provider],
			FLOPs: gflop * 1e9, BytesIn: mb * 1e6, BytesOut: mb * 1e6 / 2, Steps: steps, MicroBatches: 4 * steps,
			WallMS: (end - start).Milliseconds(), Start: base.Add(start).Format(time.RFC3339), End: base.Add(end).Format(time.RFC3339), Final: true},
			base.Add(end))
	}
	// The first job: three parts of a pipeline, on all three providers.
	receipt(f.jobs[0], 0, 0, 41_200, 310, 500, 0, 18*time.Minute)
	receipt(f.jobs[0], 1, 1, 9_800, 290, 500, 0, 18*time.Minute+20*time.Second)
	receipt(f.jobs[0], 2, 2, 20_500, 120, 500, 30*time.Second, 18*time.Minute+40*time.Second)
	// The second: two providers, one caught by a spot check.
	receipt(f.jobs[1], 0, 0, 88_000, 1_450, 1_200, 40*time.Minute, 85*time.Minute)
	receipt(f.jobs[1], 1, 1, 6_100, 800, 300, 40*time.Minute, 52*time.Minute)
	add(entryJSON{Kind: "fault", Job: f.jobs[1], Session: f.jobs[1] + "-s1", Part: 1, Provider: f.keys[1],
		FaultKind: "spot_check", Evidence: f.evidence}, base.Add(52*time.Minute))
	receipt(f.jobs[1], 1, 2, 11_300, 700, 900, 53*time.Minute, 85*time.Minute)
	f.head = headJSON{Seq: uint64(len(entries)), Hash: hex.EncodeToString(prev[:])}

	totals := totalsJSON{Providers: map[string]workJSON{}, Requesters: map[string]workJSON{}}
	for _, e := range entries {
		for _, side := range []struct {
			m   map[string]workJSON
			key string
		}{{totals.Providers, e.Provider}, {totals.Requesters, e.Requester}} {
			w := side.m[side.key]
			if e.Kind == "fault" {
				w.Faults++
			} else {
				w.Receipts++
				w.FLOPs += e.FLOPs
				w.BytesIn += e.BytesIn
				w.BytesOut += e.BytesOut
				w.Steps += e.Steps
				w.MicroBatches += e.MicroBatches
				w.WallMS += e.WallMS
			}
			side.m[side.key] = w
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/", seed.Handler())
	mux.HandleFunc("GET /v1/ledger", func(w http.ResponseWriter, r *http.Request) {
		from, limit := uint64(1), 100
		if v := r.URL.Query().Get("from"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				http.Error(w, "bad from", http.StatusBadRequest)
				return
			}
			from = n
		}
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 1000 {
				http.Error(w, "bad limit", http.StatusBadRequest)
				return
			}
			limit = n
		}
		out := ledgerJSON{Head: f.head, Totals: totals, Entries: []entryJSON{}}
		for _, e := range entries {
			if e.Seq >= from && len(out.Entries) < min(limit, pageSize) {
				out.Entries = append(out.Entries, e)
			}
		}
		if n := len(out.Entries); n > 0 && out.Entries[n-1].Seq < f.head.Seq {
			out.Next = out.Entries[n-1].Seq + 1
		}
		writeTestJSON(w, out)
	})
	mux.HandleFunc("GET /v1/standing", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		var s standingJSON
		s.Key = key
		switch key {
		case f.keys[0]:
			s.Provider.Score, s.Provider.Rank = 0.97, 1
		case f.keys[1]:
			s.Provider.Score, s.Provider.Rank = 0.31, 3
			s.Provider.ExcludedUntil = clock.Now().Add(6 * time.Hour).Format(time.RFC3339)
		default:
			http.Error(w, "no standing for this key", http.StatusNotFound)
			return
		}
		s.Provider.workJSON, s.Requester = totals.Providers[key], totals.Requesters[key]
		writeTestJSON(w, s)
	})
	f.handler = mux
	return f
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

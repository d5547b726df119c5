package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// ledgerPage is what GET /v1/ledger answers, as far as the check reads it.
type ledgerPage struct {
	Next    uint64 `json:"next"`
	Entries []struct {
		Seq      uint64 `json:"seq"`
		Kind     string `json:"kind"`
		Session  string `json:"session"`
		Part     int    `json:"part"`
		Provider string `json:"provider"`
		FLOPs    int64  `json:"flops"`
		Steps    int64  `json:"steps"`
		Final    bool   `json:"final"`
	} `json:"entries"`
}

// checkReceipts reads the seed node's ledger at base (its HTTP view) and
// checks that each part's provider session left receipts, one of them
// final, whose FLOPs add up to want[part] within 1% and whose steps to
// steps. The receipts arrive shortly after the trainer closes, so it
// reads the ledger again for a few seconds until they are all there.
func checkReceipts(ctx context.Context, base string, want []int64, steps int64) error {
	var err error
	for try := 0; try < 50; try++ {
		if err = checkOnce(ctx, base, want, steps, try == 49); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

type tally struct {
	provider     string
	part         int
	flops, steps int64
	receipts     int
	final        bool
}

func checkOnce(ctx context.Context, base string, want []int64, steps int64, print bool) error {
	sessions := map[string]*tally{}
	for from := uint64(1); from != 0; {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ledger?limit=1000&from="+strconv.FormatUint(from, 10), nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		var p ledgerPage
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		for _, e := range p.Entries {
			if e.Kind != "receipt" {
				continue
			}
			t := sessions[e.Session]
			if t == nil {
				t = &tally{provider: e.Provider, part: e.Part}
				sessions[e.Session] = t
			}
			t.flops += e.FLOPs
			t.steps += e.Steps
			t.receipts++
			t.final = t.final || e.Final
		}
		from = p.Next
	}
	var list []*tally
	for _, t := range sessions {
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].part < list[j].part })
	if len(list) != len(want) {
		return fmt.Errorf("ledger: receipts of %d provider sessions, want %d", len(list), len(want))
	}
	for i, t := range list {
		if !t.final {
			return fmt.Errorf("ledger: part %d has no final receipt yet", t.part)
		}
		if t.part != i {
			return fmt.Errorf("ledger: receipts of parts %v", parts(list))
		}
	}
	bad := 0
	var lines []string
	for _, t := range list {
		w := want[t.part]
		diff := float64(t.flops-w) / float64(w)
		if !(diff <= 0.01 && diff >= -0.01 && t.steps == steps) {
			bad++
		}
		lines = append(lines, fmt.Sprintf("ledger: part %d on provider %s: %d receipt(s), %d steps, %d FLOPs; the model's cost × steps: %d FLOPs (%+.3f%%)",
			t.part, t.provider, t.receipts, t.steps, t.flops, w, 100*diff))
	}
	if bad == 0 || print {
		for _, l := range lines {
			fmt.Println(l)
		}
	}
	if bad > 0 {
		return fmt.Errorf("ledger: %d provider sessions' FLOPs or steps differ from the model's", bad)
	}
	fmt.Println("ledger: every provider session has its receipts, FLOPs within 1% of the model's cost × steps")
	return nil
}

func parts(l []*tally) []int {
	var out []int
	for _, t := range l {
		out = append(out, t.part)
	}
	return out
}

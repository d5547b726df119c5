package seednode_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rookery-ml/rookery/internal/fuzzcalls"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// FuzzHTTPView registers what the input's messages say, then sends the
// HTTP view a request of the input's method and path. No input may panic
// it; an answer that says it is JSON must be valid JSON, GET
// /v1/providers must always be a 200 with a list, and GET /v1/ledger and
// /v1/standing a 200 or, for bad parameters, a 400.
func FuzzHTTPView(f *testing.F) {
	caps := &rookeryv1.Capabilities{Name: "p", MemoryBytes: 1 << 30, Gflops: 10, Gpus: []*rookeryv1.GPU{{Name: "g"}}}
	f.Add("GET", "/v1/providers", fuzzcalls.Encode([]any{byte(0), &rookeryv1.ProviderClaim{Address: "127.0.0.1:7070", Capabilities: caps}}))
	f.Add("GET", "/v1/lease-key", []byte{})
	f.Add("POST", "/v1/providers?x=1", []byte{})
	f.Add("GET", "/v1/ledger?from=2&limit=1", []byte{})
	f.Add("GET", "/v1/ledger?from=18446744073709551615&limit=1000", []byte{})
	f.Add("GET", "/v1/standing?key="+url.QueryEscape(transport.EncodeIdentityKey(pubOf(keyOf(1)))), []byte{})
	f.Add("GET", "/v1/standing?key=%zz", []byte{})
	clock := &settableClock{}
	store := openStore(f, clock)
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithProber(trust), seednode.WithRegistrationLimit(0, 0), seednode.WithLedger(store))
	f.Cleanup(seed.Stop)
	// A ledger of receipts and a fault for the providers the inputs
	// register (keys 0 and 1).
	if _, err := seed.Submit(context.Background(), &rookeryv1.SubmitRequest{
		Receipts: []*rookeryv1.SignedReceipt{receipt(f, keyOf(0), requesterOf(0), "a", 1e12), receipt(f, keyOf(1), requesterOf(0), "b", 1e9)},
		Faults:   []*rookeryv1.SignedFault{fault(f, pubOf(keyOf(1)), requesterOf(0))}}); err != nil {
		f.Fatal(err)
	}
	h := seed.Handler()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, method, path string, data []byte) {
		clock.set(time.UnixMilli(1 << 40).Add(time.Duration(len(data)+len(path)) * time.Hour))
		_, msgs := fuzzcalls.Decode(data, 8)
		for i, ms := range msgs {
			for _, b := range ms {
				var c rookeryv1.ProviderClaim
				if proto.Unmarshal(b, &c) == nil {
					p := &claims{key: keyOf(byte(i)), clock: clock}
					_, _ = seed.Register(ctx, p.register(c.Address, c.Capabilities))
				}
			}
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		r, err := http.NewRequest(method, "http://seed"+path, nil)
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s: %d, invalid JSON %q", method, path, w.Code, w.Body.Bytes())
		}
		if method == "GET" && (r.URL.Path == "/v1/ledger" || r.URL.Path == "/v1/standing") && w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("GET %s: %d %q, want 200 or 400", path, w.Code, w.Body.Bytes())
		}
		if method == "GET" && r.URL.Path == "/v1/providers" {
			var view struct {
				Providers []seednode.ProviderJSON `json:"providers"`
			}
			if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &view) != nil || view.Providers == nil {
				t.Fatalf("GET /v1/providers: %d %q", w.Code, w.Body.Bytes())
			}
		}
	})
}

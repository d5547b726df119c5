package seednode_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rookery-ml/rookery/internal/fuzzcalls"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// FuzzHTTPView registers what the input's messages say, then sends the
// HTTP view a request of the input's method and path. No input may panic
// it; an answer that says it is JSON must be valid JSON, and GET
// /v1/providers must always be a 200 with a list.
func FuzzHTTPView(f *testing.F) {
	caps := &rookeryv1.Capabilities{Name: "p", MemoryBytes: 1 << 30, Gflops: 10, Gpus: []*rookeryv1.GPU{{Name: "g"}}}
	f.Add("GET", "/v1/providers", fuzzcalls.Encode([]any{byte(0), &rookeryv1.ProviderClaim{Address: "127.0.0.1:7070", Capabilities: caps}}))
	f.Add("GET", "/v1/lease-key", []byte{})
	f.Add("POST", "/v1/providers?x=1", []byte{})
	clock := &settableClock{}
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithProber(trust), seednode.WithRegistrationLimit(0, 0))
	f.Cleanup(seed.Stop)
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

package seednode_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// TestSpeedClaims: a speed that is not a finite number in [0, the cap]
// is refused with a *SpeedError (InvalidArgument on the wire), so it can
// neither head the list nor break the HTTP view.
func TestSpeedClaims(t *testing.T) {
	seed := seednode.NewRegistry(seednode.WithProber(trust))
	p := &claims{key: keyOf(1), clock: transport.SystemClock}
	defer seed.Stop()
	ctx := context.Background()
	for _, c := range []struct {
		gflops, bw float64
		ok         bool
	}{
		{10, 1e9, true}, {0, 0, true}, {seednode.MaxGFLOPS, 0, true},
		{math.NaN(), 0, false}, {math.Inf(1), 0, false}, {math.Inf(-1), 0, false}, {-1, 0, false}, {1e300, 0, false},
		{10, math.NaN(), false}, {10, -5, false}, {10, math.Inf(1), false},
	} {
		caps := &rookeryv1.Capabilities{Gflops: c.gflops, MemBandwidthBytesPerSec: c.bw}
		_, err := seed.Register(ctx, p.register("127.0.0.1:7070", caps))
		if c.ok {
			if err != nil {
				t.Errorf("gflops %g, bandwidth %g: %v", c.gflops, c.bw, err)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("gflops %g, bandwidth %g: got %v, want InvalidArgument", c.gflops, c.bw, err)
		}
	}
	err := seednode.CheckSpeeds(&rookeryv1.Capabilities{Gflops: math.NaN()})
	var se *seednode.SpeedError
	if !errors.Is(err, seednode.ErrSpeed) || !errors.As(err, &se) || se.Field != "gflops" || !errors.Is(err, transport.ErrInvalidArgument) {
		t.Errorf("CheckSpeeds(NaN): %v, want a *SpeedError for gflops", err)
	}
}

// TestProvidersViewJSON: GET /v1/providers always answers valid JSON,
// whatever was registered.
func TestProvidersViewJSON(t *testing.T) {
	seed := seednode.NewRegistry(seednode.WithProber(trust))
	defer seed.Stop()
	ctx := context.Background()
	for i, g := range []float64{math.NaN(), math.Inf(1), 5} {
		addr := fmt.Sprintf("127.0.0.1:%d", 7070+i)
		p := &claims{key: keyOf(byte(i)), clock: transport.SystemClock}
		_, _ = seed.Register(ctx, p.register(addr, &rookeryv1.Capabilities{Gflops: g}))
	}
	hs := httptest.NewServer(seed.Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/v1/providers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var view struct {
		Providers []seednode.ProviderJSON `json:"providers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
		t.Fatalf("status %d, body not JSON: %v", resp.StatusCode, err)
	}
}

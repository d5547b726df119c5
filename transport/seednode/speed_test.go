package seednode_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/exec"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// stopwatch is a clock whose every reading is step later than the last,
// so that a benchmark timed by two readings takes exactly step.
type stopwatch struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (w *stopwatch) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(w.step)
	return w.now
}

func (w *stopwatch) After(time.Duration) <-chan time.Time { return nil }

func (w *stopwatch) set(step time.Duration) {
	w.mu.Lock()
	w.step = step
	w.mu.Unlock()
}

// gflopsIn is the speed the benchmark reports when it takes d.
func gflopsIn(d time.Duration) float64 { return seednode.BenchFLOP / d.Seconds() / 1e9 }

// TestMeasuredSpeed: the seed node measures each provider itself, in a
// session opened with a lease it signs for itself, lists it by what it
// measured, shows the claim beside the measurement, marks a claim far
// above it, and gives requesters the measured figures.
func TestMeasuredSpeed(t *testing.T) {
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	watch := &stopwatch{now: time.Unix(1_700_000_000, 0)}
	// The address check without comparing speeds with Describe: a lying
	// provider's Describe repeats its claim.
	vouch := func(ctx context.Context, addr string, pub ed25519.PublicKey) (*rookeryv1.Capabilities, time.Duration, error) {
		_, rtt, err := seednode.DialProber(10*time.Second)(ctx, addr, pub)
		return nil, rtt, err
	}
	seed, seedAddr := startRegistry(t, seednode.WithLeaseSigning(key, time.Minute), seednode.WithProber(vouch),
		seednode.WithSpeedProbe(seednode.DialSpeedProbe(10*time.Second, watch)))
	ctx := context.Background()

	honestSrv, honestAddr := serveProvider(t, key, transport.WithIdentity(keyOf(1)))
	liarSrv, liarAddr := serveProvider(t, key, transport.WithIdentity(keyOf(2)))
	watch.set(10 * time.Millisecond)
	if _, err := seed.Register(ctx, (&claims{key: keyOf(1), clock: transport.SystemClock}).register(honestAddr, &rookeryv1.Capabilities{Gflops: 6})); err != nil {
		t.Fatalf("the honest provider: %v", err)
	}
	watch.set(100 * time.Millisecond)
	if _, err := seed.Register(ctx, (&claims{key: keyOf(2), clock: transport.SystemClock}).register(liarAddr, &rookeryv1.Capabilities{Gflops: 1e6})); err != nil {
		t.Fatalf("the lying provider: %v", err)
	}
	fast, slow := gflopsIn(10*time.Millisecond), gflopsIn(100*time.Millisecond)

	list, _ := seed.List(ctx, &rookeryv1.ListRequest{})
	if got := addrs(list.Providers); len(got) != 2 || got[0] != honestAddr || got[1] != liarAddr {
		t.Fatalf("listed %v, want the honest provider %s first", got, honestAddr)
	}
	for i, want := range []struct {
		measured   float64
		unverified bool
	}{{fast, false}, {slow, true}} {
		if e := list.Providers[i]; e.MeasuredGflops != want.measured || e.UnverifiedSpeed != want.unverified {
			t.Errorf("%s: measured %v GFLOP/s, unverified_speed %v; want %v, %v", e.Address, e.MeasuredGflops, e.UnverifiedSpeed, want.measured, want.unverified)
		}
	}

	// The HTTP view shows the claim and the measurement.
	rec := httptest.NewRecorder()
	seed.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/providers", nil))
	var view struct{ Providers []seednode.ProviderJSON }
	if err := json.Unmarshal(rec.Body.Bytes(), &view); err != nil {
		t.Fatal(err)
	}
	if len(view.Providers) != 2 || view.Providers[1].Machine.GFLOPS != 1e6 || view.Providers[1].MeasuredGFLOPS != slow || !view.Providers[1].UnverifiedSpeed {
		t.Fatalf("HTTP view: %+v", view.Providers)
	}

	// Requesters filter and weigh by the measurement.
	found, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 1, MinGFLOPS: 1})
	if err != nil || len(found) != 1 || found[0].Address != honestAddr {
		t.Fatalf("find at least 1 GFLOP/s: %v, %v; want only %s", addrs(found), err, honestAddr)
	}
	if _, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 2, MinGFLOPS: 1}); !errors.Is(err, seednode.ErrNotEnough) {
		t.Fatalf("two at least 1 GFLOP/s: %v, want ErrNotEnough", err)
	}
	execs, caps, release, err := seednode.Lease(ctx, seedAddr, seednode.Need{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	release()
	if len(execs) != 2 || len(caps) != 2 || caps[0] != fast || caps[1] != slow {
		t.Fatalf("lease capacities %v, want [%v %v]", caps, fast, slow)
	}
	// The seed node's sessions are closed.
	if n := honestSrv.Sessions() + liarSrv.Sessions(); n != 0 {
		t.Fatalf("%d sessions left open by the speed probe", n)
	}
}

// TestMeasureAgain: an entry whose measurement failed is ranked by no
// speed and marked, and is measured again at a heartbeat once
// SpeedRetry has passed, not before.
func TestMeasureAgain(t *testing.T) {
	clock := newClock()
	var calls int
	probe := func(ctx context.Context, addr, lease string) (float64, error) {
		calls++
		if calls == 1 {
			return 0, errors.New("refused")
		}
		return 42, nil
	}
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithTTL(time.Hour), seednode.WithProber(trust), seednode.WithSpeedProbe(probe))
	defer seed.Stop()
	ctx := context.Background()
	p := &claims{key: keyOf(1), clock: clock}
	reg, err := seed.Register(ctx, p.register("127.0.0.1:7070", &rookeryv1.Capabilities{Gflops: 40}))
	if err != nil {
		t.Fatal(err)
	}
	entry := func() *rookeryv1.ProviderEntry {
		list, _ := seed.List(ctx, &rookeryv1.ListRequest{})
		return list.Providers[0]
	}
	if e := entry(); e.MeasuredGflops != 0 || !e.UnverifiedSpeed || seednode.Speed(e) != 0 {
		t.Fatalf("after a failed measurement: %v", e)
	}
	clock.Advance(seednode.SpeedRetry - time.Second)
	if _, err := seed.Heartbeat(ctx, p.heartbeat(reg.Id, 0)); err != nil || calls != 1 {
		t.Fatalf("heartbeat before SpeedRetry: %v, %d measurements, want 1", err, calls)
	}
	clock.Advance(time.Second)
	if _, err := seed.Heartbeat(ctx, p.heartbeat(reg.Id, 0)); err != nil || calls != 2 {
		t.Fatalf("heartbeat at SpeedRetry: %v, %d measurements, want 2", err, calls)
	}
	if e := entry(); e.MeasuredGflops != 42 || e.UnverifiedSpeed || seednode.Speed(e) != 42 {
		t.Fatalf("after measuring again: %v", e)
	}
	if _, err := seed.Heartbeat(ctx, p.heartbeat(reg.Id, 0)); err != nil || calls != 2 {
		t.Fatalf("heartbeat once measured: %v, %d measurements, want 2", err, calls)
	}
}

// TestMeasureGFLOPS runs the benchmark on a local executor: the time the
// clock gives is the time it counts.
func TestMeasureGFLOPS(t *testing.T) {
	w := &stopwatch{now: time.Unix(0, 0), step: time.Second}
	g, err := seednode.MeasureGFLOPS(context.Background(), exec.NewCPU(), w)
	if err != nil || g != seednode.BenchFLOP/1e9 {
		t.Fatalf("got %v, %v; want %v", g, err, seednode.BenchFLOP/1e9)
	}
}

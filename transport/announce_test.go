package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	"github.com/rookery-ml/rookery/transport"
)

// waitClock is a fake clock that also hands the test each delay up to
// AnnounceRetryMax waited on: the announce loop's, not the idle reaper's
// (the test sets the reaper's timeouts far above it).
type waitClock struct {
	*fakeclock.Clock
	waits chan time.Duration
}

func (c waitClock) After(d time.Duration) <-chan time.Time {
	ch := c.Clock.After(d)
	if d <= transport.AnnounceRetryMax {
		c.waits <- d
	}
	return ch
}

// A provider whose seed node is down retries its registration after
// delays that double, with jitter, up to a cap; it does not retry every
// second forever.
func TestAnnounceBacksOff(t *testing.T) {
	clock := waitClock{fakeclock.New(time.Unix(1_700_000_000, 0)), make(chan time.Duration, 1)}
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithClock(clock),
		transport.WithLimits(transport.Limits{IdleTimeout: 1000 * time.Hour, UnusedTimeout: 1000 * time.Hour, StreamIdleTimeout: 1000 * time.Hour}))
	defer srv.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Announce(ctx, closedPort(t), "127.0.0.1:7070") }()

	base, atCap, equal := transport.AnnounceRetryMin, 0, 0
	var last time.Duration
	for i := range 12 {
		d := <-clock.waits
		if d < base/2 || d > base {
			t.Errorf("retry %d: waited %v, want between %v and %v", i+1, d, base/2, base)
		}
		if d == last {
			equal++
		}
		if base == transport.AnnounceRetryMax {
			atCap++
		}
		last = d
		clock.Advance(d)
		base = min(2*base, transport.AnnounceRetryMax)
	}
	if atCap < 4 {
		t.Errorf("reached the cap %d times in 12 retries, want at least 4", atCap)
	}
	if equal > 3 {
		t.Errorf("%d retries waited as long as the one before; want jitter", equal)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("announce: %v", err)
	}
}

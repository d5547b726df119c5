package seednode_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// from returns a context whose gRPC peer is host.
func from(host string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(host), Port: 40000}})
}

// TestRegistrationLimits: one source registers a burst, then one more
// each interval of the registry's clock; another source is not held
// back; and the registry holds no more than its cap of entries. Both
// refusals are ResourceExhausted with a LimitError that says which limit.
func TestRegistrationLimits(t *testing.T) {
	clock := newClock()
	seed := seednode.NewRegistry(seednode.WithClock(clock), seednode.WithTTL(time.Hour),
		seednode.WithRegistrationLimit(3, 10*time.Second), seednode.WithMaxProviders(5), seednode.WithProber(trust))
	defer seed.Stop()
	port := 7000
	reg := func(ctx context.Context) error {
		port++
		p := &claims{key: keyOf(byte(port)), clock: clock}
		_, err := seed.Register(ctx, p.register(fmt.Sprintf("127.0.0.1:%d", port), nil))
		return err
	}
	limited := func(what string, err error) {
		t.Helper()
		var le *transport.LimitError
		if status.Code(err) != codes.ResourceExhausted || !errors.As(transport.FromStatus(context.Background(), "register", err), &le) {
			t.Fatalf("%s: got %v, want ResourceExhausted with a LimitError", what, err)
		}
	}
	a, b := from("192.0.2.1"), from("192.0.2.2")
	for i := range 3 {
		if err := reg(a); err != nil {
			t.Fatalf("registration %d of a burst of 3: %v", i+1, err)
		}
	}
	limited("the 4th at once", reg(a))
	clock.Advance(10 * time.Second)
	if err := reg(a); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
	limited("the 5th before the next interval", reg(a))
	if err := reg(b); err != nil {
		t.Fatalf("another source: %v", err)
	}
	limited("past the registry's cap of 5", reg(b))
}

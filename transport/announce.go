package transport

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Announce registers the server with the seed node at seedAddr under
// advertise (the address requesters dial) and renews the entry by
// heartbeat, a third of the TTL apart, until ctx is done; then it
// deregisters and returns nil. An expired entry is registered again; a
// seed node that refuses or does not answer a registration is retried
// without ending the loop, after a delay that doubles from
// AnnounceRetryMin up to AnnounceRetryMax with jitter (between half and
// all of it), so that providers waiting on one seed node neither flood
// it nor come back in step. The loop waits on the server's clock
// (WithClock). Every registration, heartbeat and deregistration is a
// claim signed by the server's identity key (WithIdentity).
func (s *Server) Announce(ctx context.Context, seedAddr, advertise string, opts ...DialOption) error {
	cfg := newDialConfig(opts)
	cc, err := cfg.conn(seedAddr)
	if errors.Is(err, ErrInsecure) {
		return err
	}
	if err != nil {
		return fmt.Errorf("transport: seed %s: %w: %v", seedAddr, ErrUnavailable, err)
	}
	defer cc.Close()
	sc := rookeryv1.NewSeedClient(cc)
	id := ""
	interval := AnnounceRetryMin
	failures := 0 // registrations failed in a row
	jitter := rand.New(rand.NewPCG(uint64(s.cfg.clock.Now().UnixNano()), fnv64(advertise)))
	var lastMs int64
	sign := func(c *rookeryv1.ProviderClaim) *rookeryv1.SignedClaim {
		// Claims on one entry must be newer than the last, even when the
		// clock has not moved.
		lastMs = max(s.cfg.clock.Now().UnixMilli(), lastMs+1)
		c.UnixMs = lastMs
		sc, err := SignClaim(s.identity, c)
		if err != nil {
			s.log.Warn("signing a claim", "err", err)
		}
		return sc
	}
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if id == "" {
			resp, err := sc.Register(callCtx, &rookeryv1.RegisterRequest{Signed: sign(&rookeryv1.ProviderClaim{
				Kind: rookeryv1.ProviderClaim_KIND_REGISTER, Address: advertise, Capabilities: s.caps})})
			if err == nil {
				id = resp.Id
				s.addID(id)
				failures = 0
				interval = max(time.Duration(resp.TtlMs)*time.Millisecond/3, 10*time.Millisecond)
				s.log.Info("registered with seed", "seed", seedAddr, "id", id, "advertise", advertise, "identity", EncodeIdentityKey(s.IdentityKey()))
			} else {
				failures++
				interval = announceRetry(failures, jitter)
				if ctx.Err() == nil {
					s.log.Warn("register with seed", "seed", seedAddr, "err", err, "retry_in", interval)
				}
			}
		} else {
			_, err := sc.Heartbeat(callCtx, &rookeryv1.HeartbeatRequest{Signed: sign(&rookeryv1.ProviderClaim{
				Kind: rookeryv1.ProviderClaim_KIND_HEARTBEAT, Id: id, Sessions: int32(s.Sessions())})})
			if status.Code(err) == codes.NotFound {
				s.log.Warn("seed forgot this provider; registering again", "seed", seedAddr)
				id = ""
				cancel()
				continue
			} else if err != nil && ctx.Err() == nil {
				s.log.Warn("heartbeat", "seed", seedAddr, "err", err)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			if id != "" {
				dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, _ = sc.Deregister(dctx, &rookeryv1.DeregisterRequest{Signed: sign(&rookeryv1.ProviderClaim{
					Kind: rookeryv1.ProviderClaim_KIND_DEREGISTER, Id: id})})
				dcancel()
			}
			return nil
		case <-s.cfg.clock.After(interval):
		}
	}
}

// The bounds of the delay between failed registrations with a seed node.
const (
	AnnounceRetryMin = time.Second
	AnnounceRetryMax = time.Minute
)

// announceRetry is the delay after the n-th failed registration in a row
// (n >= 1): AnnounceRetryMin doubled n-1 times, capped at
// AnnounceRetryMax, of which a random half to all is taken.
func announceRetry(n int, r *rand.Rand) time.Duration {
	d := AnnounceRetryMin
	for i := 1; i < n && d < AnnounceRetryMax; i++ {
		d *= 2
	}
	d = min(d, AnnounceRetryMax)
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}

// fnv64 is the FNV-1a hash of s, to seed jitter per provider.
func fnv64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

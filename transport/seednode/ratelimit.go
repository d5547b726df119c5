package seednode

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/rookery-ml/rookery/transport"
)

// maxSources bounds the rate limiter's table; past it, sources whose
// buckets have refilled are forgotten, and should none have, new
// sources wait.
const maxSources = 1 << 16

// bucket is a token bucket of one source's calls of one kind.
type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// source names the origin of a call for rate limiting: the
// authenticated identity, or the peer's host.
func source(ctx context.Context, identity string) string {
	if identity != "" {
		return identity
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		a := p.Addr.String()
		if host, _, err := net.SplitHostPort(a); err == nil {
			return host
		}
		return a
	}
	return "local"
}

// admit takes one registration from src's bucket, or returns a
// *transport.LimitError; s.mu is held.
func (s *Registry) admit(src string, now time.Time) error {
	return take(s.buckets, "registrations", src, s.cfg.regBurst, s.cfg.regEvery, now)
}

// take takes one call from src's bucket in buckets, which holds burst
// calls and gains one each every, or returns a *transport.LimitError
// naming the calls (what); s.mu is held.
func take(buckets map[string]*bucket, what, src string, burst int, every time.Duration, now time.Time) error {
	if burst <= 0 {
		return nil
	}
	refill := func(b *bucket) {
		if every > 0 && now.After(b.at) {
			b.tokens = min(float64(burst), b.tokens+float64(now.Sub(b.at))/float64(every))
		}
		b.at = now
	}
	b, ok := buckets[src]
	if !ok {
		if len(buckets) >= maxSources {
			for k, o := range buckets {
				if refill(o); o.tokens >= float64(burst) {
					delete(buckets, k)
				}
			}
		}
		if len(buckets) >= maxSources {
			return &transport.LimitError{What: "sources of " + what + " at once", Limit: maxSources, Got: int64(len(buckets)) + 1, Capacity: true}
		}
		b = &bucket{tokens: float64(burst), at: now}
		buckets[src] = b
	}
	refill(b)
	if b.tokens < 1 {
		return &transport.LimitError{What: fmt.Sprintf("%s from %.100s at once (one more every %v)", what, src, every),
			Limit: int64(burst), Got: int64(burst) + 1, Capacity: true}
	}
	b.tokens--
	return nil
}

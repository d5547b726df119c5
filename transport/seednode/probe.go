package seednode

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// A Prober proves, before a registry lists a provider, that the provider
// answers at address with the identity key that signed its registration.
// It returns what the provider reported there and how long it took to
// answer. Any error refuses the registration.
type Prober func(ctx context.Context, address string, key ed25519.PublicKey) (caps *rookeryv1.Capabilities, rtt time.Duration, err error)

// DefaultProbeTimeout bounds DialProber's dial and call.
const DefaultProbeTimeout = 5 * time.Second

// WithProber sets how the registry checks a registering provider's
// address (default: DialProber(DefaultProbeTimeout), clear text on
// loopback only). A seed node whose providers serve TLS gives
// DialProber the credentials to reach them.
func WithProber(p Prober) Option { return func(c *config) { c.prober = p } }

// DialProber dials address with opts and sends Describe a fresh random
// challenge; the answer must be signed by key (transport.VerifyChallenge).
// The dial and the call together take at most timeout.
func DialProber(timeout time.Duration, opts ...transport.DialOption) Prober {
	return func(ctx context.Context, address string, key ed25519.PublicKey) (*rookeryv1.Capabilities, time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cc, err := transport.ClientConn(address, opts...)
		if err != nil {
			return nil, 0, err
		}
		defer cc.Close()
		challenge := make([]byte, 32)
		_, _ = rand.Read(challenge)
		start := time.Now()
		// Not WaitForReady: an address that refuses connections fails at
		// once; one that drops them, at the timeout.
		caps, err := rookeryv1.NewProviderClient(cc).Describe(ctx, &rookeryv1.DescribeRequest{Challenge: challenge})
		rtt := time.Since(start)
		if err != nil {
			return nil, 0, fmt.Errorf("describe: %w", transport.FromStatus(ctx, "describe "+address, err))
		}
		pub, ok := transport.VerifyChallenge(caps, challenge)
		if !ok || !pub.Equal(key) {
			return nil, 0, fmt.Errorf("the provider there answers with identity key %s", transport.EncodeIdentityKey(pub))
		}
		return caps, rtt, nil
	}
}

// speedSlack is how far the speed a provider registered may be above
// the one it reports at its address before a registry that measures no
// speeds marks the entry (ProviderEntry.unverified_speed) and ranks it
// last; a registry that measures decides by its measurement instead.
const speedSlack = 1.1

// checkAddress runs the prober on a registration and returns the entry's
// probe fields.
func (s *Registry) checkAddress(ctx context.Context, c *rookeryv1.ProviderClaim) (rtt time.Duration, unverified bool, err error) {
	key := ed25519.PublicKey(c.IdentityKey)
	caps, rtt, err := s.cfg.prober(ctx, c.Address, key)
	if err != nil {
		return 0, false, &transport.AuthError{Reason: transport.ReasonUnverified,
			Detail: fmt.Sprintf("%.100s did not answer with identity key %s: %v", c.Address, transport.EncodeIdentityKey(key), err)}
	}
	if caps != nil && c.Capabilities.GetGflops() > caps.GetGflops()*speedSlack {
		unverified = true
	}
	return rtt, unverified, nil
}

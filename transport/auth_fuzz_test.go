package transport

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// FuzzAuthorization feeds the values of a call's authorization metadata,
// as a requester may send them, to the provider's parser. It must never
// panic; what it accepts is within the size bounds, and what it refuses is
// a malformed-credential *AuthError.
func FuzzAuthorization(f *testing.F) {
	f.Add("Bearer 0123456789abcdef", "Lease v1.abc", 2)
	f.Add("bearer x", "", 1)
	f.Add("Lease  ", "Basic dXNlcjpwYXNz", 2)
	f.Add("", "", 0)
	f.Fuzz(func(t *testing.T, a, b string, n int) {
		vals := []string{a, b, a + b}
		vals = vals[:min(max(n, 0), len(vals))]
		c, err := parseAuthorization(vals)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != ReasonMalformed || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("refusal %v is not a malformed-credential AuthError", err)
			}
			if c != (credentialsMD{}) {
				t.Fatalf("refused, yet returned %+v", c)
			}
			return
		}
		if len(c.bearer) > MaxTokenBytes || len(c.lease) > MaxLeaseBytes+16 {
			t.Fatalf("accepted credentials of %d and %d bytes", len(c.bearer), len(c.lease))
		}
		for _, v := range vals {
			if v == "" {
				t.Fatalf("accepted an empty value among %q", vals)
			}
		}
		if c.bearer != "" && strings.ContainsAny(c.bearer[:1], " \t") {
			t.Fatalf("bearer token %q starts with space", c.bearer)
		}
	})
}

// FuzzParseTokens feeds token files to ParseTokens: it must never panic,
// and every token it accepts must be found again by Lookup.
func FuzzParseTokens(f *testing.F) {
	f.Add("0123456789abcdef alice\n# c\n\nfedcba9876543210\n")
	f.Add("short\n")
	f.Add("0123456789abcdef a b\n")
	f.Fuzz(func(t *testing.T, text string) {
		ts, err := ParseTokens(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, line := range strings.Split(text, "\n") {
			fs := strings.Fields(line)
			if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
				continue
			}
			if _, ok := ts.Lookup(fs[0]); !ok {
				t.Fatalf("token %q of an accepted file not found", fs[0])
			}
		}
	})
}

// FuzzOpenClaim: OpenClaim never panics; what it accepts verifies under
// the key it names, and a claim SignClaim made opens to the same claim.
func FuzzOpenClaim(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	sc, err := SignClaim(key, &rookeryv1.ProviderClaim{Kind: rookeryv1.ProviderClaim_KIND_REGISTER, Address: "127.0.0.1:7070", UnixMs: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sc.Claim, sc.Signature)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, claim, sig []byte) {
		c, err := OpenClaim(&rookeryv1.SignedClaim{Claim: claim, Signature: sig})
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *AuthError", err)
			}
			return
		}
		if !ed25519.Verify(c.IdentityKey, append([]byte(claimContext), claim...), sig) {
			t.Fatal("accepted a claim whose signature does not verify")
		}
	})
}

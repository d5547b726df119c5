package transport

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

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

// FuzzLeaseProof feeds a call's proof of the requester key, and the lease
// token it comes with, to the provider's check, and the token to the
// client's reading of it. Neither may panic; a refusal is a key-proof
// *AuthError; a proof is accepted only with the signature the requester
// key makes for that token, time and call.
func FuzzLeaseProof(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize))
	const addr, method = "127.0.0.1:7070", "/rookery.v1.Provider/Put"
	now := time.UnixMilli(1_700_000_000_000)
	l := &Lease{ProviderAddress: addr, Requester: KeyRequester(key.Public().(ed25519.PublicKey)), RequesterKey: key.Public().(ed25519.PublicKey)}
	f.Add(SignLeaseProof(key, "v1.abc", addr, method, now), "v1.abc")
	f.Add(SignLeaseProof(key, "v1.abc", addr, method, now.Add(-time.Hour)), "v1.abc")
	f.Add("1700000000000.", "")
	f.Add("-9223372036854775808.AAAA", "v1.")
	f.Fuzz(func(t *testing.T, proof, token string) {
		_, _ = leaseBinding(token)
		err := CheckLeaseProof(proof, l, token, method, now, DefaultProofWindow)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != ReasonKeyProof || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("refusal %v is not a key-proof AuthError", err)
			}
			return
		}
		msText, sigText, _ := strings.Cut(proof, ".")
		ms, perr := strconv.ParseInt(msText, 10, 64)
		sig, serr := base64.RawURLEncoding.DecodeString(sigText)
		if perr != nil || serr != nil || now.Sub(time.UnixMilli(ms)).Abs() > DefaultProofWindow {
			t.Fatalf("accepted %q", proof)
		}
		if want := ed25519.Sign(key, proofMessage(token, addr, method, ms)); !bytes.Equal(sig, want) {
			t.Fatalf("accepted %q, whose signature is not the key's", proof)
		}
	})
}

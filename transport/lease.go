package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Leases.
//
// A lease is a token that a seed node signs with its ed25519 key for one
// requester and one provider. A provider started with the seed node's
// public key (WithLeaseKey) opens a session only for a call that carries
// a valid lease naming it; the session then belongs to the requester the
// lease names. The token is a rookery.v1 SignedLease, protobuf-encoded and
// base64url-encoded without padding, prefixed with its format version:
// "v1.<base64url>". It travels in the call's metadata as
// "authorization: Lease <token>".

// LeaseVersion is the version of the lease format this package signs and
// reads.
const LeaseVersion = 1

// leasePrefix starts every token of LeaseVersion.
const leasePrefix = "v1."

// MaxLeaseBytes bounds the length of a lease token a provider reads.
const MaxLeaseBytes = 4096

// LeaseSkew is how far apart the seed node's and a provider's clocks may
// be: a lease is accepted from LeaseSkew before its issue time until
// LeaseSkew after its expiry.
const LeaseSkew = 30 * time.Second

// Lease is what a lease token attests.
type Lease struct {
	ProviderID      string // the id the seed node gave the provider
	ProviderAddress string // the address the provider registered
	Requester       string // the identity of the requester
	// RequesterKey is the requester's public key when the lease is bound
	// to one: every call presenting the lease must prove it (see
	// Requester keys in requester.go).
	RequesterKey ed25519.PublicKey
	IssuedAt     time.Time // start of validity
	Expires      time.Time // end of validity
}

// SignLease signs l with key and returns its token.
func SignLease(key ed25519.PrivateKey, l Lease) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("transport: lease key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	claims, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rookeryv1.LeaseClaims{
		Version:         LeaseVersion,
		ProviderId:      l.ProviderID,
		ProviderAddress: l.ProviderAddress,
		Requester:       l.Requester,
		IssuedUnixMs:    l.IssuedAt.UnixMilli(),
		ExpiresUnixMs:   l.Expires.UnixMilli(),
		RequesterKey:    l.RequesterKey,
	})
	if err != nil {
		return "", err
	}
	b, err := proto.Marshal(&rookeryv1.SignedLease{Claims: claims, Signature: ed25519.Sign(key, claims)})
	if err != nil {
		return "", err
	}
	tok := leasePrefix + base64.RawURLEncoding.EncodeToString(b)
	if len(tok) > MaxLeaseBytes {
		return "", fmt.Errorf("transport: lease token of %d bytes exceeds %d", len(tok), MaxLeaseBytes)
	}
	return tok, nil
}

// ParseLease decodes a lease token and checks its signature with pub,
// but not its validity in time nor whom it names (see CheckLease). Its
// errors are *AuthError values matching ErrUnauthenticated.
func ParseLease(token string, pub ed25519.PublicKey) (*Lease, error) {
	if token == "" {
		return nil, &AuthError{Reason: ReasonMissing, Detail: "no lease"}
	}
	if len(token) > MaxLeaseBytes {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("lease token of %d bytes exceeds %d", len(token), MaxLeaseBytes)}
	}
	rest, ok := strings.CutPrefix(token, leasePrefix)
	if !ok {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: "lease token without the v1. prefix"}
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: "lease token: " + err.Error()}
	}
	var sl rookeryv1.SignedLease
	if err := proto.Unmarshal(b, &sl); err != nil {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: "lease token: " + err.Error()}
	}
	if len(sl.Signature) != ed25519.SignatureSize {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("lease signature of %d bytes", len(sl.Signature))}
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, sl.Claims, sl.Signature) {
		return nil, &AuthError{Reason: ReasonSignature, Detail: "lease not signed by this provider's seed node"}
	}
	var c rookeryv1.LeaseClaims
	if err := proto.Unmarshal(sl.Claims, &c); err != nil {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: "lease claims: " + err.Error()}
	}
	if c.Version != LeaseVersion {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("lease version %d, want %d", c.Version, LeaseVersion)}
	}
	if c.Requester == "" || c.ExpiresUnixMs < c.IssuedUnixMs {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: "lease without a requester or with its expiry before its issue"}
	}
	if n := len(c.RequesterKey); n != 0 && n != ed25519.PublicKeySize {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("lease requester key of %d bytes, want %d", n, ed25519.PublicKeySize)}
	}
	return &Lease{
		ProviderID:      c.ProviderId,
		ProviderAddress: c.ProviderAddress,
		Requester:       c.Requester,
		IssuedAt:        time.UnixMilli(c.IssuedUnixMs),
		Expires:         time.UnixMilli(c.ExpiresUnixMs),
		RequesterKey:    c.RequesterKey,
	}, nil
}

// leaseBinding reads, without checking its signature, what a client
// needs to prove its requester key for a lease token: the provider
// address it names and whether it is bound to a key. A token that does
// not decode is bound to nothing; the provider says what is wrong.
func leaseBinding(token string) (address string, bound bool) {
	rest, ok := strings.CutPrefix(token, leasePrefix)
	if !ok || len(token) > MaxLeaseBytes {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return "", false
	}
	var sl rookeryv1.SignedLease
	var c rookeryv1.LeaseClaims
	if proto.Unmarshal(b, &sl) != nil || proto.Unmarshal(sl.Claims, &c) != nil {
		return "", false
	}
	return c.ProviderAddress, len(c.RequesterKey) > 0
}

// CheckTime says whether the lease is valid at now, within LeaseSkew.
func (l *Lease) CheckTime(now time.Time) error {
	if now.Add(LeaseSkew).Before(l.IssuedAt) {
		return &AuthError{Reason: ReasonNotYetValid, Identity: l.Requester, Detail: fmt.Sprintf("lease valid from %s", l.IssuedAt.UTC().Format(time.RFC3339))}
	}
	if now.Add(-LeaseSkew).After(l.Expires) {
		return &AuthError{Reason: ReasonExpired, Identity: l.Requester, Detail: fmt.Sprintf("lease expired at %s", l.Expires.UTC().Format(time.RFC3339))}
	}
	return nil
}

// GenerateLeaseKey returns a fresh ed25519 key.
func GenerateLeaseKey() (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	return k, err
}

const leaseKeyPEM = "ROOKERY LEASE KEY"

// LoadOrCreateLeaseKey reads the seed node's lease key from file (PEM,
// type "ROOKERY LEASE KEY", holding the 32-byte ed25519 seed), or, when
// the file does not exist, generates a key and saves it there readable by
// its owner only. created says which happened.
func LoadOrCreateLeaseKey(file string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		k, err := GenerateLeaseKey()
		if err != nil {
			return nil, false, err
		}
		out := pem.EncodeToMemory(&pem.Block{Type: leaseKeyPEM, Bytes: k.Seed()})
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("transport: lease key: %w", err)
		}
		if _, err := f.Write(out); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("transport: lease key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, false, fmt.Errorf("transport: lease key: %w", err)
		}
		return k, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("transport: lease key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != leaseKeyPEM || len(blk.Bytes) != ed25519.SeedSize {
		return nil, false, fmt.Errorf("transport: lease key %s: want a PEM block %q of %d bytes", file, leaseKeyPEM, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(blk.Bytes), false, nil
}

// EncodeLeasePublicKey writes a lease public key as the text a provider's
// --seed-pubkey reads: standard base64 of the 32 raw bytes.
func EncodeLeasePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParseLeasePublicKey reads a lease public key written by
// EncodeLeasePublicKey (surrounding space is ignored).
func ParseLeasePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("transport: lease public key: want the base64 of %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

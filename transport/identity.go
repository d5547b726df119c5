package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// A provider's identity is an ed25519 key: it signs the provider's
// registrations, heartbeats and deregistration with a seed node
// (SignClaim, Announce), and answers the seed node's challenge in
// Describe, so that the seed node lists an address only when the key
// that registered it answers there.

// The prefixes that separate what an identity key signs.
const (
	claimContext     = "rookery.v1.ProviderClaim\x00"
	challengeContext = "rookery.v1.Describe\x00"
)

// MaxChallengeBytes is the longest Describe challenge a provider signs.
const MaxChallengeBytes = 64

// MaxClaimBytes is the longest signed claim a seed node reads.
const MaxClaimBytes = 64 << 10

// WithIdentity sets the provider's identity key (default: a fresh key
// per server, which a seed node then knows only until the process ends;
// `rookery provider` keeps its key in a file, LoadIdentity).
func WithIdentity(key ed25519.PrivateKey) ServerOption {
	return func(c *serverConfig) { c.identity = key }
}

// IdentityKey returns the server's public identity key.
func (s *Server) IdentityKey() ed25519.PublicKey { return s.identity.Public().(ed25519.PublicKey) }

// newIdentity returns key, or a fresh key when key is nil.
func newIdentity(key ed25519.PrivateKey) ed25519.PrivateKey {
	if len(key) == ed25519.PrivateKeySize {
		return key
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("transport: no randomness for an identity key: " + err.Error())
	}
	return k
}

// describe answers a Describe: the capabilities, and with a challenge,
// the identity key's signature of it.
func (s *Server) describe(req *rookeryv1.DescribeRequest) (*rookeryv1.Capabilities, error) {
	if len(req.GetChallenge()) == 0 {
		return s.caps, nil
	}
	if len(req.Challenge) > MaxChallengeBytes {
		return nil, &LimitError{What: "challenge bytes", Limit: MaxChallengeBytes, Got: int64(len(req.Challenge))}
	}
	caps := proto.Clone(s.caps).(*rookeryv1.Capabilities)
	caps.ChallengeSignature = ed25519.Sign(s.identity, append([]byte(challengeContext), req.Challenge...))
	return caps, nil
}

// VerifyChallenge reports whether caps answers challenge with a
// signature by caps' identity key, and returns that key.
func VerifyChallenge(caps *rookeryv1.Capabilities, challenge []byte) (ed25519.PublicKey, bool) {
	pub := ed25519.PublicKey(caps.GetIdentityKey())
	if len(pub) != ed25519.PublicKeySize || len(challenge) == 0 {
		return nil, false
	}
	return pub, ed25519.Verify(pub, append([]byte(challengeContext), challenge...), caps.GetChallengeSignature())
}

// SignClaim sets c's identity key to key's public part, fills its nonce,
// and returns c marshalled and signed by key.
func SignClaim(key ed25519.PrivateKey, c *rookeryv1.ProviderClaim) (*rookeryv1.SignedClaim, error) {
	c.IdentityKey = key.Public().(ed25519.PublicKey)
	if len(c.Nonce) == 0 {
		c.Nonce = make([]byte, 16)
		_, _ = rand.Read(c.Nonce)
	}
	b, err := proto.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("transport: claim: %w", err)
	}
	return &rookeryv1.SignedClaim{Claim: b, Signature: ed25519.Sign(key, append([]byte(claimContext), b...))}, nil
}

// OpenClaim decodes a signed claim and checks its signature by the key
// it names. Every failure is an *AuthError: ReasonMissing for no claim,
// ReasonMalformed for bytes that do not decode or a key of the wrong
// size, ReasonSignature for a signature that does not verify.
func OpenClaim(sc *rookeryv1.SignedClaim) (*rookeryv1.ProviderClaim, error) {
	if sc == nil || len(sc.Claim) == 0 {
		return nil, &AuthError{Reason: ReasonMissing, Detail: "unsigned: sign with the provider's identity key"}
	}
	if len(sc.Claim) > MaxClaimBytes {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("claim of %d bytes exceeds %d", len(sc.Claim), MaxClaimBytes)}
	}
	var c rookeryv1.ProviderClaim
	if err := proto.Unmarshal(sc.Claim, &c); err != nil {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: "claim: " + err.Error()}
	}
	if len(c.IdentityKey) != ed25519.PublicKeySize {
		return nil, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("identity key of %d bytes, want %d", len(c.IdentityKey), ed25519.PublicKeySize)}
	}
	if len(sc.Signature) != ed25519.SignatureSize || !ed25519.Verify(c.IdentityKey, append([]byte(claimContext), sc.Claim...), sc.Signature) {
		return nil, &AuthError{Reason: ReasonSignature, Detail: "claim not signed by identity key " + EncodeIdentityKey(c.IdentityKey)}
	}
	return &c, nil
}

// EncodeIdentityKey writes a public identity key as text (base64), as
// logs and the seed node's HTTP view show it.
func EncodeIdentityKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// ErrIdentityFile marks an identity key file that cannot be read as one.
var ErrIdentityFile = errors.New("transport: identity key file")

// LoadIdentity reads the identity key kept in file (the base64 of its
// 32-byte seed), or, when file does not exist, creates a fresh key and
// writes it there, readable by its owner only. created says which.
func LoadIdentity(file string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(file)
	if err == nil {
		seed, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(seed) != ed25519.SeedSize {
			return nil, false, fmt.Errorf("%w %s: want the base64 of a %d-byte ed25519 seed", ErrIdentityFile, file, ed25519.SeedSize)
		}
		return ed25519.NewKeyFromSeed(seed), false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("%w: %v", ErrIdentityFile, err)
	}
	key = newIdentity(nil)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrIdentityFile, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrIdentityFile, err)
	}
	_, werr := fmt.Fprintln(f, base64.StdEncoding.EncodeToString(key.Seed()))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrIdentityFile, werr)
	}
	return key, true, nil
}

package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Requester keys.
//
// A requester has an ed25519 key: the one given with WithRequesterKey, or
// else a key generated on first use and kept for the life of the process
// (DefaultRequesterKey). seednode.Find sends its public part, and a seed
// node that signs leases binds each lease to it (Lease.RequesterKey),
// naming a requester it did not authenticate "key:" and the key's
// standard base64. On every call that presents a key-bound lease, the
// client proves that it holds the key: the metadata entry
// "rookery-lease-proof: <unix ms>.<base64url signature>", the key's
// signature of the lease token's SHA-256, the lease's provider address,
// the time in milliseconds and the call's full method name. The provider
// checks it against the key the lease names and the time against its
// clock (WithClock), within WithProofWindow (DefaultProofWindow). So a
// lease seen by someone else is of no use to them, and a session opened
// with a key-bound lease answers only calls signed by the same key. Only
// these few bytes are signed, never the tensors a call carries.

// LeaseProofHeader is the metadata key of a call's proof of the
// requester key.
const LeaseProofHeader = "rookery-lease-proof"

// DefaultProofWindow is how far a proof's time may be from the
// provider's clock, either way, unless WithProofWindow says otherwise.
const DefaultProofWindow = 2 * time.Minute

// MaxProofBytes bounds the length of a proof a provider reads.
const MaxProofBytes = 128

// keyRequester starts the requester a seed node names by its key.
const keyRequester = "key:"

// proofContext separates what a requester key signs from anything else.
const proofContext = "rookery.v1.LeaseProof\x00"

// KeyRequester returns the requester a lease names for an
// unauthenticated requester with public key pub.
func KeyRequester(pub ed25519.PublicKey) string {
	return keyRequester + base64.StdEncoding.EncodeToString(pub)
}

// WithRequesterKey sets the requester key that binds the leases a seed
// node signs for this requester and proves, on every call to a provider,
// that the caller is the requester the lease names (default:
// DefaultRequesterKey).
func WithRequesterKey(key ed25519.PrivateKey) DialOption {
	return func(d *dialConfig) { d.requesterKey = key }
}

// DefaultRequesterKey returns this process's requester key, generated on
// first use.
var DefaultRequesterKey = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic("transport: no randomness for a requester key: " + err.Error())
	}
	return k
})

// RequesterKey returns the requester key that opts set, or
// DefaultRequesterKey.
func RequesterKey(opts ...DialOption) ed25519.PrivateKey {
	var c dialConfig
	for _, o := range opts {
		o(&c)
	}
	if len(c.requesterKey) == ed25519.PrivateKeySize {
		return c.requesterKey
	}
	return DefaultRequesterKey()
}

// WithProofWindow sets how far a requester's proof time may be from the
// server's clock, either way (default DefaultProofWindow).
func WithProofWindow(d time.Duration) ServerOption {
	return func(c *serverConfig) { c.proofWindow = d }
}

// proofMessage is what a requester key signs for one call.
func proofMessage(lease, address, method string, ms int64) []byte {
	h := sha256.Sum256([]byte(lease))
	b := make([]byte, 0, len(proofContext)+len(h)+4+len(address)+8+len(method))
	b = append(b, proofContext...)
	b = append(b, h[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(address)))
	b = append(b, address...)
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	return append(b, method...)
}

// SignLeaseProof returns the value of LeaseProofHeader that proves key
// for a call of method, at time at, presenting lease for the provider at
// address (the lease's ProviderAddress).
func SignLeaseProof(key ed25519.PrivateKey, lease, address, method string, at time.Time) string {
	ms := at.UnixMilli()
	sig := ed25519.Sign(key, proofMessage(lease, address, method, ms))
	return strconv.FormatInt(ms, 10) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// CheckLeaseProof checks proof, the value of LeaseProofHeader on a call
// of method that presents token, whose lease is l: signed by l's
// requester key over l's provider address, with a time within window of
// now. Every failure is an *AuthError with ReasonKeyProof, matching
// ErrUnauthenticated. A lease bound to no key needs no proof.
func CheckLeaseProof(proof string, l *Lease, token, method string, now time.Time, window time.Duration) error {
	if len(l.RequesterKey) == 0 {
		return nil
	}
	refuse := func(detail string) error {
		return &AuthError{Reason: ReasonKeyProof, Identity: l.Requester, Detail: detail}
	}
	if len(l.RequesterKey) != ed25519.PublicKeySize {
		return refuse(fmt.Sprintf("lease names a requester key of %d bytes", len(l.RequesterKey)))
	}
	if proof == "" {
		return refuse("the lease is bound to a requester key and the call carries no " + LeaseProofHeader)
	}
	if len(proof) > MaxProofBytes {
		return refuse(fmt.Sprintf("proof of %d bytes exceeds %d", len(proof), MaxProofBytes))
	}
	msText, sigText, ok := strings.Cut(proof, ".")
	if !ok {
		return refuse("proof without its time and signature")
	}
	ms, err := strconv.ParseInt(msText, 10, 64)
	if err != nil {
		return refuse("proof time: " + err.Error())
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return refuse("proof signature: want the base64url of 64 bytes")
	}
	at := time.UnixMilli(ms)
	if d := now.Sub(at); d > window || d < -window {
		return refuse(fmt.Sprintf("proof made at %s, %v from this provider's clock, beyond %v", at.UTC().Format(time.RFC3339), d.Round(time.Second), window))
	}
	if !ed25519.Verify(l.RequesterKey, proofMessage(token, l.ProviderAddress, method, ms), sig) {
		return refuse("proof not signed by the requester key the lease names")
	}
	return nil
}

// owner returns the identity a session opened with l belongs to: the
// requester, and the requester key when the lease names one.
func (l *Lease) owner() string {
	id := "lease:" + l.Requester
	if len(l.RequesterKey) > 0 && !strings.HasPrefix(l.Requester, keyRequester) {
		id += "+" + KeyRequester(l.RequesterKey)
	}
	return id
}

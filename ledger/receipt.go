// Package ledger is Rookery's record of work done: receipts of sessions
// co-signed by requester and provider, faults signed by requesters, and
// the hash-chained, append-only log a seed node keeps them in.
package ledger

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// The prefixes that separate what an identity key signs here from what
// it signs elsewhere.
const (
	receiptContext = "rookery.v1.Receipt\x00"
	faultContext   = "rookery.v1.Fault\x00"
)

// MaxRecordBytes is the longest receipt or fault encoding read.
const MaxRecordBytes = 16 << 10

var (
	// ErrMalformed marks bytes that do not decode to a record.
	ErrMalformed = errors.New("ledger: malformed record")
	// ErrSignature marks a signature that does not check, or a key of
	// the wrong size.
	ErrSignature = errors.New("ledger: bad signature")
)

// RecordError says what is wrong with a receipt or a fault.
type RecordError struct {
	What   string // "receipt" or "fault"
	Reason string
	Err    error // ErrMalformed or ErrSignature
}

func (e *RecordError) Error() string { return "ledger: " + e.What + ": " + e.Reason }
func (e *RecordError) Unwrap() error { return e.Err }

func bad(what string, err error, format string, args ...any) error {
	return &RecordError{What: what, Reason: fmt.Sprintf(format, args...), Err: err}
}

// SignReceipt encodes r and signs it with the provider's key, which must
// be r's provider key: the provider's half of a signed receipt.
func SignReceipt(provider ed25519.PrivateKey, r *rookeryv1.Receipt) (*rookeryv1.SignedReceipt, error) {
	if len(provider) != ed25519.PrivateKeySize || !provider.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(r.GetProviderKey())) {
		return nil, bad("receipt", ErrSignature, "the signing key is not the receipt's provider key")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, bad("receipt", ErrMalformed, "%v", err)
	}
	return &rookeryv1.SignedReceipt{Receipt: b, ProviderSignature: ed25519.Sign(provider, append([]byte(receiptContext), b...))}, nil
}

// Countersign adds the requester's signature to a receipt the provider
// signed, after checking the provider's signature and that the receipt
// names the requester's key.
func Countersign(requester ed25519.PrivateKey, sr *rookeryv1.SignedReceipt) error {
	r, err := openReceipt(sr, false)
	if err != nil {
		return err
	}
	if len(requester) != ed25519.PrivateKeySize || !requester.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(r.GetRequesterKey())) {
		return bad("receipt", ErrSignature, "the signing key is not the receipt's requester key")
	}
	sr.RequesterSignature = ed25519.Sign(requester, append([]byte(receiptContext), sr.GetReceipt()...))
	return nil
}

// OpenReceipt checks both signatures of sr and returns its receipt.
func OpenReceipt(sr *rookeryv1.SignedReceipt) (*rookeryv1.Receipt, error) {
	return openReceipt(sr, true)
}

// OpenProviderReceipt checks the provider's signature of sr only (a
// receipt not yet countersigned) and returns its receipt.
func OpenProviderReceipt(sr *rookeryv1.SignedReceipt) (*rookeryv1.Receipt, error) {
	return openReceipt(sr, false)
}

func openReceipt(sr *rookeryv1.SignedReceipt, both bool) (*rookeryv1.Receipt, error) {
	b := sr.GetReceipt()
	if len(b) == 0 || len(b) > MaxRecordBytes {
		return nil, bad("receipt", ErrMalformed, "%d bytes", len(b))
	}
	r := &rookeryv1.Receipt{}
	if err := proto.Unmarshal(b, r); err != nil {
		return nil, bad("receipt", ErrMalformed, "%v", err)
	}
	if err := checkReceipt(r); err != nil {
		return nil, err
	}
	msg := append([]byte(receiptContext), b...)
	if !ed25519.Verify(r.GetProviderKey(), msg, sr.GetProviderSignature()) {
		return nil, bad("receipt", ErrSignature, "the provider's signature does not check")
	}
	if both && !ed25519.Verify(r.GetRequesterKey(), msg, sr.GetRequesterSignature()) {
		return nil, bad("receipt", ErrSignature, "the requester's signature does not check")
	}
	return r, nil
}

// checkReceipt checks a decoded receipt's fields.
func checkReceipt(r *rookeryv1.Receipt) error {
	switch {
	case len(r.GetProviderKey()) != ed25519.PublicKeySize:
		return bad("receipt", ErrSignature, "provider key of %d bytes", len(r.GetProviderKey()))
	case len(r.GetRequesterKey()) != ed25519.PublicKeySize:
		return bad("receipt", ErrSignature, "requester key of %d bytes", len(r.GetRequesterKey()))
	case r.GetWork() == nil:
		return bad("receipt", ErrMalformed, "no work")
	}
	w := r.GetWork()
	if w.GetFlops() < 0 || w.GetBytesIn() < 0 || w.GetBytesOut() < 0 || w.GetSteps() < 0 || w.GetMicroBatches() < 0 {
		return bad("receipt", ErrMalformed, "negative work figures")
	}
	if r.GetEndUnixMs() < r.GetStartUnixMs() {
		return bad("receipt", ErrMalformed, "span ends at %d before it starts at %d", r.GetEndUnixMs(), r.GetStartUnixMs())
	}
	return nil
}

// SignFault encodes f and signs it with the requester's key, which must
// be f's requester key.
func SignFault(requester ed25519.PrivateKey, f *rookeryv1.Fault) (*rookeryv1.SignedFault, error) {
	if len(requester) != ed25519.PrivateKeySize || !requester.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(f.GetRequesterKey())) {
		return nil, bad("fault", ErrSignature, "the signing key is not the fault's requester key")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(f)
	if err != nil {
		return nil, bad("fault", ErrMalformed, "%v", err)
	}
	return &rookeryv1.SignedFault{Fault: b, RequesterSignature: ed25519.Sign(requester, append([]byte(faultContext), b...))}, nil
}

// OpenFault checks sf's signature and returns its fault.
func OpenFault(sf *rookeryv1.SignedFault) (*rookeryv1.Fault, error) {
	b := sf.GetFault()
	if len(b) == 0 || len(b) > MaxRecordBytes {
		return nil, bad("fault", ErrMalformed, "%d bytes", len(b))
	}
	f := &rookeryv1.Fault{}
	if err := proto.Unmarshal(b, f); err != nil {
		return nil, bad("fault", ErrMalformed, "%v", err)
	}
	switch {
	case len(f.GetProviderKey()) != ed25519.PublicKeySize:
		return nil, bad("fault", ErrSignature, "provider key of %d bytes", len(f.GetProviderKey()))
	case len(f.GetRequesterKey()) != ed25519.PublicKeySize:
		return nil, bad("fault", ErrSignature, "requester key of %d bytes", len(f.GetRequesterKey()))
	case !ed25519.Verify(f.GetRequesterKey(), append([]byte(faultContext), b...), sf.GetRequesterSignature()):
		return nil, bad("fault", ErrSignature, "the requester's signature does not check")
	}
	return f, nil
}

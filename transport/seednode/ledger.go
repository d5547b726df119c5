package seednode

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// WithLedger makes the seed node keep its ledger in store: Submit
// appends receipts and faults to it, GET /v1/ledger and GET /v1/standing
// serve it, and Find ranks providers by it (Score, WithFaultCooldown).
// The caller opens the store (ledger.Open, which refuses a corrupt one)
// and closes it after the registry has stopped. Without a ledger, Submit
// fails (FailedPrecondition), the two paths answer 404, and every
// provider's standing is that of a newcomer.
func WithLedger(store *ledger.Store) Option { return func(c *config) { c.ledger = store } }

// DefaultFaultCooldown is how long a provider stays out of Find's answers
// after a fault, when WithFaultCooldown is not given.
const DefaultFaultCooldown = time.Hour

// WithFaultCooldown sets how long after its last fault in the ledger a
// provider is left out of Find's answers (default DefaultFaultCooldown),
// timed by the registry's clock. It still heartbeats, and GET
// /v1/providers lists it with excluded_until. d <= 0 leaves no one out.
func WithFaultCooldown(d time.Duration) Option { return func(c *config) { c.faultCooldown = d } }

// The defaults of WithSubmitLimit.
const (
	DefaultSubmitBurst = 64
	DefaultSubmitEvery = time.Second
)

// WithSubmitLimit limits how fast one source calls Submit: burst calls
// at once, then one more each every (default DefaultSubmitBurst and
// DefaultSubmitEvery); sources are told apart as for registrations
// (WithRegistrationLimit). A call past the limit gets a
// *transport.LimitError (ResourceExhausted). burst <= 0 lifts the limit.
func WithSubmitLimit(burst int, every time.Duration) Option {
	return func(c *config) { c.subBurst, c.subEvery = burst, every }
}

// MaxSubmitRecords is the most receipts and faults one Submit call may
// carry; the client function Submit splits longer lists into calls of
// this size.
const MaxSubmitRecords = 256

// ErrNoLedger marks a seed node that keeps no ledger (no WithLedger).
var ErrNoLedger = errors.New("seednode: this seed node keeps no ledger")

// SubmitError is a record that Submit refused. The records of the same
// call before it were appended and stay in the ledger (Kept says how
// many); none after it was looked at. A record that does not decode or
// whose signatures do not check matches transport.ErrInvalidArgument
// (InvalidArgument); a failure of the store itself does not (Internal).
type SubmitError struct {
	What  string // "receipt" or "fault"
	Index int    // its index among the call's receipts, or among its faults
	Kept  int    // the call's records appended before it
	Err   error  // the store's error: a *ledger.RecordError for a bad record
}

func (e *SubmitError) Error() string {
	return fmt.Sprintf("seednode: %s %d of the submission refused, %d records before it kept: %v", e.What, e.Index, e.Kept, e.Err)
}

// Unwrap returns the store's error, and transport.ErrInvalidArgument for
// a bad record.
func (e *SubmitError) Unwrap() []error {
	if errors.Is(e.Err, ledger.ErrMalformed) || errors.Is(e.Err, ledger.ErrSignature) {
		return []error{transport.ErrInvalidArgument, e.Err}
	}
	return []error{e.Err}
}

// Submit implements the Seed service: it appends the request's
// receipts, then its faults, to the ledger, in order, and answers their
// positions and the ledger's new head. The store checks every signature
// (a receipt must be signed by both its provider and its requester, a
// fault by its requester), so Submit needs no lease: the requester's
// signature shows who vouches for each record. The first bad record
// ends the call with a *SubmitError (InvalidArgument) naming it and why;
// the records before it are kept. A call is authenticated like every
// other (WithTokens) and rate-limited per source (WithSubmitLimit); more
// than MaxSubmitRecords records get a *transport.LimitError
// (InvalidArgument).
func (s *Registry) Submit(ctx context.Context, req *rookeryv1.SubmitRequest) (*rookeryv1.SubmitResponse, error) {
	store := s.cfg.ledger
	if store == nil {
		return nil, status.Error(codes.FailedPrecondition, ErrNoLedger.Error())
	}
	n := len(req.Receipts) + len(req.Faults)
	if n > MaxSubmitRecords {
		return nil, transport.ToStatus(&transport.LimitError{What: "records in one submission", Limit: MaxSubmitRecords, Got: int64(n)})
	}
	src := source(ctx, identityFrom(ctx))
	s.mu.Lock()
	err := take(s.subBuckets, "submissions", src, s.cfg.subBurst, s.cfg.subEvery, s.cfg.clock.Now())
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("submission refused", "source", src, "err", err)
		return nil, transport.ToStatus(err)
	}
	seqs := make([]uint64, 0, n)
	refuse := func(what string, i int, err error) error {
		serr := &SubmitError{What: what, Index: i, Kept: len(seqs), Err: err}
		s.log.Warn("submission refused", "source", src, "err", serr)
		return transport.ToStatus(serr)
	}
	for i, sr := range req.Receipts {
		e, err := store.AppendReceipt(sr)
		if err != nil {
			return nil, refuse("receipt", i, err)
		}
		seqs = append(seqs, e.Seq)
	}
	for i, sf := range req.Faults {
		e, err := store.AppendFault(sf)
		if err != nil {
			return nil, refuse("fault", i, err)
		}
		seqs = append(seqs, e.Seq)
		s.log.Info("fault recorded", "seq", e.Seq, "provider", transport.EncodeIdentityKey(e.Fault.GetProviderKey()), "kind", e.Fault.GetKind())
	}
	_, head := store.Head()
	if n > 0 {
		s.log.Info("records submitted", "source", src, "receipts", len(req.Receipts), "faults", len(req.Faults), "head_seq", seqs[len(seqs)-1])
	}
	return &rookeryv1.SubmitResponse{Seqs: seqs, Head: head[:]}, nil
}

// FaultPenalty is how much one fault takes from a provider's Score: as
// much as a thousandfold more verified work adds.
const FaultPenalty = 3.0

// Score is a provider's standing from its ledger totals: log10(1 + the
// GFLOP of its receipts) minus FaultPenalty for each fault recorded
// against it. A newcomer scores 0; work counts by its order of
// magnitude, so that a fault weighs less as verified work grows.
func Score(w ledger.Work) float64 {
	return math.Log10(1+float64(max(w.FLOPs, 0))/1e9) - FaultPenalty*float64(w.Faults)
}

// tier is the standing Find sorts by before speed: 0 for a provider in
// good standing (a score of 0 or more), and below 0, by whole points,
// for one whose faults outweigh its work.
func tier(score float64) int { return int(min(0, math.Floor(score))) }

// standings are the ledger's totals at one moment, with every provider's
// score, for ranking.
type standings struct {
	totals ledger.Totals
	scores []float64 // every provider's score, highest first
}

// standings returns the ledger's standings now; without a ledger, empty
// ones.
func (s *Registry) standings() *standings {
	st := &standings{}
	if s.cfg.ledger != nil {
		st.totals = s.cfg.ledger.Totals()
	}
	for _, w := range st.totals.Providers {
		st.scores = append(st.scores, Score(w))
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(st.scores)))
	return st
}

// provider returns the totals and score of the provider key (as
// transport.EncodeIdentityKey writes it).
func (st *standings) provider(key string) (ledger.Work, float64) {
	w := st.totals.Providers[key]
	return w, Score(w)
}

// rank is 1 + the number of providers in the ledger that score higher
// than score: providers that score the same share a rank.
func (st *standings) rank(score float64) int {
	return 1 + sort.Search(len(st.scores), func(i int) bool { return st.scores[i] <= score })
}

// excludedUntil returns when a provider with totals w comes back into
// Find's answers, or the zero time when it is not left out at now.
func (s *Registry) excludedUntil(w ledger.Work, now time.Time) time.Time {
	if s.cfg.faultCooldown <= 0 || w.Faults == 0 || w.LastFault.IsZero() {
		return time.Time{}
	}
	until := w.LastFault.Add(s.cfg.faultCooldown)
	if !now.Before(until) {
		return time.Time{}
	}
	return until
}

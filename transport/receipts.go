package transport

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Receipts.
//
// Both sides of a session meter its work with the same rules (the cost
// model of package graph): a Forward of a micro-batch counts the part
// graph's forward cost (graph.TotalCost().FLOPs), a Backward twice that,
// a local step three times that; bytes in and out are the tensor bytes
// the provider received (feeds, gradients of outputs, tensors Put) and
// sent (outputs, gradients, tensors read by Get), not the framing around
// them; steps count Step calls and local steps; micro-batches count
// Forward calls. A call counts once it has succeeded.
//
// The Provider.Receipt call asks the provider for a receipt of the work
// since the session's last one (or its opening): the provider signs it
// with its identity key (WithIdentity), naming itself and the session's
// requester key, its figures, the span on its clock and the receipt's
// index among the session's receipts. The client (WithReceipts) opens
// it, checks that it names the client's own requester key and the
// provider's identity key it saw at Connect, and that it claims no more
// than the client metered itself (FLOPs, steps and micro-batches at
// most the client's, bytes within 1% of them); it then countersigns it
// with its requester key and hands it to the sink. A receipt that
// claims more is not countersigned: the client signs a fault of kind
// "overclaimed" instead (WithFaults). The client asks for a receipt
// when a session closes, and on its first call after every
// WithReceiptInterval.
//
// A session's requester key is the key of the lease it was opened with
// when the lease is bound to one (see Requester keys in requester.go).
// Otherwise it is the key the client names in the Open call's metadata
// (RequesterKeyHeader), taken at its word: a receipt naming a key counts
// for nothing until that key countersigns it, so naming another's key
// gains nothing. A session with neither has no requester key, and
// Receipt refuses it with ErrNoRequesterKey.

// RequesterKeyHeader is the metadata key under which a client names its
// requester public key (standard base64) in an Open call.
const RequesterKeyHeader = "rookery-requester-key"

// DefaultReceiptInterval is how often a long session asks for a receipt
// unless WithReceiptInterval says otherwise.
const DefaultReceiptInterval = 5 * time.Minute

// MaxJobBytes bounds the job name of a receipt.
const MaxJobBytes = 256

// ErrNoRequesterKey marks a Receipt call on a session that has no
// requester key: neither its lease nor its Open call named one.
var ErrNoRequesterKey = errors.New("transport: the session has no requester key")

// work is what a session did, in the figures of a rookery.v1 Work.
type work struct {
	flops, bytesIn, bytesOut, steps, microBatches int64
}

func (w work) wire() *rookeryv1.Work {
	return &rookeryv1.Work{Flops: w.flops, BytesIn: w.bytesIn, BytesOut: w.bytesOut, Steps: w.steps, MicroBatches: w.microBatches}
}

func workOf(w *rookeryv1.Work) work {
	return work{flops: w.GetFlops(), bytesIn: w.GetBytesIn(), bytesOut: w.GetBytesOut(), steps: w.GetSteps(), microBatches: w.GetMicroBatches()}
}

func (w work) add(o work) work {
	return work{flops: addSat(w.flops, o.flops), bytesIn: addSat(w.bytesIn, o.bytesIn), bytesOut: addSat(w.bytesOut, o.bytesOut),
		steps: addSat(w.steps, o.steps), microBatches: addSat(w.microBatches, o.microBatches)}
}

// exceeds says, in words, how claimed exceeds metered, or "" when it
// does not: FLOPs, steps and micro-batches must be at most metered's,
// bytes at most 1% more.
func (claimed work) exceeds(metered work) string {
	var why string
	over := func(what string, c, m int64, slack bool) {
		limit := m
		if slack {
			limit = addSat(m, m/100)
		}
		if c > limit {
			if why != "" {
				why += "; "
			}
			why += fmt.Sprintf("%s: claimed %d, metered %d", what, c, m)
		}
	}
	over("flops", claimed.flops, metered.flops, false)
	over("steps", claimed.steps, metered.steps, false)
	over("micro_batches", claimed.microBatches, metered.microBatches, false)
	over("bytes_in", claimed.bytesIn, metered.bytesIn, true)
	over("bytes_out", claimed.bytesOut, metered.bytesOut, true)
	return why
}

// meter is a provider session's record of its work since its last
// receipt, guarded by Server.mu.
type meter struct {
	forward   int64             // FLOPs of one forward evaluation of the part
	requester ed25519.PublicKey // the session's requester key, or nil
	since     time.Time         // the session's opening or its last receipt
	receipts  uint32            // receipts signed so far
	work      work
}

// count adds to the work of ss.
func (s *Server) count(ss *serverSession, f func(*work)) {
	s.mu.Lock()
	f(&ss.meter.work)
	s.mu.Unlock()
}

// requesterKeyCtx is the context key of the requester key of a
// key-bound lease.
type requesterKeyCtx struct{}

func withRequesterKey(ctx context.Context, key ed25519.PublicKey) context.Context {
	return context.WithValue(ctx, requesterKeyCtx{}, key)
}

// requesterKeyOf returns the requester key of a call: its lease's, or
// else the one its metadata names (RequesterKeyHeader), or nil.
func requesterKeyOf(ctx context.Context) ed25519.PublicKey {
	if k, _ := ctx.Value(requesterKeyCtx{}).(ed25519.PublicKey); len(k) == ed25519.PublicKeySize {
		return k
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(RequesterKeyHeader)
	if len(vals) != 1 || len(vals[0]) > 64 {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(vals[0])
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil
	}
	return ed25519.PublicKey(b)
}

// Receipt implements the Provider service: it signs a receipt of the
// session's work since its last receipt and starts the next span.
func (s *Server) Receipt(ctx context.Context, req *rookeryv1.ReceiptRequest) (_ *rookeryv1.ReceiptResponse, err error) {
	defer s.metrics.observe("receipt", time.Now(), &err)
	if len(req.Job) > MaxJobBytes {
		return nil, toStatus(&LimitError{What: "job bytes", Limit: MaxJobBytes, Got: int64(len(req.Job))})
	}
	ss, err := s.acquire(ctx, req.Session)
	if err != nil {
		return nil, toStatus(err)
	}
	defer s.release(ss)
	if s.receiptHook != nil {
		if err := s.receiptHook(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	now := s.cfg.clock.Now()
	s.mu.Lock()
	m := &ss.meter
	if len(m.requester) == 0 {
		s.mu.Unlock()
		return nil, toStatus(fmt.Errorf("%w: open it with a key-bound lease, or name the key in %s", ErrNoRequesterKey, RequesterKeyHeader))
	}
	w, start, index := m.work, m.since, m.receipts
	if s.overclaim != nil {
		s.overclaim(&w)
	}
	m.work, m.since = work{}, now
	m.receipts++
	s.mu.Unlock()
	r := &rookeryv1.Receipt{
		Job: req.Job, Session: ss.id, Part: int32(ss.part),
		ProviderKey: s.IdentityKey(), RequesterKey: m.requester,
		Work:        w.wire(),
		StartUnixMs: start.UnixMilli(), EndUnixMs: max(now.UnixMilli(), start.UnixMilli()),
		Index: index, Final: req.Final,
	}
	sr, err := ledger.SignReceipt(s.identity, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &rookeryv1.ReceiptResponse{Receipt: sr}, nil
}

// DefaultReceiptTimeout bounds a Receipt call unless WithReceiptTimeout
// says otherwise: one that fails or times out at Close leaves the
// session to close all the same.
const DefaultReceiptTimeout = 5 * time.Second

var (
	// ErrBadReceipt marks a receipt that does not name this session, the
	// client's requester key or the provider's identity key.
	ErrBadReceipt = errors.New("transport: bad receipt")
	// ErrOverclaimed marks a receipt that claims more work than the
	// client metered; the client signs a fault instead of countersigning.
	ErrOverclaimed = errors.New("transport: the receipt claims more work than was metered")
)

// FaultOverclaimed is the kind of fault a client signs for a receipt
// that claims more work than it metered.
const FaultOverclaimed = "overclaimed"

// WithReceipts makes the sessions the client opens take receipts of
// their work (at Close, and every WithReceiptInterval) and hands each,
// countersigned with the requester key (WithRequesterKey), to sink.
// Without it or WithFaults, no receipt is asked for.
func WithReceipts(sink func(*rookeryv1.SignedReceipt)) DialOption {
	return func(d *dialConfig) { d.sinks.Receipts = sink }
}

// WithFaults hands sink the fault a session signs, with the requester
// key, for a receipt that claims more work than the session metered
// (kind FaultOverclaimed). It also makes the sessions take receipts.
func WithFaults(sink func(*rookeryv1.SignedFault)) DialOption {
	return func(d *dialConfig) { d.sinks.Faults = sink }
}

// WithReceiptErrors calls f with the error of every receipt that could
// not be had (a Receipt call that failed, a receipt that does not check);
// the work it would have covered goes into the next receipt.
func WithReceiptErrors(f func(error)) DialOption {
	return func(d *dialConfig) { d.sinks.Errors = f }
}

// WithJob names the training run in the receipts the sessions take.
func WithJob(job string) DialOption { return func(d *dialConfig) { d.sinks.Job = job } }

// Sinks says where a client's sessions hand what their receipts give
// (WithReceipts, WithFaults, WithReceiptErrors) and the job they name
// (WithJob).
type Sinks struct {
	Receipts func(*rookeryv1.SignedReceipt)
	Faults   func(*rookeryv1.SignedFault)
	Errors   func(error)
	Job      string
}

func (k *Sinks) wanted() bool { return k.Receipts != nil || k.Faults != nil }

// SetSinks makes the sessions that c opens from now on take receipts
// and hand them to k, as if c had been dialled with WithReceipts,
// WithFaults, WithReceiptErrors and WithJob; sessions already open keep
// theirs.
func (c *Client) SetSinks(k Sinks) { c.sinks.Store(&k) }

// WithReceiptInterval sets how often a long session takes a receipt
// (default DefaultReceiptInterval): on its first Step or LocalSteps call
// once d has passed since its last receipt. d <= 0: at Close only.
func WithReceiptInterval(d time.Duration) DialOption {
	return func(c *dialConfig) { c.receiptInterval = d }
}

// WithReceiptTimeout bounds one Receipt call (default
// DefaultReceiptTimeout).
func WithReceiptTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.receiptTimeout = d }
}

// WithDialClock sets the clock that receipt intervals and faults' times
// are read from (default SystemClock).
func WithDialClock(c Clock) DialOption { return func(d *dialConfig) { d.clock = c } }

// requesterMeter is a remote session's record of its work, guarded by
// remoteSession.mu.
type requesterMeter struct {
	forward   int64 // FLOPs of one forward evaluation of the part
	key       ed25519.PrivateKey
	sinks     *Sinks
	metered   work      // everything since Open
	uncertain work      // what failed calls may have done on the provider
	receipted work      // the sum of the receipts countersigned
	last      time.Time // when the last receipt was asked for
}

// startMeter starts metering the session when the client takes
// receipts.
func (s *remoteSession) startMeter(forward int64, key ed25519.PrivateKey, sinks *Sinks) {
	if !sinks.wanted() {
		return
	}
	s.rm = &requesterMeter{forward: forward, key: key, sinks: sinks, last: s.c.cfg.clock.Now()}
}

// count adds to the session's metered work.
func (s *remoteSession) count(f func(*work)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rm != nil {
		f(&s.rm.metered)
	}
}

// mayHave adds the most a call that failed may still have done on the
// provider (its answer lost to a cancellation or a broken connection) to
// what a receipt may claim beyond the metered work, so that an honest
// provider is not taken for one that overclaims.
func (s *remoteSession) mayHave(f func(*work)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rm != nil {
		f(&s.rm.uncertain)
	}
}

// periodicReceipt takes a receipt when the interval has passed since the
// last one. It is called before a Step or LocalSteps, when no other call
// of the session's is in flight; a failure is reported to
// WithReceiptErrors and leaves the call alone.
func (s *remoteSession) periodicReceipt(ctx context.Context) {
	cfg := &s.c.cfg
	if s.rm == nil || cfg.receiptInterval <= 0 {
		return
	}
	s.mu.Lock()
	due := cfg.clock.Now().Sub(s.rm.last) >= cfg.receiptInterval
	s.mu.Unlock()
	if !due {
		return
	}
	s.receipt(ctx, false)
}

// finalReceipt takes the session's last receipt as it closes.
func (s *remoteSession) finalReceipt() {
	if s.rm == nil {
		return
	}
	s.receipt(context.Background(), true)
}

// receipt takes a receipt within the receipt timeout and reports a
// failure to WithReceiptErrors.
func (s *remoteSession) receipt(ctx context.Context, final bool) {
	cfg := &s.c.cfg
	if cfg.receiptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.receiptTimeout)
		defer cancel()
	}
	if err := s.takeReceipt(ctx, final); err != nil && s.rm.sinks.Errors != nil {
		s.rm.sinks.Errors(err)
	}
}

// takeReceipt asks the provider for a receipt, checks it against what
// the session metered, and countersigns it, or signs a fault when it
// claims too much.
func (s *remoteSession) takeReceipt(ctx context.Context, final bool) error {
	cfg, rm := &s.c.cfg, s.rm
	sinks := rm.sinks
	s.mu.Lock()
	rm.last = cfg.clock.Now()
	s.mu.Unlock()
	resp, err := s.c.pc.Receipt(ctx, &rookeryv1.ReceiptRequest{Session: s.id, Job: sinks.Job, Final: final})
	if err != nil {
		return fromStatus(ctx, s.on("receipt"), err)
	}
	sr := resp.GetReceipt()
	r, err := ledger.OpenProviderReceipt(sr)
	if err != nil {
		return fmt.Errorf("transport: %s: %w", s.on("receipt"), err)
	}
	pub := rm.key.Public().(ed25519.PublicKey)
	switch {
	case r.Session != s.id:
		return fmt.Errorf("transport: %s: %w: it names session %.40q", s.on("receipt"), ErrBadReceipt, r.Session)
	case !pub.Equal(ed25519.PublicKey(r.RequesterKey)):
		return fmt.Errorf("transport: %s: %w: it names requester key %s, not this client's", s.on("receipt"), ErrBadReceipt, EncodeIdentityKey(r.RequesterKey))
	case s.c.identity != nil && !s.c.identity.Equal(ed25519.PublicKey(r.ProviderKey)):
		return fmt.Errorf("transport: %s: %w: signed by %s, not by the provider's identity key %s", s.on("receipt"), ErrBadReceipt,
			EncodeIdentityKey(r.ProviderKey), EncodeIdentityKey(s.c.identity))
	}
	s.mu.Lock()
	claimed := rm.receipted.add(workOf(r.Work))
	why := claimed.exceeds(rm.metered.add(rm.uncertain))
	if why == "" {
		rm.receipted = claimed
	}
	s.mu.Unlock()
	if why != "" {
		f := &rookeryv1.Fault{Job: r.Job, Session: s.id, ProviderKey: r.ProviderKey, RequesterKey: pub, Kind: FaultOverclaimed,
			Evidence: fmt.Sprintf("receipt %d of session %s, part %d, with the receipts before it: %s", r.Index, s.id, s.part, why),
			UnixMs:   cfg.clock.Now().UnixMilli()}
		sf, err := ledger.SignFault(rm.key, f)
		if err != nil {
			return err
		}
		if sinks.Faults != nil {
			sinks.Faults(sf)
		}
		return fmt.Errorf("transport: %s: %w: %s", s.on("receipt"), ErrOverclaimed, why)
	}
	if err := ledger.Countersign(rm.key, sr); err != nil {
		return err
	}
	if sinks.Receipts != nil {
		sinks.Receipts(sr)
	}
	return nil
}

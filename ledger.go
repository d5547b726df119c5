package rookery

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// Receipts and faults.
//
// With WithSeedNode or WithLedger, every session on a provider takes
// receipts of its work (transport.WithReceipts): the provider signs
// each, the trainer checks it against its own metering and countersigns
// it with the requester key, and sends it to the seed node's ledger. A
// receipt that claims more than was metered becomes a fault of kind
// "overclaimed" instead, and a provider the guard excludes for
// disagreeing (redundancy, a spot check) a fault of kind "disagreed",
// both signed with the requester key. Sending is asynchronous and
// bounded: a queue of at most LedgerQueue records, sent in batches with
// a few retries; Close sends what is left within LedgerFlushTimeout.
// Nothing the ledger does fails training: what cannot be sent is
// reported to WithLedgerErrors (default: the slog default logger).

// LedgerQueue bounds the receipts and faults waiting to be sent; past
// it the oldest are dropped (and reported).
const LedgerQueue = 1024

// LedgerFlushTimeout bounds how long Close waits to send the receipts
// and faults still queued.
const LedgerFlushTimeout = 10 * time.Second

// ledgerBatch is the most records sent in one call.
const ledgerBatch = 64

// ledgerRetries is how many times a batch is tried.
const ledgerRetries = 3

// FaultDisagreed is the kind of the fault signed for a provider the
// guard excluded.
const FaultDisagreed = "disagreed"

// WithLedger sends the receipts and faults of the run to the seed node
// at addr, for runs whose providers were dialled directly
// (WithExecutors with *transport.Client executors, which then take
// receipts: transport.Client.SetSinks). opts dial the seed node; their
// requester key (transport.WithRequesterKey, else
// transport.DefaultRequesterKey) signs faults, and must be the key the
// providers were dialled with, which countersigns receipts.
// WithSeedNode implies WithLedger for its seed node.
func WithLedger(addr string, opts ...transport.DialOption) Option {
	return func(c *config) { c.ledgerAddr, c.ledgerOpts, c.ledgerSet = addr, opts, true }
}

// WithLedgerErrors calls f with what the ledger could not do (a batch
// the seed node refused or did not answer, a receipt that did not
// check, records dropped from a full queue). Default: a warning on the
// slog default logger.
func WithLedgerErrors(f func(error)) Option { return func(c *config) { c.ledgerErrs = f } }

// WithJob names the training run in its receipts and faults (default: a
// random name).
func WithJob(job string) Option { return func(c *config) { c.job = job } }

// submitFunc sends receipts and faults to the seed node at addr.
type submitFunc func(ctx context.Context, addr string, rs []*rookeryv1.SignedReceipt, fs []*rookeryv1.SignedFault, opts ...transport.DialOption) error

// submitSeed sends a batch with seednode.Submit.
func submitSeed(ctx context.Context, addr string, rs []*rookeryv1.SignedReceipt, fs []*rookeryv1.SignedFault, opts ...transport.DialOption) error {
	_, _, err := seednode.Submit(ctx, addr, rs, fs, opts...)
	return err
}

// ledgerQueue sends receipts and faults to a seed node in the
// background.
type ledgerQueue struct {
	addr   string
	opts   []transport.DialOption
	key    ed25519.PrivateKey
	job    string
	errs   func(error)
	submit submitFunc
	wait   func(time.Duration) <-chan time.Time

	mu       sync.Mutex
	receipts []*rookeryv1.SignedReceipt
	faults   []*rookeryv1.SignedFault
	closed   bool

	noLedger bool // the seed node said it keeps no ledger; only drain uses it

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// newLedger starts the queue when the configuration asks for a ledger,
// and returns nil otherwise.
func (c *config) newLedger() *ledgerQueue {
	if c.ledgerAddr == "" {
		return nil
	}
	job := c.job
	if job == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		job = "job-" + hex.EncodeToString(b[:])
	}
	q := &ledgerQueue{addr: c.ledgerAddr, opts: c.ledgerOpts, key: transport.RequesterKey(c.ledgerOpts...), job: job, errs: c.ledgerErrs,
		submit: c.submit, wait: time.After,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if q.errs == nil {
		q.errs = func(err error) { slog.Warn("rookery: ledger", "err", err) }
	}
	if q.submit == nil {
		q.submit = submitSeed
	}
	go q.run()
	return q
}

// sinks are what the provider connections hand their receipts to.
func (q *ledgerQueue) sinks() transport.Sinks {
	return transport.Sinks{Receipts: q.addReceipt, Faults: q.addFault, Errors: q.errs, Job: q.job}
}

// dialOptions make a provider connection take receipts for q.
func (q *ledgerQueue) dialOptions() []transport.DialOption {
	return []transport.DialOption{transport.WithReceipts(q.addReceipt), transport.WithFaults(q.addFault),
		transport.WithReceiptErrors(q.errs), transport.WithJob(q.job)}
}

func (q *ledgerQueue) addReceipt(sr *rookeryv1.SignedReceipt) {
	q.add(func() { q.receipts = append(q.receipts, sr) })
}

func (q *ledgerQueue) addFault(sf *rookeryv1.SignedFault) {
	q.add(func() { q.faults = append(q.faults, sf) })
}

func (q *ledgerQueue) add(f func()) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.errs(fmt.Errorf("rookery: ledger: a record came after Close and is not sent"))
		return
	}
	f()
	var dropped int
	for len(q.receipts)+len(q.faults) > LedgerQueue {
		if len(q.receipts) > 0 {
			q.receipts = q.receipts[1:]
		} else {
			q.faults = q.faults[1:]
		}
		dropped++
	}
	q.mu.Unlock()
	if dropped > 0 {
		q.errs(fmt.Errorf("rookery: ledger: queue full, %d records dropped", dropped))
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take removes a batch from the queue.
func (q *ledgerQueue) take() ([]*rookeryv1.SignedReceipt, []*rookeryv1.SignedFault) {
	q.mu.Lock()
	defer q.mu.Unlock()
	nr := min(len(q.receipts), ledgerBatch)
	rs := q.receipts[:nr:nr]
	q.receipts = q.receipts[nr:]
	nf := min(len(q.faults), ledgerBatch-nr)
	fs := q.faults[:nf:nf]
	q.faults = q.faults[nf:]
	return rs, fs
}

// run sends batches as records come, until stop; then it sends what is
// left within LedgerFlushTimeout.
func (q *ledgerQueue) run() {
	defer close(q.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-q.stop
		t := time.AfterFunc(LedgerFlushTimeout, cancel)
		<-q.done
		t.Stop()
	}()
	for {
		select {
		case <-q.wake:
			q.drain(ctx)
		case <-q.stop:
			q.drain(ctx)
			return
		}
	}
}

// drain sends every batch queued, each with a few tries.
func (q *ledgerQueue) drain(ctx context.Context) {
	for ctx.Err() == nil {
		rs, fs := q.take()
		if len(rs)+len(fs) == 0 {
			return
		}
		var err error
		backoff := 200 * time.Millisecond
		for try := 0; try < ledgerRetries; try++ {
			if try > 0 {
				select {
				case <-q.wait(backoff):
				case <-ctx.Done():
				}
				backoff *= 4
			}
			if ctx.Err() != nil {
				break
			}
			cctx, cancel := context.WithTimeout(ctx, LedgerFlushTimeout)
			err = q.submit(cctx, q.addr, rs, fs, q.opts...)
			cancel()
			if err == nil || errors.Is(err, seednode.ErrNoLedger) || errors.Is(err, seednode.ErrRefused) {
				break // sent, or trying again cannot help
			}
		}
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil && !q.noLedger {
			q.errs(fmt.Errorf("rookery: ledger: %d receipts and %d faults not sent to %s: %w", len(rs), len(fs), q.addr, err))
		}
		// A seed node without a ledger keeps none later either: what
		// follows is dropped without a word more.
		q.noLedger = q.noLedger || errors.Is(err, seednode.ErrNoLedger)
	}
}

// Close sends what is queued, within LedgerFlushTimeout, and stops.
func (q *ledgerQueue) Close() {
	if q == nil {
		return
	}
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.stop)
		<-q.done
	})
}

// guardFaults returns the guard event handler that signs a fault for
// every provider the guard excludes, naming it by the identity key of
// the executor of that name among execs, and then calls next.
func (q *ledgerQueue) guardFaults(execs []exec.Executor, next func(guard.Event)) func(guard.Event) {
	keys := make(map[string]ed25519.PublicKey)
	for _, e := range execs {
		k, ok := e.(interface{ IdentityKey() ed25519.PublicKey })
		if !ok || len(k.IdentityKey()) != ed25519.PublicKeySize {
			continue
		}
		switch v := e.(type) {
		case fmt.Stringer:
			keys[v.String()] = k.IdentityKey()
		case interface{ Addr() string }:
			keys[v.Addr()] = k.IdentityKey()
		}
	}
	return func(ev guard.Event) {
		if ev.Kind == guard.EventExcluded {
			q.fault(ev, keys[ev.Provider])
		}
		if next != nil {
			next(ev)
		}
	}
}

// fault signs and queues the fault of an exclusion.
func (q *ledgerQueue) fault(ev guard.Event, provider ed25519.PublicKey) {
	if provider == nil {
		q.errs(fmt.Errorf("rookery: ledger: no identity key for excluded provider %s, so no fault is signed", ev.Provider))
		return
	}
	evidence := fmt.Sprintf("part %d, step %d: %s excluded", ev.Part, ev.Step, ev.Provider)
	if ev.Err != nil {
		evidence += ": " + ev.Err.Error()
	}
	if len(evidence) > 2048 {
		evidence = evidence[:2048]
	}
	sf, err := ledger.SignFault(q.key, &rookeryv1.Fault{Job: q.job, ProviderKey: provider, RequesterKey: q.key.Public().(ed25519.PublicKey),
		Kind: FaultDisagreed, Evidence: evidence, UnixMs: time.Now().UnixMilli()})
	if err != nil {
		q.errs(err)
		return
	}
	q.addFault(sf)
}

// attach makes the directly dialled providers among execs take receipts
// for q.
func (q *ledgerQueue) attach(execs []exec.Executor) {
	for _, e := range execs {
		if c, ok := e.(interface{ SetSinks(transport.Sinks) }); ok {
			c.SetSinks(q.sinks())
		}
	}
}

package seednode

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery-ml/rookery/exec"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// ErrNotEnough marks a seed node that knows fewer matching providers than
// were asked for.
var ErrNotEnough = errors.New("seednode: not enough providers")

// Need says what a requester needs of each provider it asks a seed node
// for.
type Need struct {
	N         int     // providers wanted
	MinMemory int64   // bytes each must offer
	GPU       bool    // each must have a GPU
	MinGFLOPS float64 // measured speed each must have
	// ConnectTimeout bounds Lease's connection to each provider; one that
	// does not answer in time is skipped for the next the seed node
	// knows. Zero: DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// DefaultConnectTimeout is Need.ConnectTimeout's default.
const DefaultConnectTimeout = 10 * time.Second

// Find asks the seed node at addr for need.N providers and returns their
// entries in the seed node's order: by standing in its ledger, then
// fastest first (see the package doc). A seed node that does not answer
// within the dial timeout (transport.WithDialTimeout) gives a *transport.DialError
// naming addr and the last connection error. Fewer matches than need.N give an error
// matching ErrNotEnough. From a seed node that signs leases, each entry
// carries the lease (ProviderEntry.Lease) to pass to transport.Connect
// with transport.WithLease; Lease does both. Find sends the requester
// key (transport.WithRequesterKey, else transport.DefaultRequesterKey),
// which binds the leases: only a client with the same key can use them.
//
// A comma-separated addr names several seed nodes, which providers
// register with alike: they are asked in turn until one answers, and
// the error, when none does, holds each one's.
func Find(ctx context.Context, addr string, need Need, opts ...transport.DialOption) ([]*rookeryv1.ProviderEntry, error) {
	if addrs := strings.Split(addr, ","); len(addrs) > 1 {
		var errs []error
		for _, a := range addrs {
			entries, err := Find(ctx, strings.TrimSpace(a), need, opts...)
			if err == nil {
				return entries, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
	cc, err := transport.DialConn(ctx, addr, "seed node", opts...)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	key := transport.RequesterKey(opts...).Public().(ed25519.PublicKey)
	resp, err := rookeryv1.NewSeedClient(cc).Find(ctx, &rookeryv1.FindRequest{N: int32(need.N), MinMemoryBytes: need.MinMemory, Gpu: need.GPU, MinGflops: need.MinGFLOPS,
		RequesterKey: key}, grpc.WaitForReady(true))
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			return nil, fmt.Errorf("seednode: %s: %w: %s", addr, ErrNotEnough, st.Message())
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("seednode: %s: no answer to find: %w", addr, ctx.Err())
		}
		return nil, transport.FromStatus(ctx, "seed "+addr, err)
	}
	return resp.Providers, nil
}

// ErrRefused marks a receipt or fault that a seed node refused to add to
// its ledger: one that does not decode, or whose signatures do not check.
var ErrRefused = errors.New("seednode: record refused")

// Submit hands signed receipts and faults to the ledger of the seed node
// at addr (the Seed service's Submit), receipts first, in calls of at
// most MaxSubmitRecords records, and returns the ledger positions of
// every record in that order and the ledger's head (the SHA-256 of its
// last entry) after the last call. A record the seed node refuses gives
// an error matching ErrRefused whose message names it and why; the
// records before it were kept, and seqs holds the positions of those
// sent in earlier calls. A seed node without a ledger gives an error
// matching ErrNoLedger. opts are those of Find.
func Submit(ctx context.Context, addr string, receipts []*rookeryv1.SignedReceipt, faults []*rookeryv1.SignedFault, opts ...transport.DialOption) (seqs []uint64, head []byte, err error) {
	cc, err := transport.DialConn(ctx, addr, "seed node", opts...)
	if err != nil {
		return nil, nil, err
	}
	defer cc.Close()
	client := rookeryv1.NewSeedClient(cc)
	// Each round sends at least one record or ends the loop.
	for first := true; first || len(receipts)+len(faults) > 0; first = false {
		req := &rookeryv1.SubmitRequest{Receipts: receipts[:min(len(receipts), MaxSubmitRecords)]}
		req.Faults = faults[:min(len(faults), MaxSubmitRecords-len(req.Receipts))]
		receipts, faults = receipts[len(req.Receipts):], faults[len(req.Faults):]
		resp, err := client.Submit(ctx, req, grpc.WaitForReady(true))
		if err != nil {
			if st, ok := status.FromError(err); ok && ctx.Err() == nil {
				switch st.Code() {
				case codes.InvalidArgument:
					return seqs, nil, fmt.Errorf("seednode: %s: %w: %s", addr, ErrRefused, st.Message())
				case codes.FailedPrecondition:
					return seqs, nil, fmt.Errorf("seednode: %s: %w", addr, ErrNoLedger)
				}
			}
			if ctx.Err() != nil {
				return seqs, nil, fmt.Errorf("seednode: %s: no answer to submit: %w", addr, ctx.Err())
			}
			return seqs, nil, transport.FromStatus(ctx, "seed "+addr, err)
		}
		seqs, head = append(seqs, resp.Seqs...), resp.Head
	}
	return seqs, head, nil
}

// Lease asks the seed node at addr for need.N providers (Find) and
// connects to each, presenting the lease the seed node signed for it on
// every call. opts apply to the seed node and to every provider: give
// transport.WithToken or TLS credentials there when they require them.
//
// A provider that does not answer within need.ConnectTimeout is skipped,
// and the next one the seed node knows is taken instead.
//
// It returns one executor per provider, in Find's order except that
// providers reached only through a relay (transport.Client.Path
// "relayed", peer-to-peer) come last, and the providers' speeds as the
// seed node measured them (Speed: not the providers' own claims), for
// use as partition capacities; capacities is nil when any provider has
// no speed to trust.
//
// The caller holds every connection until it calls release (once; later
// calls do nothing). A connection closes when it is released and the
// last session opened on it has closed, so that a caller may open, close
// and open sessions again before it releases, and may release as soon as
// its sessions are open. On error nothing is left open.
func Lease(ctx context.Context, addr string, need Need, opts ...transport.DialOption) (execs []exec.Executor, capacities []float64, release func(), err error) {
	timeout := need.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	var held []*leased
	capacities = make([]float64, 0, need.N)
	closeAll := func() {
		for _, l := range held {
			l.c.Close()
		}
	}
	skipped := map[string]error{} // providers that did not answer, by id
	taken := map[string]bool{}
	// Each round either fills the lease or skips one more provider, and
	// Find fails once too few are left: the loop ends.
	for len(held) < need.N {
		ask := need
		ask.N = need.N + len(skipped)
		entries, err := Find(ctx, addr, ask, opts...)
		if err != nil {
			closeAll()
			if len(skipped) > 0 {
				return nil, nil, nil, fmt.Errorf("%w (after skipping %d providers that did not answer: %v)", err, len(skipped), firstErr(skipped))
			}
			return nil, nil, nil, err
		}
		progress := false
		for _, e := range entries {
			if len(held) == need.N {
				break
			}
			if _, bad := skipped[e.Id]; bad || taken[e.Id] {
				continue
			}
			progress = true
			copts := opts
			if e.Lease != "" {
				copts = append(slices.Clone(opts), transport.WithLease(e.Lease))
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			c, err := transport.Connect(cctx, e.Address, copts...)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					closeAll()
					return nil, nil, nil, fmt.Errorf("seednode: provider %s from %s: %w", e.Address, addr, err)
				}
				skipped[e.Id] = fmt.Errorf("provider %s: %w", e.Address, err)
				continue
			}
			taken[e.Id] = true
			held = append(held, &leased{c: c, refs: 1})
			capacities = append(capacities, Speed(e))
		}
		if !progress {
			closeAll()
			return nil, nil, nil, fmt.Errorf("seednode: %s: %w: every provider it names was skipped: %v", addr, ErrNotEnough, firstErr(skipped))
		}
	}
	// Direct connections first: a relayed provider (transport/p2p) goes
	// after the others, so that a trainer that keeps the last ones as
	// spares keeps the relayed ones.
	order := make([]int, len(held))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return relayedRank(held[a].c.Path()) - relayedRank(held[b].c.Path())
	})
	sortedHeld, sortedCaps := make([]*leased, len(held)), make([]float64, len(held))
	for i, j := range order {
		sortedHeld[i], sortedCaps[i] = held[j], capacities[j]
	}
	held, capacities = sortedHeld, sortedCaps
	for _, g := range capacities {
		if !(g > 0) {
			capacities = nil
			break
		}
	}
	execs = make([]exec.Executor, len(held))
	for i, l := range held {
		execs[i] = l
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, l := range held {
				l.unref()
			}
		})
	}
	return execs, capacities, release, nil
}

// leased is a provider connection with a reference count: one for the
// caller of Lease until it releases, one for each open session. It is
// closed when the count reaches zero.
type leased struct {
	c *transport.Client

	mu   sync.Mutex
	refs int
}

// Open implements exec.Executor.
func (l *leased) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	l.mu.Lock()
	if l.refs == 0 {
		l.mu.Unlock()
		return nil, fmt.Errorf("seednode: provider %s: %w: released", l.c.Addr(), exec.ErrClosed)
	}
	l.refs++ // the session's, taken before the call so that a release meanwhile keeps the connection
	l.mu.Unlock()
	s, err := l.c.Open(ctx, spec)
	if err != nil {
		l.unref()
		return nil, err
	}
	return &leasedSession{Session: s, l: l}, nil
}

func (l *leased) unref() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs--
	if l.refs == 0 {
		l.c.Close()
	}
}

// leasedSession gives back its reference to the connection when closed.
type leasedSession struct {
	exec.Session
	l    *leased
	once sync.Once
}

// Close closes the session, then gives back its reference.
func (s *leasedSession) Close() error {
	err := s.Session.Close()
	s.once.Do(s.l.unref)
	return err
}

var _ exec.Session = (*leasedSession)(nil)

// firstErr returns one of errs, that of the smallest id, for a message.
func firstErr(errs map[string]error) error {
	var id string
	for k := range errs {
		if id == "" || k < id {
			id = k
		}
	}
	return errs[id]
}

// Addr is the provider's address, by which guard events name it.
func (l *leased) Addr() string { return l.c.Addr() }

// Path is the connection's path (transport.Client.Path).
func (l *leased) Path() string { return l.c.Path() }

// relayedRank orders paths: relayed ones last.
func relayedRank(path string) int {
	if path == "relayed" {
		return 1
	}
	return 0
}

// IdentityKey is the provider's identity key (transport.Client.IdentityKey).
func (l *leased) IdentityKey() ed25519.PublicKey { return l.c.IdentityKey() }

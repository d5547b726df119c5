package transport_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/test/bufconn"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	"github.com/rookery-ml/rookery/ledger"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// startBufconnWith is startBufconn with dial options.
func startBufconnWith(t testing.TB, e exec.Executor, sopts []transport.ServerOption, dopts ...transport.DialOption) (*transport.Server, *transport.Client) {
	t.Helper()
	lis := bufconn.Listen(4 << 20)
	srv := transport.NewServer(e, append([]transport.ServerOption{transport.WithBenchmark(0)}, sopts...)...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dopts = append([]transport.DialOption{transport.WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	})}, dopts...)
	c, err := transport.Connect(ctx, "bufnet", dopts...)
	if err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Stop()
		<-done
	})
	return srv, c
}

// sinks collects what a client hands to WithReceipts, WithFaults and
// WithReceiptErrors.
type sinks struct {
	mu       sync.Mutex
	receipts []*rookeryv1.SignedReceipt
	faults   []*rookeryv1.SignedFault
	errs     []error
}

func (k *sinks) options(key ed25519.PrivateKey) []transport.DialOption {
	return []transport.DialOption{
		transport.WithRequesterKey(key), transport.WithJob("job-1"),
		transport.WithReceipts(func(sr *rookeryv1.SignedReceipt) { k.mu.Lock(); k.receipts = append(k.receipts, sr); k.mu.Unlock() }),
		transport.WithFaults(func(sf *rookeryv1.SignedFault) { k.mu.Lock(); k.faults = append(k.faults, sf); k.mu.Unlock() }),
		transport.WithReceiptErrors(func(err error) { k.mu.Lock(); k.errs = append(k.errs, err); k.mu.Unlock() }),
	}
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func tensorBytes(m map[int64]*tensor.Dense) int64 {
	var n int64
	for _, t := range m {
		n += int64(t.Len()) * int64(t.Dtype().Size())
	}
	return n
}

// trainSession trains a whole-model session for steps steps (a Put of a
// parameter first, a Get of it last) and returns the work it did, as
// the test counts it.
func trainSession(t *testing.T, s exec.Session, m *mlp, steps int) *rookeryv1.Work {
	t.Helper()
	ctx := context.Background()
	wid := m.ir.Learnables()[0]
	wname := "param/" + strconv.FormatInt(wid, 10)
	wn, _ := m.ir.Node(wid)
	wv := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(wn.Shape...))
	if err := s.Put(ctx, wname, wv); err != nil {
		t.Fatal(err)
	}
	w := &rookeryv1.Work{BytesIn: int64(wv.Len() * 8)}
	for i := 0; i < steps; i++ {
		out, err := s.Forward(ctx, 0, m.feeds)
		if err != nil {
			t.Fatal(err)
		}
		grads, err := s.Backward(ctx, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
		w.BytesIn += tensorBytes(m.feeds)
		w.BytesOut += tensorBytes(out) + tensorBytes(grads)
		w.Steps++
		w.MicroBatches++
	}
	got, err := s.Get(ctx, wname)
	if err != nil {
		t.Fatal(err)
	}
	w.BytesOut += int64(got[wname].Len() * 8)
	return w
}

// TestReceiptAtClose: a session trained for a few steps and closed
// yields exactly one receipt, countersigned, naming both keys, whose
// figures are the part's forward cost × (1 + 2) × micro-batches, the
// steps and the tensor bytes each way.
func TestReceiptAtClose(t *testing.T) {
	const steps = 3
	m := newMLP(t, tensor.Float64, 8, 12, 10, 4)
	spec := wholeSpec(t, m)
	key := newKey(t)
	var k sinks
	srv, c := startBufconnWith(t, exec.NewCPU(), nil, k.options(key)...)
	if !c.IdentityKey().Equal(srv.IdentityKey()) {
		t.Fatalf("client's identity key of the provider %x, want %x", c.IdentityKey(), srv.IdentityKey())
	}
	s, err := c.Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	want := trainSession(t, s, m, steps)
	want.Flops = spec.Graph.TotalCost().FLOPs * 3 * steps
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(k.receipts) != 1 || len(k.faults) != 0 || len(k.errs) != 0 {
		t.Fatalf("got %d receipts, %d faults, errors %v; want 1 receipt", len(k.receipts), len(k.faults), k.errs)
	}
	r, err := ledger.OpenReceipt(k.receipts[0])
	if err != nil {
		t.Fatalf("receipt does not check: %v", err)
	}
	id, _ := transport.SessionID(s)
	if r.Session != id || r.Job != "job-1" || !r.Final || r.Index != 0 || r.Part != int32(spec.Part) {
		t.Errorf("receipt session %q job %q final %v index %d part %d, want %q job-1 true 0 %d", r.Session, r.Job, r.Final, r.Index, r.Part, id, spec.Part)
	}
	if !srv.IdentityKey().Equal(ed25519.PublicKey(r.ProviderKey)) || !key.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(r.RequesterKey)) {
		t.Errorf("receipt names provider %x requester %x", r.ProviderKey, r.RequesterKey)
	}
	if want.Flops <= 0 {
		t.Fatalf("forward cost %d", want.Flops)
	}
	got := r.Work
	if got.Flops != want.Flops || got.Steps != want.Steps || got.MicroBatches != want.MicroBatches || got.BytesIn != want.BytesIn || got.BytesOut != want.BytesOut {
		t.Errorf("receipt's work %v, want %v", got, want)
	}
	if r.EndUnixMs < r.StartUnixMs {
		t.Errorf("span %d..%d", r.StartUnixMs, r.EndUnixMs)
	}
}

// TestReceiptInterval: a long session takes a receipt on its first step
// after the interval, and its receipts add up to the whole session's
// work.
func TestReceiptInterval(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 12, 4)
	spec := wholeSpec(t, m)
	clk := fakeclock.New(time.Unix(1_700_000_000, 0))
	var k sinks
	_, c := startBufconnWith(t, exec.NewCPU(), nil, append(k.options(newKey(t)), transport.WithDialClock(clk), transport.WithReceiptInterval(time.Minute))...)
	s, err := c.Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	first := trainSession(t, s, m, 2)
	if len(k.receipts) != 0 {
		t.Fatalf("%d receipts before the interval passed", len(k.receipts))
	}
	clk.Advance(2 * time.Minute)
	second := trainSession(t, s, m, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(k.receipts) != 2 || len(k.errs) != 0 {
		t.Fatalf("got %d receipts, errors %v; want 2", len(k.receipts), k.errs)
	}
	var steps, mbs, in, out, flops int64
	for i, sr := range k.receipts {
		r, err := ledger.OpenReceipt(sr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Index != uint32(i) || r.Final != (i == 1) {
			t.Errorf("receipt %d: index %d final %v", i, r.Index, r.Final)
		}
		steps, mbs, flops = steps+r.Work.Steps, mbs+r.Work.MicroBatches, flops+r.Work.Flops
		in, out = in+r.Work.BytesIn, out+r.Work.BytesOut
	}
	if want := first.Steps + second.Steps; steps != want {
		t.Errorf("steps %d, want %d", steps, want)
	}
	if want := first.BytesIn + second.BytesIn; in != want {
		t.Errorf("bytes in %d, want %d", in, want)
	}
	if want := first.BytesOut + second.BytesOut; out != want {
		t.Errorf("bytes out %d, want %d", out, want)
	}
	if want := spec.Graph.TotalCost().FLOPs * 3 * 4; flops != want || mbs != 4 {
		t.Errorf("flops %d micro-batches %d, want %d and 4", flops, mbs, want)
	}
}

// TestReceiptOverclaimed: a provider whose receipt claims more FLOPs
// than the requester metered gets no countersigned receipt but a fault
// signed by the requester, giving both figures.
func TestReceiptOverclaimed(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 12, 4)
	spec := wholeSpec(t, m)
	key := newKey(t)
	var k sinks
	srv, c := startBufconnWith(t, exec.NewCPU(), nil, k.options(key)...)
	transport.Overclaim(srv, 1000)
	s, err := c.Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	trainSession(t, s, m, 2)
	metered := spec.Graph.TotalCost().FLOPs * 3 * 2
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(k.receipts) != 0 || len(k.faults) != 1 {
		t.Fatalf("got %d receipts and %d faults, want 0 and 1", len(k.receipts), len(k.faults))
	}
	if len(k.errs) != 1 || !errors.Is(k.errs[0], transport.ErrOverclaimed) {
		t.Errorf("receipt errors %v, want one matching ErrOverclaimed", k.errs)
	}
	f, err := ledger.OpenFault(k.faults[0])
	if err != nil {
		t.Fatalf("fault does not check: %v", err)
	}
	if f.Kind != transport.FaultOverclaimed || !srv.IdentityKey().Equal(ed25519.PublicKey(f.ProviderKey)) || !key.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(f.RequesterKey)) {
		t.Errorf("fault kind %q provider %x requester %x", f.Kind, f.ProviderKey, f.RequesterKey)
	}
	wantEv := "flops: claimed " + strconv.FormatInt(metered+1000, 10) + ", metered " + strconv.FormatInt(metered, 10)
	if !strings.Contains(f.Evidence, wantEv) {
		t.Errorf("evidence %q, want it to say %q", f.Evidence, wantEv)
	}
}

// TestReceiptFailureDoesNotBlockClose: a provider that never answers
// Receipt leaves Close to succeed once the receipt timeout passes, and
// the session is closed on the provider.
func TestReceiptFailureDoesNotBlockClose(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 12, 4)
	spec := wholeSpec(t, m)
	var k sinks
	srv, c := startBufconnWith(t, exec.NewCPU(), nil, append(k.options(newKey(t)), transport.WithReceiptTimeout(50*time.Millisecond))...)
	transport.HangReceipts(srv)
	s, err := c.Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	trainSession(t, s, m, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if n := srv.Sessions(); n != 0 {
		t.Errorf("%d sessions open on the provider after Close", n)
	}
	if len(k.receipts) != 0 || len(k.errs) != 1 || !errors.Is(k.errs[0], context.DeadlineExceeded) {
		t.Errorf("receipts %d, errors %v; want none and a deadline", len(k.receipts), k.errs)
	}
}

// TestReceiptWithoutRequesterKey: a session opened by a client that
// takes no receipts names no requester key, and Receipt refuses it.
func TestReceiptWithoutRequesterKey(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 12, 4)
	_, c := startBufconn(t, exec.NewCPU())
	s, err := c.Open(context.Background(), wholeSpec(t, m))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, _ := transport.SessionID(s)
	_, err = transport.ProviderClient(c).Receipt(context.Background(), &rookeryv1.ReceiptRequest{Session: id})
	if err = transport.FromStatus(context.Background(), "receipt", err); !errors.Is(err, transport.ErrNoRequesterKey) {
		t.Fatalf("receipt of a session without a requester key: %v, want ErrNoRequesterKey", err)
	}
}

// lostAnswer is an executor whose sessions' Step, once armed, cancels
// the client's call and finishes only after the provider's call context
// is done too: the step is taken on the provider, and its answer is lost.
type lostAnswer struct {
	exec.Executor
	cancel func()
	armed  bool
}

type lostAnswerSession struct {
	exec.Session
	e *lostAnswer
}

func (e *lostAnswer) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := e.Executor.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &lostAnswerSession{Session: s, e: e}, nil
}

func (s *lostAnswerSession) Step(ctx context.Context) error {
	err := s.Session.Step(ctx)
	if s.e.armed {
		s.e.armed = false
		s.e.cancel()
		<-ctx.Done()
	}
	return err
}

// TestReceiptAfterLostAnswer: a step the provider took but whose answer
// the client never got (its call cancelled) is no overclaim: the receipt
// that counts it is countersigned.
func TestReceiptAfterLostAnswer(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 12, 4)
	spec := wholeSpec(t, m)
	var k sinks
	ex := &lostAnswer{Executor: exec.NewCPU()}
	_, c := startBufconnWith(t, ex, nil, k.options(newKey(t))...)
	s, err := c.Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	trainSession(t, s, m, 1)
	ctx, cancel := context.WithCancel(context.Background())
	ex.cancel, ex.armed = cancel, true
	if _, err := s.Forward(ctx, 0, m.feeds); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backward(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Step(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the step whose answer is lost: got %v, want context.Canceled", err)
	}
	// The provider carries out a session's calls one at a time: this one
	// runs once the lost step is counted there.
	if _, err := s.Forward(context.Background(), 0, m.feeds); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.receipts) != 1 || len(k.faults) != 0 {
		t.Fatalf("got %d receipts and %d faults (errors %v), want 1 and 0", len(k.receipts), len(k.faults), k.errs)
	}
	r, err := ledger.OpenReceipt(k.receipts[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Work.Steps != 2 {
		t.Fatalf("the receipt counts %d steps, want 2: the provider took the second", r.Work.Steps)
	}
}

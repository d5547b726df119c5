package rookery_test

import (
	"context"
	"crypto/ed25519"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/exec/guard/guardtest"
	"github.com/rookery-ml/rookery/ledger"
	"github.com/rookery-ml/rookery/partition"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// fakeSeed keeps what Submit receives.
type fakeSeed struct {
	rookeryv1.UnimplementedSeedServer
	mu       sync.Mutex
	receipts []*rookeryv1.SignedReceipt
	faults   []*rookeryv1.SignedFault
}

func (f *fakeSeed) Submit(ctx context.Context, req *rookeryv1.SubmitRequest) (*rookeryv1.SubmitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receipts = append(f.receipts, req.Receipts...)
	f.faults = append(f.faults, req.Faults...)
	return &rookeryv1.SubmitResponse{}, nil
}

func startFakeSeed(t *testing.T) (*fakeSeed, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSeed{}
	s := grpc.NewServer()
	rookeryv1.RegisterSeedServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return f, lis.Addr().String()
}

// serveLoopback serves e on a loopback port and connects a client to it.
func serveLoopback(t *testing.T, e exec.Executor) (*transport.Server, *transport.Client) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(e, transport.WithBenchmark(0))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c, err := transport.Connect(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// TestWithLedger: a run on two directly dialled providers sends the
// ledger one countersigned receipt per provider session when it closes,
// each with the FLOPs of its part's forward cost × 3 × micro-batches.
func TestWithLedger(t *testing.T) {
	const steps, micro = 3, 2
	seed, seedAddr := startFakeSeed(t)
	ctx := context.Background()
	var execs []exec.Executor
	keys := map[string]bool{}
	for i := 0; i < 2; i++ {
		srv, c := serveLoopback(t, exec.NewCPU())
		execs = append(execs, c)
		keys[string(srv.IdentityKey())] = true
	}
	g, loss, learn, inputs, feeds := classifier(8)
	var errs []error
	tr, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, rookery.WithExecutors(execs...), rookery.WithMicroBatches(micro), rookery.WithPartitionOptions(partition.WithMaxImbalance(1)),
		rookery.WithLedger(seedAddr), rookery.WithJob("run-1"), rookery.WithLedgerErrors(func(err error) { errs = append(errs, err) }))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < steps; i++ {
		if _, err := tr.Step(ctx, feeds); err != nil {
			t.Fatal(err)
		}
	}
	// The parts' graphs as the pipeline opens them: of one micro-batch.
	mg, err := exec.Rebatch(tr.Graph(), exec.NodeIDs(inputs), 8, 8/micro)
	if err != nil {
		t.Fatal(err)
	}
	lay, err := exec.NewLayout(mg, tr.Plan().PartNodes(), int64(loss.ID()), exec.NodeIDs(inputs))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 0 {
		t.Fatalf("ledger errors: %v", errs)
	}
	if len(seed.receipts) != 2 || len(seed.faults) != 0 {
		t.Fatalf("seed got %d receipts and %d faults, want 2 and 0", len(seed.receipts), len(seed.faults))
	}
	requester := transport.DefaultRequesterKey().Public().(ed25519.PublicKey)
	for _, sr := range seed.receipts {
		r, err := ledger.OpenReceipt(sr)
		if err != nil {
			t.Fatalf("receipt does not check: %v", err)
		}
		want := lay.Specs[r.Part].Graph.TotalCost().FLOPs * 3 * steps * micro
		if r.Work.Flops != want || r.Work.Steps != steps || r.Work.MicroBatches != steps*micro || !r.Final || r.Job != "run-1" {
			t.Errorf("part %d: %v final %v job %q, want %d FLOPs, %d steps, %d micro-batches, final, run-1", r.Part, r.Work, r.Final, r.Job, want, steps, steps*micro)
		}
		if !keys[string(r.ProviderKey)] || !requester.Equal(ed25519.PublicKey(r.RequesterKey)) {
			t.Errorf("part %d: provider %x requester %x", r.Part, r.ProviderKey, r.RequesterKey)
		}
		delete(keys, string(r.ProviderKey))
	}
}

// TestLedgerFaultOfLiar: a provider that lies under redundancy is
// excluded, and the trainer signs a "disagreed" fault naming its identity
// key for the seed node.
func TestLedgerFaultOfLiar(t *testing.T) {
	seed, seedAddr := startFakeSeed(t)
	ctx := context.Background()
	_, honest := serveLoopback(t, exec.NewCPU())
	liarSrv, liar := serveLoopback(t, guardtest.Liar("liar", exec.NewCPU(), guardtest.FlipSign, 9, 3))
	m := newMLP(8, 6, 10, 3)
	var excluded []guard.Event
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), append(guardOpts(),
		rookery.WithExecutors(honest, liar), rookery.WithRedundancy(2),
		rookery.WithSpares(exec.NewCPU(), exec.NewCPU(), exec.NewCPU()),
		rookery.WithEvents(func(e guard.Event) {
			if e.Kind == guard.EventExcluded {
				excluded = append(excluded, e)
			}
		}),
		rookery.WithLedger(seedAddr), rookery.WithJob("run-liar"))...)
	if err != nil {
		t.Fatal(err)
	}
	trainSteps(t, tr, m, 6)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if len(excluded) != 1 {
		t.Fatalf("exclusions %v, want the liar", excluded)
	}
	seed.mu.Lock()
	defer seed.mu.Unlock()
	if len(seed.faults) != 1 {
		t.Fatalf("seed got %d faults, want 1", len(seed.faults))
	}
	f, err := ledger.OpenFault(seed.faults[0])
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != "disagreed" || f.Job != "run-liar" || !ed25519.PublicKey(f.ProviderKey).Equal(liarSrv.IdentityKey()) {
		t.Fatalf("fault %q of job %q names key %x, want disagreed, run-liar, the liar's key", f.Kind, f.Job, f.ProviderKey)
	}
}

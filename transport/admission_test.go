package transport_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// stuck is an executor whose sessions' Forward waits for its context.
type stuck struct{ exec.Executor }

func (s stuck) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	sess, err := s.Executor.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return stuckSession{sess}, nil
}

type stuckSession struct{ exec.Session }

func (stuckSession) Forward(ctx context.Context, _ int, _ map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCallTimeout: a call that runs past the provider's call timeout is
// cancelled there, and the requester sees context.DeadlineExceeded
// although its own context has no deadline.
func TestCallTimeout(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	_, c := startBufconn(t, stuck{exec.NewCPU()}, transport.WithCallTimeout(50*time.Millisecond))
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Forward(context.Background(), 0, map[int64]*tensor.Dense{m.data[0]: m.feeds[m.data[0]]})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

// wholeSession opens the whole MLP as one part with an SGD solver with
// momentum.
func wholeSession(t *testing.T, c exec.Executor, m *mlp) (exec.Session, error) {
	t.Helper()
	lay, err := exec.NewLayout(m.ir, m.parts(1), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0.9)
	s, err := c.Open(context.Background(), spec)
	if s != nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// TestWorkingMemory: the provider reserves the executor's working memory
// at Open (gradients, solver state, one micro-batch's activations) and
// each further micro-batch in flight until Step, and refuses a session or
// a micro-batch that would exceed its memory budget.
func TestWorkingMemory(t *testing.T) {
	ctx := context.Background()
	m := newMLP(t, tensor.Float64, 64, 64, 256, 256, 10)
	lay, err := exec.NewLayout(m.ir, m.parts(1), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := lay.Specs[0].Graph.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	params := lay.Specs[0].Graph.TotalCost().ParamBytes

	srv, c := startBufconn(t, exec.NewCPU())
	s, err := wholeSession(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	base := srv.Reserved()
	// Encoded part, a gradient and a momentum per parameter, and more.
	if base <= int64(len(enc))+2*params {
		t.Fatalf("reserved %d at Open for a part of %d bytes with %d bytes of parameters", base, len(enc), params)
	}
	run := func(s exec.Session, mb int) error {
		if _, err := s.Forward(ctx, mb, m.feeds); err != nil {
			return err
		}
		_, err := s.Backward(ctx, mb, nil)
		return err
	}
	if err := run(s, 0); err != nil {
		t.Fatal(err)
	}
	if got := srv.Reserved(); got != base {
		t.Fatalf("one micro-batch: reserved %d, want the %d reserved at Open", got, base)
	}
	if err := run(s, 1); err != nil {
		t.Fatal(err)
	}
	perMB := srv.Reserved() - base
	if perMB <= 0 {
		t.Fatalf("a second micro-batch reserved %d more bytes", perMB)
	}
	if err := s.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.Reserved(); got != base {
		t.Fatalf("after Step: reserved %d, want %d", got, base)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := srv.Reserved(); got != 0 {
		t.Fatalf("after Close: reserved %d", got)
	}

	// A budget that holds the encoded part but not the working memory
	// refuses the session before the executor allocates anything.
	_, tight := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxProviderBytes: base - 1}))
	_, err = wholeSession(t, tight, m)
	requireLimit(t, err, "provider bytes", true)

	// A budget for one micro-batch and the feeds in flight refuses a
	// second micro-batch before Step, and takes it after.
	feeds := int64(0)
	for _, f := range m.feeds {
		feeds += int64(f.DataSize()) * 8
	}
	srv2, one := startBufconn(t, exec.NewCPU(), transport.WithLimits(transport.Limits{MaxProviderBytes: base + feeds + perMB/2}))
	s, err = wholeSession(t, one, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(s, 0); err != nil {
		t.Fatal(err)
	}
	_, err = s.Forward(ctx, 1, m.feeds)
	requireLimit(t, err, "provider bytes", true)
	if err := s.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run(s, 0); err != nil {
		t.Fatalf("after Step: %v", err)
	}
	if got := srv2.Reserved(); got > base+feeds+perMB/2 {
		t.Fatalf("reserved %d over the budget", got)
	}
}

// TestUnknownOpRefused: a part naming an op kind outside the provider's
// allow-list (graph.Kinds) is refused at Open, before any executor sees
// it, with an error matching graph.ErrInvalid.
func TestUnknownOpRefused(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	lay, err := exec.NewLayout(m.ir, m.parts(2), m.loss, m.data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lay.Specs[0].Graph.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var pg rookeryv1.Graph
	if err := proto.Unmarshal(b, &pg); err != nil {
		t.Fatal(err)
	}
	changed := false
	for _, n := range pg.Nodes {
		if n.Kind == string(graph.KindMatMul) {
			n.Kind, changed = "system", true
			break
		}
	}
	if !changed {
		t.Fatal("no matmul to replace")
	}
	evil, err := proto.Marshal(&pg)
	if err != nil {
		t.Fatal(err)
	}
	srv, c := startTCP(t, exec.NewCPU())
	cc, err := grpc.NewClient(c.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open, err := rookeryv1.NewProviderClient(cc).Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sp := lay.Specs[0]
	if err := open.Send(&rookeryv1.OpenRequest{GraphBytes: int64(len(evil)), GraphChunk: evil, Spec: &rookeryv1.SessionSpec{
		Part: int32(sp.Part), Inputs: sp.Inputs, DataInputs: sp.DataInputs, Outputs: sp.Outputs,
		Solver: &rookeryv1.Solver{Kind: rookeryv1.Solver_KIND_SGD, LearnRate: 0.1}}}); err != nil {
		t.Fatal(err)
	}
	_, err = open.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown op kind "system"`) {
		t.Fatalf("got %v, want the unknown op kind refused", err)
	}
	if srv.Sessions() != 0 || srv.Reserved() != 0 {
		t.Fatalf("%d sessions and %d bytes after a refused Open", srv.Sessions(), srv.Reserved())
	}
}

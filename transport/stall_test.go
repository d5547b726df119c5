package transport_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/fakeclock"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// TestStalledStream: a Forward that announces a 64 MiB tensor and then
// sends nothing holds that much of the provider's budget only until the
// stream idle timeout; meanwhile other requesters are admitted, and once
// the stalled call is cut its memory serves them.
func TestStalledStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const announced = 64 << 20
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	srv, c := startTCP(t, exec.NewCPU(), transport.WithClock(clock),
		transport.WithLimits(transport.Limits{MaxProviderBytes: 96 << 20, StreamIdleTimeout: 10 * time.Second}))
	id := sessionID(t, srv, c, m)
	base := srv.Reserved()

	cc, err := grpc.NewClient(c.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	fwd, err := rookeryv1.NewProviderClient(cc).Forward(ctx)
	if err != nil {
		t.Fatal(err)
	}
	head := &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT32, Shape: []int64{announced / 4}, Data: make([]byte, 1024)}
	if err := fwd.Send(&rookeryv1.TensorFrame{Session: id, Id: m.data[0], Tensor: head}); err != nil {
		t.Fatal(err)
	}
	// The header reserves the tensor; wait until the provider has read it
	// and waits for the rest.
	for i := 0; srv.Reserved() < base+announced || transport.WaitingStreams(srv) != 1; i++ {
		if i == 10000 {
			t.Fatalf("the provider reserves %d bytes, want the announced tensor's %d on top of %d", srv.Reserved(), announced, base)
		}
		time.Sleep(time.Millisecond)
	}

	// Meanwhile another requester is admitted, but the stalled call's
	// reservation leaves no room for its 32 MiB input.
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatalf("open beside a stalled stream: %v", err)
	}
	input := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(8<<20))
	requireLimit(t, s.Put(ctx, "x", input), "provider bytes", true)

	idle(clock, 5*time.Second)
	if got := srv.Reserved(); got < base+announced {
		t.Fatalf("the stalled call was cut before the stream idle timeout (%d bytes reserved)", got)
	}
	idle(clock, 10*time.Second)
	cut := make(chan error, 1)
	go func() {
		_, err := fwd.Recv()
		cut <- err
	}()
	select {
	case err := <-cut:
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("the stalled call ended with %v, want DeadlineExceeded", err)
		}
	case <-ctx.Done():
		t.Fatal("the stalled call was not cut after the stream idle timeout")
	}
	if got, limit := srv.Reserved(), base+announced; got >= limit {
		t.Errorf("%d bytes reserved after the stalled call was cut, want less than %d", got, limit)
	}
	if err := s.Put(ctx, "x", input); err != nil {
		t.Errorf("put once the stalled call was cut: %v", err)
	}
}

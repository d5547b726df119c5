package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/test/bufconn"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/transport"
)

// Serve the in-process CPU executor over gRPC (here on an in-memory
// listener; `rookery provider` does the same on TCP), reach it with a
// client that is itself an exec.Executor, and run a part on it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lis := bufconn.Listen(1 << 20)
	srv := transport.NewServer(exec.NewCPU(), transport.WithName("example"), transport.WithBenchmark(0),
		transport.WithLimits(transport.Limits{MaxTensorBytes: 1 << 20}))
	go srv.Serve(lis)
	defer srv.Stop()

	c, err := transport.Connect(ctx, "bufnet", transport.WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("provider:", c.Capabilities().Name)

	// A one-node part: y = x·w with a learnable w.
	g := graph.New()
	g.MustAdd(graph.Node{ID: 1, Name: "x", Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{1, 2}})
	w := tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]float64{3, 4}))
	g.MustAdd(graph.Node{ID: 2, Name: "w", Role: graph.RoleLearnable, Op: graph.NewOp(graph.KindInput), DType: graph.Float64, Shape: graph.Shape{2, 1}, Value: w})
	g.MustAdd(graph.Node{ID: 3, Name: "y", Role: graph.RoleOp, Op: graph.NewOp(graph.KindMatMul), Inputs: []int64{1, 2},
		DType: graph.Float64, Shape: graph.Shape{1, 1}})
	var e exec.Executor = c
	s, err := e.Open(ctx, exec.SessionSpec{Graph: g, DataInputs: []int64{1}, Outputs: []int64{3}, Solver: exec.SGD(0.1, 0)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	x := tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float64{1, 2}))
	out, err := s.Forward(ctx, 0, map[int64]*tensor.Dense{1: x})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("y =", out[3].Float64s())

	// Errors come back typed, as from a local executor.
	_, err = s.Forward(ctx, 0, map[int64]*tensor.Dense{1: w})
	var fe *exec.FeedError
	fmt.Println("feed error:", errors.As(err, &fe), fe.Node)
	// And the provider's limits as *transport.LimitError.
	big := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(1<<18))
	var le *transport.LimitError
	fmt.Println("limit:", errors.As(s.Put(ctx, "big", big), &le), le.What)
	// Output:
	// provider: example
	// y = [11]
	// feed error: true 1
	// limit: true tensor bytes
}

package transport_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/test/bufconn"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
)

// TestChunkedTensors puts and gets tensors of every dtype that span many
// frames (small chunks on both sides) and one that is exactly one chunk,
// and checks that every byte comes back.
func TestChunkedTensors(t *testing.T) {
	const chunk = 1000
	lis := bufconn.Listen(1 << 20)
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithLimits(transport.Limits{ChunkBytes: chunk}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		<-done
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := transport.Connect(ctx, "bufnet", transport.WithChunkBytes(chunk), transport.WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	f32 := tensor.New(tensor.WithShape(3, 1001), tensor.WithBacking(make([]float32, 3003)))
	for i, v := range f32.Float32s() {
		f32.Float32s()[i] = float32(i)*0.5 + v
	}
	f64 := tensor.New(tensor.WithShape(250), tensor.WithBacking(make([]float64, 250))) // 2000 bytes: two chunks exactly
	for i := range f64.Float64s() {
		f64.Float64s()[i] = float64(i) / 3
	}
	ints := tensor.New(tensor.WithShape(777), tensor.WithBacking(make([]int, 777)))
	for i := range ints.Ints() {
		ints.Ints()[i] = i * -7
	}
	bools := tensor.New(tensor.WithShape(2500), tensor.WithBacking(make([]bool, 2500)))
	for i := range bools.Bools() {
		bools.Bools()[i] = i%3 == 0
	}
	one := tensor.New(tensor.WithShape(125), tensor.WithBacking(make([]float64, 125))) // exactly one chunk
	want := map[string]*tensor.Dense{"f32": f32, "f64": f64, "ints": ints, "bools": bools, "one": one}
	for name, v := range want {
		if err := s.Put(ctx, name, v); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	got, err := s.Get(ctx, "f32", "f64", "ints", "bools", "one")
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		g := got[name]
		if g == nil || !g.Shape().Eq(w.Shape()) || g.Dtype() != w.Dtype() {
			t.Fatalf("%s: got %v, want %v %v", name, g, w.Dtype(), w.Shape())
		}
		if fmt.Sprint(g.Data()) != fmt.Sprint(w.Data()) {
			t.Errorf("%s: data differs", name)
		}
	}
}

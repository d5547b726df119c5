package transport_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
)

// Benchmarks:
//
//	go test ./transport -run '^$' -bench . -benchtime 5x
//
// BenchmarkTransfer moves a float32 tensor to a provider and back (Put,
// then Get) over loopback gRPC, next to the same bytes over a raw
// loopback TCP connection (write them, the peer reads them all and
// writes them back, read them). MB/s counts both directions. "grpc" serves
// an executor that keeps the tensor it is given and hands it back, so
// that only the wire is measured; "grpc-cpu" serves the CPU executor,
// whose Put and Get each copy the tensor once more.
//
// BenchmarkStep trains the MNIST-sized MLP on two parts with the trainer,
// on in-process executors and on providers over loopback gRPC.

var transferSizes = []int{1 << 20, 16 << 20, 256 << 20}

func BenchmarkTransfer(b *testing.B) {
	for _, size := range transferSizes {
		b.Run(fmt.Sprintf("%dMiB/grpc", size>>20), func(b *testing.B) { benchGRPC(b, size, storeExecutor{}) })
		b.Run(fmt.Sprintf("%dMiB/grpc-cpu", size>>20), func(b *testing.B) { benchGRPC(b, size, exec.NewCPU()) })
		b.Run(fmt.Sprintf("%dMiB/tcp", size>>20), func(b *testing.B) { benchTCP(b, size) })
	}
}

func benchGRPC(b *testing.B, size int, e exec.Executor) {
	ctx := context.Background()
	_, c := startTCP(b, e)
	m := newMLP(b, tensor.Float32, 8, 20, 16, 4)
	s, err := c.Open(ctx, firstSpec(b, m))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	v := tensor.New(tensor.WithShape(size/4), tensor.WithBacking(make([]float32, size/4)))
	for i := range v.Float32s() {
		v.Float32s()[i] = float32(i)
	}
	round := func() {
		if err := s.Put(ctx, "t", v); err != nil {
			b.Fatal(err)
		}
		got, err := s.Get(ctx, "t")
		if err != nil {
			b.Fatal(err)
		}
		if n := got["t"].Shape().TotalSize(); n != size/4 {
			b.Fatalf("got %d elements", n)
		}
	}
	// Warm up: the first rounds fault in the fresh memory that the
	// received tensors get (on a VM that can cost more than the copy), and
	// the raw TCP baseline reuses buffers that are warm from its start.
	for i := 0; i < warmRounds; i++ {
		round()
	}
	b.SetBytes(2 * int64(size))
	b.ResetTimer()
	cpu0 := cpuTime()
	defer reportCPU(b, cpu0)
	for i := 0; i < b.N; i++ {
		round()
	}
}

// warmRounds is how many untimed rounds each transfer benchmark runs
// first.
const warmRounds = 6

func firstSpec(b testing.TB, m *mlp) exec.SessionSpec {
	lay, err := exec.NewLayout(m.ir, m.parts(2), m.loss, m.data)
	if err != nil {
		b.Fatal(err)
	}
	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0)
	return spec
}

// benchTCP is the baseline: the peer reads all size bytes (io.ReadFull
// into its buffer), then writes them back.
func benchTCP(b *testing.B, size int) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer lis.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := lis.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				return
			}
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	out, back := make([]byte, size), make([]byte, size)
	for i := range out {
		out[i] = byte(i)
	}
	for i := 0; i < warmRounds; i++ {
		if _, err := conn.Write(out); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, back); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(2 * int64(size))
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(out); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, back); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	conn.Close()
	<-done
}

// BenchmarkStep is one training step of a 784-512-256-10 float32 MLP on
// batches of 256 in two micro-batches, cut in two parts by the trainer.
func BenchmarkStep(b *testing.B) {
	b.Run("inprocess", func(b *testing.B) {
		benchStep(b, exec.NewCPU(), exec.NewCPU())
	})
	b.Run("grpc", func(b *testing.B) {
		_, c1 := startTCP(b, exec.NewCPU())
		_, c2 := startTCP(b, exec.NewCPU())
		benchStep(b, c1, c2)
	})
}

func benchStep(b *testing.B, execs ...exec.Executor) {
	ctx := context.Background()
	m := newMLP(b, tensor.Float32, 256, 784, 512, 256, 10)
	tr, err := rookery.NewTrainer(ctx, m.g, m.lossN, m.learn, m.inputs,
		rookery.WithExecutors(execs...), rookery.WithMicroBatches(2), rookery.WithSolver(exec.SGD(0.01, 0.9)),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(1)))
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	feeds := map[*gorgonia.Node]*tensor.Dense{m.inputs[0]: m.feeds[m.data[0]], m.inputs[1]: m.feeds[m.data[1]]}
	if _, err := tr.Step(ctx, feeds); err != nil { // builds the second micro-batch's program
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Step(ctx, feeds); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu0)
}

// cpuTime is the CPU time this process has used, user and system. The
// providers run in this process too, so it counts their work as well.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU milliseconds per iteration since cpu0: unlike
// the wall time, it does not grow when other programs share the machine.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
}

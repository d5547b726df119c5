package partition_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/synth"
	"github.com/rookery-ml/rookery/partition"
)

// benchGraph builds a graph of about n nodes of a kind: a deep MLP (width
// 1024, batch 32), a residual network (width 256, batch 32) or a random
// layered DAG (seed 1). It keeps the last graph it built, and only that
// one, so that consecutive cases share it and the garbage collector does
// not keep marking graphs no case uses any more.
func benchGraph(b *testing.B, kind string, n int) *graph.Graph {
	b.Helper()
	key := fmt.Sprint(kind, n)
	benchMu.Lock()
	defer benchMu.Unlock()
	if benchKey == key {
		return benchLast
	}
	benchKey, benchLast = "", nil
	runtime.GC()
	var g *graph.Graph
	var err error
	switch kind {
	case "mlp":
		g, err = synth.MLP(max(1, (n-1)/5), 1024, 32)
	case "resnet":
		g, err = synth.ResNet(max(1, n*2/21), 256, 32)
	case "random-dag":
		g, err = synth.RandomDAG(n, 1, 64, 16)
	}
	if err != nil {
		b.Fatal(err)
	}
	benchKey, benchLast = key, g
	runtime.GC()
	return g
}

var (
	benchMu   sync.Mutex
	benchKey  string
	benchLast *graph.Graph
)

// BenchmarkSplit splits deep MLP chains, residual networks and random
// layered DAGs of 1k, 100k and 1M nodes into 2, 4, 16 and 64 equal parts
// and reports, besides the time, the plan's imbalance, the bytes it sends,
// the bytes the baseline (the graph's order cut into chunks by cost) sends
// for the same request, their ratio, and the processor time per split
// (all threads; a steadier figure than ns/op on a shared machine). The big
// cases take seconds each
// (graph building is not timed); run them with -benchtime=1x:
//
//	go test ./partition -run XXX -bench Split -benchtime=1x
func BenchmarkSplit(b *testing.B) {
	for _, kind := range []string{"mlp", "resnet", "random-dag"} {
		for _, n := range []int{1_000, 100_000, 1_000_000} {
			for _, k := range []int{2, 4, 16, 64} {
				b.Run(fmt.Sprintf("%s/n=%d/k=%d", kind, n, k), func(b *testing.B) {
					g := benchGraph(b, kind, n)
					b.ReportAllocs()
					b.ResetTimer()
					cpu0 := cpuTime()
					var plan *partition.Plan
					var err error
					for i := 0; i < b.N; i++ {
						plan, err = partition.Split(g, k)
					}
					cpu := cpuTime() - cpu0
					b.StopTimer()
					if errors.Is(err, partition.ErrInfeasible) {
						b.Skip(err)
					}
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(g.Len()), "nodes")
					b.ReportMetric(plan.Imbalance(), "imbalance")
					b.ReportMetric(float64(plan.CutBytes()), "cut-bytes")
					b.ReportMetric(float64(plan.BaselineCutBytes), "baseline-bytes")
					b.ReportMetric(float64(plan.CutBytes())/float64(max(plan.BaselineCutBytes, 1)), "cut/baseline")
					b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
				})
			}
		}
	}
}

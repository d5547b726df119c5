package guard_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
)

// BenchmarkStep measures one training step of a float64 MLP
// (64×256→256→256→10, Adam, 2 parts, 2 micro-batches) without protection,
// with a snapshot every N steps, and with redundancy 2, on in-process
// executors ("local") and on providers over loopback gRPC ("loopback").
// Compare the sub-benchmarks of one run:
//
//	go test -run '^$' -bench BenchmarkStep ./exec/guard
//
// With r = 2 on in-process executors both replicas share this machine's
// cores, so the figure counts the doubled work; on separate providers
// the replicas run at the same time and what remains is the comparison
// and the extra transfers.
func BenchmarkStep(b *testing.B) {
	j := newJobBatch(b, 2, 1, 64, 256, 256, 256, 10)
	for _, where := range []string{"local", "loopback"} {
		execs := func(n int) []exec.Executor {
			out := make([]exec.Executor, n)
			for i := range out {
				if where == "local" {
					out[i] = exec.NewCPU()
				} else {
					_, c := provider(b)
					out[i] = c
				}
			}
			return out
		}
		b.Run(where+"/none", func(b *testing.B) { j.bench(b, execs(2)) })
		for _, n := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("%s/snapshot-every-%d", where, n), func(b *testing.B) {
				g, err := guard.New(guard.WithSnapshotEvery(n))
				if err != nil {
					b.Fatal(err)
				}
				e := execs(2)
				j.bench(b, []exec.Executor{g.Executor(e[0]), g.Executor(e[1])})
			})
		}
		b.Run(where+"/redundancy-2", func(b *testing.B) {
			e := execs(4)
			g, err := guard.New(guard.WithRedundancy(2))
			if err != nil {
				b.Fatal(err)
			}
			j.bench(b, []exec.Executor{g.Executor(e[0], e[2]), g.Executor(e[1], e[3])})
		})
	}
}

func (j *job) bench(b *testing.B, execs []exec.Executor) {
	ctx := context.Background()
	p, err := exec.NewPipeline(ctx, j.ir, j.loss, []int64{j.x, j.y}, j.parts, execs, exec.WithMicroBatches(j.micro), exec.WithSolver(j.cfg))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	// Warm up: build every micro-batch's program.
	if _, err := p.Step(ctx, j.batch[0]); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := p.Step(ctx, j.batch[0]); err != nil {
			b.Fatal(err)
		}
	}
}

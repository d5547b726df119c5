package partition_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/synth"
	"github.com/rookery-ml/rookery/partition"
)

func mustSynth(t *testing.T, spec string) *graph.Graph {
	t.Helper()
	g, err := synth.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestChooseLayout(t *testing.T) {
	const mbit = 1e6 / 8
	fastRequester := partition.WithRequester(1e12)
	mem := func(n int, b int64) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = b
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		spec   string
		n      int
		opts   []partition.LayoutOption
		k, r   int
		weight []float64 // row weights of the pick, when checked
	}{
		// A small model at a large batch: compute splits by rows and the
		// gradients are cheap to sum, so every executor is a replica.
		{name: "small", spec: "mlp:layers=4,width=256,batch=1024", n: 4, k: 1, r: 4},
		// At a batch of 32 the sum of the gradients costs more than the
		// rows save: one executor.
		{name: "small batch", spec: "mlp:layers=4,width=256,batch=32", n: 4, k: 1, r: 1},
		// With a requester that is no limit, every executor of eight is a
		// replica; through a requester of 1 GB/s the 2·r copies of the
		// gradients it carries stop paying at four.
		{name: "small 8", spec: "classifier:batch=256", n: 8, opts: []partition.LayoutOption{partition.WithLayoutMicroBatches(4), fastRequester}, k: 1, r: 8},
		{name: "small 8 requester", spec: "classifier:batch=256", n: 8, opts: []partition.LayoutOption{partition.WithLayoutMicroBatches(4), partition.WithRequester(1e9)}, k: 1, r: 4},
		// Parameters at four times their bytes (16.8 MB) do not fit one
		// executor's 16 MB: the model needs two parts, and the other two
		// executors replicate them.
		{name: "memory", spec: "mlp:layers=8,width=256,batch=256", n: 4,
			opts: []partition.LayoutOption{partition.WithMemory(mem(4, 16e6)...), partition.WithLayoutMicroBatches(4), fastRequester}, k: 2, r: 2},
		{name: "memory known", spec: "mlp:layers=8,width=256,batch=256", n: 4,
			opts: []partition.LayoutOption{partition.WithMemory(mem(4, 64e6)...), partition.WithLayoutMicroBatches(4), fastRequester}, k: 1, r: 4},
		// Through the default requester, four replicas' gradients cost more
		// than four pipeline stages' bubble and activations.
		{name: "requester", spec: "mlp:layers=8,width=256,batch=256", n: 4,
			opts: []partition.LayoutOption{partition.WithMemory(mem(4, 64e6)...), partition.WithLayoutMicroBatches(4)}, k: 4, r: 1},
		// Behind 20 Mbit/s links the gradient sum costs more than the
		// rows it saves: one executor alone.
		{name: "slow link", spec: "mlp:layers=4,width=256,batch=1024", n: 4,
			opts: []partition.LayoutOption{partition.WithLink(20*mbit, 50*time.Millisecond)}, k: 1, r: 1},
		{name: "fast link", spec: "mlp:layers=4,width=256,batch=1024", n: 4,
			opts: []partition.LayoutOption{partition.WithLink(1000*mbit, time.Millisecond)}, k: 1, r: 4},
		// The same eight executors summing in a ring pay no requester:
		// every executor is a replica again.
		{name: "small 8 ring", spec: "classifier:batch=256", n: 8, opts: []partition.LayoutOption{partition.WithLayoutMicroBatches(4), partition.WithRequester(1e9), partition.WithRing(1)}, k: 1, r: 8},
		// A ring of members that move 0.1 byte per FLOP of speed is worse
		// than the default requester at four replicas: parts instead.
		{name: "slow ring", spec: "mlp:layers=8,width=256,batch=256", n: 4,
			opts: []partition.LayoutOption{partition.WithMemory(mem(4, 64e6)...), partition.WithLayoutMicroBatches(4), partition.WithRing(1e-3)}, k: 4, r: 1},
		// Executors of speeds 2, 1, 1: replicas take rows in proportion.
		{name: "speeds", spec: "mlp:layers=4,width=256,batch=1024", n: 3,
			opts: []partition.LayoutOption{partition.WithSpeeds(1e10, 2e10, 1e10)}, k: 1, r: 3, weight: []float64{1.5, 0.75, 0.75}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := mustSynth(t, tc.spec)
			l, err := partition.ChooseLayout(g, tc.n, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			c := l.Chosen()
			for _, x := range l.Candidates {
				t.Logf("k=%d r=%d step %.4fs (compute %.4f bubble %.4f transfer %.4f reduce %.4f) %v", x.K, x.R, x.Step, x.Compute, x.Bubble, x.Transfer, x.Reduce, x.Err)
			}
			if c.K != tc.k || c.R != tc.r {
				t.Errorf("got k=%d r=%d, want k=%d r=%d", c.K, c.R, tc.k, tc.r)
			}
			if tc.weight != nil && !reflect.DeepEqual(c.RowWeights, tc.weight) {
				t.Errorf("got row weights %v, want %v", c.RowWeights, tc.weight)
			}
			again, _ := partition.ChooseLayout(g, tc.n, tc.opts...)
			if again.Pick != l.Pick || again.Chosen().Step != c.Step {
				t.Errorf("not deterministic: %+v then %+v", c, again.Chosen())
			}
		})
	}
}

// TestRingReduce: with WithRing, a candidate's reduce is its slowest
// member's 2·(r−1)/r of the parameter bytes at the lesser of its link and
// its ring rate, plus 2·(r−1) one-way latencies, where that is cheaper
// than the requester; else the requester's.
func TestRingReduce(t *testing.T) {
	g := mustSynth(t, "mlp:layers=4,width=256,batch=1024")
	const bpf, bw, lat = 2e-3, 5e8, time.Millisecond
	speeds := []float64{2e10, 1e10, 1e10, 4e10}
	opts := []partition.LayoutOption{partition.WithSpeeds(speeds...), partition.WithLink(bw, lat), partition.WithFixed(1, 4)}
	l, err := partition.ChooseLayout(g, 4, append(opts, partition.WithRing(bpf), partition.WithRequester(1e6))...)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Chosen()
	if !c.Ring {
		t.Errorf("a ring of 2e7 bytes/s against a requester of 1e6: the requester picked")
	}
	p := float64(c.Plan.Parts[0].ParamBytes)
	// The slowest member, 1e10 FLOP/s, moves 2e7 bytes/s (less than the link).
	want := 2*3.0/4*p/(bpf*1e10) + 2*3*lat.Seconds()
	if d := c.Reduce - want; d > 1e-12 || d < -1e-12 {
		t.Errorf("reduce %v s, want %v", c.Reduce, want)
	}
	// Through a fast requester the requester's sum is cheaper.
	fast, err := partition.ChooseLayout(g, 4, append(opts, partition.WithRing(bpf), partition.WithRequester(1e12))...)
	if err != nil {
		t.Fatal(err)
	}
	noRing, err := partition.ChooseLayout(g, 4, append(opts, partition.WithRequester(1e12))...)
	if err != nil {
		t.Fatal(err)
	}
	if fc := fast.Chosen(); fc.Ring || fc.Reduce != noRing.Chosen().Reduce {
		t.Errorf("fast requester: ring %v, reduce %v; want the requester's %v", fc.Ring, fc.Reduce, noRing.Chosen().Reduce)
	}
}

func TestChooseLayoutReasons(t *testing.T) {
	g := mustSynth(t, "classifier")
	l, err := partition.ChooseLayout(g, 4, partition.WithLayoutMicroBatches(4))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range l.Candidates {
		// One 1024×1024 product is more than half the work.
		if c.K > 1 && !errors.Is(c.Err, partition.ErrInfeasible) {
			t.Errorf("k=%d r=%d: got %v, want ErrInfeasible", c.K, c.R, c.Err)
		}
		if c.K == 1 && c.Err != nil {
			t.Errorf("k=1 r=%d: %v", c.R, c.Err)
		}
	}
	if _, err := partition.ChooseLayout(g, 4, partition.WithMemory(1, 1, 1, 1)); !errors.Is(err, partition.ErrLayout) {
		t.Errorf("no memory: got %v, want ErrLayout", err)
	}
	for _, opts := range [][]partition.LayoutOption{
		{partition.WithSpeeds(1, 2)},
		{partition.WithSpeeds(1, 0, 1, 1)},
		{partition.WithLink(0, 0)},
		{partition.WithRequester(0)},
		{partition.WithLayoutMicroBatches(0)},
		{partition.WithRing(-1)},
	} {
		if _, err := partition.ChooseLayout(g, 4, opts...); !errors.Is(err, partition.ErrLayout) {
			t.Errorf("got %v, want ErrLayout", err)
		}
	}
	// 256 rows in 4 micro-batches make 64 units: 80 replicas cannot each get one.
	l, _ = partition.ChooseLayout(g, 80, partition.WithLayoutMicroBatches(4), partition.WithFixed(1, 80))
	if len(l.Candidates) != 1 || !errors.Is(l.Candidates[0].Err, partition.ErrLayout) {
		t.Errorf("80 replicas: got %+v, want one candidate with ErrLayout", l.Candidates)
	}
}

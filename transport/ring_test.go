package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// ringReplicas opens r replicas of m cut into k parts, each part on its
// own provider served on loopback TCP, with the given reduction.
func ringReplicas(t *testing.T, m exectest.Model, r, k, micro int, weights []float64, cfg exec.SolverConfig, red exec.Reduction, extra ...exec.PipelineOption) *exec.Replicas {
	t.Helper()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	execs := make([][]exec.Executor, r)
	for i := range execs {
		for range k {
			_, c := startTCP(t, exec.NewCPU())
			execs[i] = append(execs[i], c)
		}
	}
	opts := []exec.PipelineOption{exec.WithMicroBatches(micro), exec.WithSolver(cfg), exec.WithReduction(red)}
	if weights != nil {
		opts = append(opts, exec.WithRowWeights(weights...))
	}
	opts = append(opts, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs, err := exec.NewReplicas(ctx, ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, k), execs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return rs
}

// requireTrained fails unless the losses and parameters are within tol
// (relative) of the wanted ones.
func requireTrained(t *testing.T, tol float64, gotLoss, wantLoss []float64, gotP, wantP []*tensor.Dense) {
	t.Helper()
	for s := range wantLoss {
		if d := math.Abs(gotLoss[s]-wantLoss[s]) / math.Abs(wantLoss[s]); !(d <= tol) {
			t.Errorf("step %d: loss %v, want %v (rel %.3g)", s, gotLoss[s], wantLoss[s], d)
		}
	}
	for i := range wantP {
		if d := exectest.MaxRelDiff(gotP[i], wantP[i]); !(d <= tol) {
			t.Errorf("parameter %d differs by %.3g relative", i, d)
		}
	}
}

// TestRingReplicasEqualOneProcess: replicas on providers that sum their
// gradients in rings between themselves train the model as one process
// does on the whole mini-batch (float64: 1e-9, float32: 1e-4), with equal
// and uneven row shares, and agree to the bit after every step; every
// part with parameters is summed in a ring.
func TestRingReplicasEqualOneProcess(t *testing.T) {
	const steps, batch = 3, 24
	builders := []struct {
		name  string
		build func(tensor.Dtype) exectest.Model
		cfg   exec.SolverConfig
	}{
		{"mlp", func(dt tensor.Dtype) exectest.Model { return exectest.MLP(dt, batch, 20, 16, 10) }, exec.SGD(0.05, 0.9)},
		{"cnn", func(dt tensor.Dtype) exectest.Model { return exectest.CNN(dt, batch) }, exec.Adam(0.005)},
		{"residual", func(dt tensor.Dtype) exectest.Model { return exectest.Residual(dt, batch) }, exec.SGD(0.02, 0.9)},
	}
	uneven := []float64{1, 2.5, 0.7, 4}
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		tol := 1e-9
		if dt == tensor.Float32 {
			tol = 1e-4
		}
		for _, b := range builders {
			wantLoss, wantParams := exectest.Reference(t, b.build(dt), b.cfg, steps, 7)
			for r := 2; r <= 4; r++ {
				for k := 1; k <= 3; k++ {
					for _, micro := range []int{1, 2, 4} {
						for _, w := range [][]float64{nil, uneven[:r]} {
							if testing.Short() && (micro == 2 || k == 2) {
								continue
							}
							if dt == tensor.Float32 && (w != nil || micro == 2 || k == 3) {
								continue // float32 runs a part of the matrix
							}
							t.Run(fmt.Sprintf("%s/%v/r=%d/k=%d/M=%d/weighted=%v", b.name, dt, r, k, micro, w != nil), func(t *testing.T) {
								m := b.build(dt)
								rs := ringReplicas(t, m, r, k, micro, w, b.cfg, exec.ReduceRing)
								gotLoss, gotParams := exectest.TrainReplicas(t, m, rs, steps, 7)
								requireTrained(t, tol, gotLoss, wantLoss, gotParams, wantParams)
								st := rs.Stats()
								if st.RingParts == 0 || st.ShardedParts != st.RingParts || st.RingBytes <= 0 || st.Reduce <= 0 {
									t.Errorf("stats %+v: want parts summed in rings that shard the update, with bytes and a reduce time", st)
								}
							})
						}
					}
				}
			}
		}
	}
}

// TestRingMatchesRequesterReduction: gradients whose chunks span several
// segments (a float32 MLP of 905,010 parameters: at r = 2 a chunk of
// 452,505 elements is two segments of at most 262,144) and cross the
// parameters' boundaries sum in the ring as through the requester, and
// each member sends 2(r−1)/r of the gradients' bytes.
func TestRingMatchesRequesterReduction(t *testing.T) {
	const steps = 3
	m := exectest.MLP(tensor.Float32, 32, 784, 700, 500, 10) // 905,010 parameters: chunks of several segments
	cfg := exec.SGD(0.01, 0.9)
	for _, r := range []int{2, 3} {
		t.Run(fmt.Sprintf("r=%d", r), func(t *testing.T) {
			ring := ringReplicas(t, m, r, 1, 1, nil, cfg, exec.ReduceRing)
			ringLoss, ringParams := exectest.TrainReplicas(t, m, ring, steps, 3)
			req := ringReplicas(t, m, r, 1, 1, nil, cfg, exec.ReduceRequester)
			reqLoss, reqParams := exectest.TrainReplicas(t, m, req, steps, 3)
			requireTrained(t, 1e-5, ringLoss, reqLoss, ringParams, reqParams)
			if st := req.Stats(); st.RingParts != 0 || st.RingBytes != 0 {
				t.Errorf("requester reduction: stats %+v, want no ring", st)
			}
			st := ring.Stats()
			// Every element is sent r−1 times in the reduce-scatter and
			// r−1 times in the all-gather, by the r members together.
			var n int64
			for _, p := range m.Learn {
				n += int64(p.Shape().TotalSize())
			}
			want := int64(steps) * 2 * int64(r-1) * n * 4
			if st.RingParts != 1 || st.RingBytes != want {
				t.Errorf("ring: %d parts, %d bytes sent, want 1 part and %d", st.RingParts, st.RingBytes, want)
			}
		})
	}
}

// TestRingAutoFallsBack: with ReduceAuto, replicas on in-process
// executors (which cannot join a ring) sum through the requester and say
// why; with ReduceRing they fail to open.
func TestRingAutoFallsBack(t *testing.T) {
	m := exectest.MLP(tensor.Float64, 8, 6, 5, 3)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	execs := [][]exec.Executor{{exec.NewCPU()}, {exec.NewCPU()}}
	ctx := context.Background()
	rs, err := exec.NewReplicas(ctx, ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 1), execs)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if rs.RingError() == nil || rs.Stats().RingParts != 0 {
		t.Errorf("auto on in-process executors: ring error %v, %d ring parts; want an error and none", rs.RingError(), rs.Stats().RingParts)
	}
	_, err = exec.NewReplicas(ctx, ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 1),
		[][]exec.Executor{{exec.NewCPU()}, {exec.NewCPU()}}, exec.WithReduction(exec.ReduceRing))
	if !errors.Is(err, exec.ErrSpec) {
		t.Errorf("ReduceRing on in-process executors: got %v, want ErrSpec", err)
	}
}

// TestRingPassRefusesStrangers: a RingPass that presents no key, a wrong
// key or an unknown session is refused before anything is read, and the
// ring still works afterwards.
func TestRingPassRefusesStrangers(t *testing.T) {
	m := exectest.MLP(tensor.Float64, 8, 6, 5, 3)
	rs := ringReplicas(t, m, 2, 1, 1, nil, exec.SGD(0.1, 0), exec.ReduceRing)
	sess, ok := transport.SessionID(rs.Pipelines()[1].Sessions()[0])
	if !ok {
		t.Fatal("not a remote session")
	}
	ep := rs.Pipelines()[1].Sessions()[0].(exec.RingSession).RingEndpoint()
	addr := ep[len(sess)+1:]
	cc, err := transport.ClientConn(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pc := rookeryv1.NewProviderClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, key, session string
	}{
		{"no key", "", sess},
		{"wrong key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", sess},
		{"not base64", "%%%", sess},
		{"unknown session", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "0123"},
	} {
		cctx := ctx
		if tc.key != "" {
			cctx = metadata.AppendToOutgoingContext(ctx, transport.RingKeyHeader, tc.key)
		}
		stream, err := pc.RingPass(cctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&rookeryv1.TensorFrame{Session: tc.session, Name: "ring", MicroBatch: 1})
		_, err = stream.CloseAndRecv()
		err = transport.FromStatus(ctx, "ring pass", err)
		if !errors.Is(err, transport.ErrPermissionDenied) && !errors.Is(err, transport.ErrUnauthenticated) {
			t.Errorf("%s: got %v, want a refusal", tc.name, err)
		}
	}
	exectest.TrainReplicas(t, m, rs, 2, 1)
}

// BenchmarkRingReduce measures the reduction of the 784-1024-1024-10
// float32 MLP at batch 256 across r replicas on loopback providers in this
// process, summed in a ring or through the requester: reduce-ms/step is
// the time from the slowest replica's backward to the sums in place.
func BenchmarkRingReduce(b *testing.B) {
	for _, red := range []exec.Reduction{exec.ReduceRing, exec.ReduceRequester} {
		for _, r := range []int{2, 4} {
			b.Run(fmt.Sprintf("%v/r=%d", red, r), func(b *testing.B) {
				m := exectest.MLP(tensor.Float32, 256, 784, 1024, 1024, 10)
				rs := benchReplicas(b, m, r, red)
				feeds := make(map[int64]*tensor.Dense)
				for n, v := range m.Batch(rand.New(rand.NewSource(1))) {
					feeds[int64(n.ID())] = v
				}
				ctx := context.Background()
				if _, err := rs.Step(ctx, feeds); err != nil {
					b.Fatal(err)
				}
				before := rs.Stats()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := rs.Step(ctx, feeds); err != nil {
						b.Fatal(err)
					}
				}
				st := rs.Stats()
				n := float64(st.Steps - before.Steps)
				b.ReportMetric((st.Reduce-before.Reduce).Seconds()*1000/n, "reduce-ms/step")
				b.ReportMetric((st.Compute+st.Reduce+st.Update-before.Compute-before.Reduce-before.Update).Seconds()*1000/n, "step-ms")
			})
		}
	}
}

// benchReplicas is ringReplicas for a benchmark: r one-part replicas on
// loopback providers.
func benchReplicas(b *testing.B, m exectest.Model, r int, red exec.Reduction) *exec.Replicas {
	b.Helper()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		b.Fatal(err)
	}
	execs := make([][]exec.Executor, r)
	for i := range execs {
		_, c := startTCP(b, exec.NewCPU())
		execs[i] = []exec.Executor{c}
	}
	rs, err := exec.NewReplicas(context.Background(), ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 1), execs,
		exec.WithSolver(exec.SGD(0.01, 0.9)), exec.WithReduction(red))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rs.Close() })
	return rs
}

// TestRingOverTLS: providers that serve TLS form a ring when they are
// given credentials that trust each other (WithPeerDialOptions); without,
// their clear-text dial fails, and ReduceAuto sums through the requester
// and says why. Both train the same model.
func TestRingOverTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srvCreds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	cliCreds := credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
	m := exectest.MLP(tensor.Float64, 8, 6, 5, 3)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	open := func(peer ...transport.DialOption) *exec.Replicas {
		execs, _ := tlsProviders(t, 2, cliCreds, transport.WithServerOptions(grpc.Creds(srvCreds)),
			transport.WithPeerDialOptions(append([]transport.DialOption{transport.WithDialTimeout(2 * time.Second)}, peer...)...))
		rs, err := exec.NewReplicas(context.Background(), ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 1), execs,
			exec.WithSolver(exec.SGD(0.1, 0.9)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		return rs
	}
	ring := open(transport.WithTransportCredentials(cliCreds))
	if err := ring.RingError(); err != nil || ring.Stats().RingParts != 1 {
		t.Fatalf("with peer credentials: ring error %v, %d ring parts", err, ring.Stats().RingParts)
	}
	clear := open()
	if clear.RingError() == nil || clear.Stats().RingParts != 0 {
		t.Fatalf("without peer credentials: ring error %v, %d ring parts; want an error and none", clear.RingError(), clear.Stats().RingParts)
	}
	ringLoss, ringP := exectest.TrainReplicas(t, m, ring, 3, 5)
	clearLoss, clearP := exectest.TrainReplicas(t, m, clear, 3, 5)
	requireTrained(t, 1e-12, ringLoss, clearLoss, ringP, clearP)
}

// plainExecutor opens sessions that offer no more than exec.Session, so
// that a ring round works on copies of the gradients (Get, then Put).
type plainExecutor struct{ e exec.Executor }

func (p plainExecutor) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := p.e.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return struct{ exec.Session }{s}, nil
}

// TestRingOnCopies: providers whose sessions do not lend their gradients
// in place (exec.GradAccessor) sum copies of them, to the same bits.
func TestRingOnCopies(t *testing.T) {
	m := exectest.MLP(tensor.Float32, 12, 20, 16, 10)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	open := func(wrap func(exec.Executor) exec.Executor) *exec.Replicas {
		var execs [][]exec.Executor
		for range 3 {
			_, c := startTCP(t, wrap(exec.NewCPU()))
			execs = append(execs, []exec.Executor{c})
		}
		rs, err := exec.NewReplicas(context.Background(), ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 1), execs,
			exec.WithSolver(exec.SGD(0.05, 0.9)), exec.WithReduction(exec.ReduceRing))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Close() })
		return rs
	}
	_, inPlace := exectest.TrainReplicas(t, m, open(func(e exec.Executor) exec.Executor { return e }), 3, 2)
	_, copies := exectest.TrainReplicas(t, m, open(func(e exec.Executor) exec.Executor { return plainExecutor{e} }), 3, 2)
	for i := range inPlace {
		if !exectest.SameBits(inPlace[i], copies[i]) {
			t.Errorf("parameter %d: summing copies differs from summing in place", i)
		}
	}
}

// TestShardedUpdateState: replicas whose rings shard the update train, for
// every solver kind, the model that replicas summing through the
// requester train (each with its own solver state), and after SyncState
// every replica holds the whole solver state, the same as theirs. A
// solver that clips by norm does not shard.
func TestShardedUpdateState(t *testing.T) {
	clip := exec.SGD(0.05, 0.9)
	clip.ClipNorm = 0.5
	step := exec.SGD(0.05, 0)
	step.Schedule, step.StepEvery, step.StepGamma = exec.ScheduleStep, 2, 0.5
	for _, cfg := range []exec.SolverConfig{exec.SGD(0.05, 0.9), step, exec.Nesterov(0.05, 0.9), exec.Adam(0.01), exec.AdamW(0.01, 0.01), exec.RMSProp(0.01), clip} {
		t.Run(fmt.Sprintf("%v/clip=%v", cfg.Kind, cfg.ClipNorm), func(t *testing.T) {
			m := exectest.MLP(tensor.Float64, 12, 20, 16, 10)
			sharded := ringReplicas(t, m, 3, 2, 2, []float64{1, 2, 1}, cfg, exec.ReduceRing)
			plain := ringReplicas(t, m, 3, 2, 2, []float64{1, 2, 1}, cfg, exec.ReduceRequester)
			gotLoss, gotP := exectest.TrainReplicas(t, m, sharded, 4, 9)
			wantLoss, wantP := exectest.TrainReplicas(t, m, plain, 4, 9)
			requireTrained(t, 1e-12, gotLoss, wantLoss, gotP, wantP)
			st := sharded.Stats()
			if wantShard := cfg.ClipNorm == 0; (st.ShardedParts > 0) != wantShard || st.RingParts == 0 {
				t.Fatalf("stats %+v: want sharded rings: %v", st, wantShard)
			}
			ctx := context.Background()
			if err := sharded.SyncState(ctx); err != nil {
				t.Fatal(err)
			}
			slots, err := exec.NewSolver(cfg, 0)
			if err != nil {
				t.Fatal(err)
			}
			for j, spec := range plain.Pipelines()[0].Layout().Specs {
				var names []string
				for _, id := range spec.Graph.Learnables() {
					for _, slot := range slots.Slots() {
						names = append(names, exec.StateName(id, slot))
					}
				}
				if len(names) == 0 {
					continue
				}
				want, err := plain.Pipelines()[0].Sessions()[j].Get(ctx, names...)
				if err != nil {
					t.Fatal(err)
				}
				for i, p := range sharded.Pipelines() {
					got, err := p.Sessions()[j].Get(ctx, names...)
					if err != nil {
						t.Fatal(err)
					}
					for _, name := range names {
						if d := exectest.MaxRelDiff(got[name], want[name]); d > 1e-12 {
							t.Errorf("replica %d, part %d: state %s differs by %.3g", i, j, name, d)
						}
					}
				}
			}
		})
	}
}

// TestRingNative: replicas on providers that run the native executor
// (exec/native, what `rookery provider` runs on the CPU) sum in rings that
// shard the update, in the executor's own buffers, and train the model
// one process does.
func TestRingNative(t *testing.T) {
	const steps = 3
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		tol := 1e-9
		if dt == tensor.Float32 {
			tol = 1e-4
		}
		for _, cfg := range []exec.SolverConfig{exec.SGD(0.05, 0.9), exec.Adam(0.005)} {
			t.Run(fmt.Sprintf("%v/%v", dt, cfg.Kind), func(t *testing.T) {
				m := exectest.MLP(dt, 24, 20, 16, 10)
				wantLoss, wantP := exectest.Reference(t, exectest.MLP(dt, 24, 20, 16, 10), cfg, steps, 7)
				ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
				if err != nil {
					t.Fatal(err)
				}
				var execs [][]exec.Executor
				for range 3 {
					var row []exec.Executor
					for range 2 {
						_, c := startTCP(t, native.New())
						row = append(row, c)
					}
					execs = append(execs, row)
				}
				rs, err := exec.NewReplicas(context.Background(), ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), exectest.Chunks(ir, 2), execs,
					exec.WithSolver(cfg), exec.WithMicroBatches(2), exec.WithRowWeights(1, 2, 1))
				if err != nil {
					t.Fatal(err)
				}
				defer rs.Close()
				gotLoss, gotP := exectest.TrainReplicas(t, m, rs, steps, 7)
				requireTrained(t, tol, gotLoss, wantLoss, gotP, wantP)
				if st := rs.Stats(); st.ShardedParts == 0 || st.ShardedParts != st.RingParts {
					t.Errorf("stats %+v: want every ring to shard the update", st)
				}
			})
		}
	}
}

// TestShardedRebalance: replicas whose rings shard the update move rows
// to the replica a clock says is faster; the state carried over to the
// reopened replicas is whole (gathered first), and the model trained is
// the one process's.
func TestShardedRebalance(t *testing.T) {
	const steps = 5
	cfg := exec.Adam(0.01)
	m := exectest.MLP(tensor.Float64, 24, 20, 16, 10)
	wantLoss, wantP := exectest.Reference(t, exectest.MLP(tensor.Float64, 24, 20, 16, 10), cfg, steps, 7)
	// Replica 0's clock runs at a third of the others': it looks three
	// times as fast.
	var mu sync.Mutex
	ticks := map[int]time.Duration{}
	clock := func(i int) time.Time {
		mu.Lock()
		defer mu.Unlock()
		d := 3 * time.Millisecond
		if i == 0 {
			d = time.Millisecond
		}
		ticks[i] += d
		return time.Unix(0, 0).Add(ticks[i])
	}
	rs := ringReplicas(t, m, 3, 1, 1, nil, cfg, exec.ReduceRing, exec.WithRebalance(1, 0.1), exec.WithClock(clock))
	gotLoss, gotP := exectest.TrainReplicas(t, m, rs, steps, 7)
	st := rs.Stats()
	if st.Rebalances == 0 || st.ShardedParts != 1 {
		t.Fatalf("stats %+v: want rebalanced rows and a sharded ring", st)
	}
	requireTrained(t, 1e-9, gotLoss, wantLoss, gotP, wantP)
}

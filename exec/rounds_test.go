package exec_test

import (
	"context"
	"errors"
	"math/rand"
	"slices"
	"sync"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
)

// roundsData is a data set of n rows for m's data inputs (x, y).
func roundsData(m model, n int, seed int64) map[int64]*tensor.Dense {
	rng := rand.New(rand.NewSource(seed))
	x, y := m.Data[0], m.Data[1]
	return map[int64]*tensor.Dense{
		int64(x.ID()): randDense(rng, m.DType, 1, n, x.Shape()[1]),
		int64(y.ID()): oneHot(rng, m.DType, n, y.Shape()[1]),
	}
}

func openRounds(t testing.TB, m model, data map[int64]*tensor.Dense, execs []exec.Executor, opts ...exec.RoundsOption) *exec.Rounds {
	t.Helper()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := exec.NewRounds(context.Background(), ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), data, execs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return rs
}

func cpus(n int) []exec.Executor {
	out := make([]exec.Executor, n)
	for i := range out {
		out[i] = exec.NewCPU()
	}
	return out
}

// rowsOf gathers rows idx of t.
func rowsOf(t *tensor.Dense, idx []int) *tensor.Dense {
	w := t.Shape()[1]
	src := t.Data().([]float64)
	out := make([]float64, 0, len(idx)*w)
	for _, r := range idx {
		out = append(out, src[r*w:(r+1)*w]...)
	}
	return tensor.New(tensor.WithShape(len(idx), w), tensor.WithBacking(out))
}

// TestRoundsOneStepEqualsSyncReplicas: with one local step of plain SGD
// per round, outer SGD at learning rate 1 and lossless deltas, local
// rounds train what synchronous replicas train on the same rows.
func TestRoundsOneStepEqualsSyncReplicas(t *testing.T) {
	const b, r, n, rounds, seed = 4, 2, 40, 12, 7
	local := mlpModel(tensor.Float64, b, 6, 5, 3)
	data := roundsData(local, n, 3)
	rs := openRounds(t, local, data, cpus(r),
		exec.WithRoundSteps(1), exec.WithInnerSolver(exec.SGD(0.1, 0)), exec.WithOuterSolver(exec.SGD(1, 0)),
		exec.WithDeltaCodec(compress.Float64), exec.WithRoundSeed(seed), exec.WithRoundDeadline(0), exec.WithAdaptiveSteps(false))

	sync := mlpModel(tensor.Float64, r*b, 6, 5, 3)
	rr := openReplicas(t, sync, r, 1, 1, nil, exec.SGD(0.1, 0), nil)
	perm := exec.StreamRows(seed, n, 0, n)
	shards := make([][]int, r)
	for j, row := range perm {
		shards[j%r] = append(shards[j%r], row)
	}
	ctx := context.Background()
	for k := 0; k < rounds; k++ {
		st, err := rs.Round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var idx []int
		for i := range r {
			for _, p := range exec.StreamRows(seed+1+uint64(i), len(shards[i]), int64(k*b), b) {
				idx = append(idx, shards[i][p])
			}
		}
		feeds := make(map[int64]*tensor.Dense)
		for j, node := range local.Data {
			feeds[int64(sync.Data[j].ID())] = rowsOf(data[int64(node.ID())], idx)
		}
		l, err := rr.rs.Step(ctx, feeds)
		if err != nil {
			t.Fatal(err)
		}
		if d := st.Loss - l; d > 1e-12 || d < -1e-12 {
			t.Fatalf("round %d: loss %v, synchronous replicas %v", k, st.Loss, l)
		}
		if st.Replicas != r || st.Rows != r*b {
			t.Fatalf("round %d: %d replicas, %d rows", k, st.Replicas, st.Rows)
		}
	}
	got, err := rs.Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := rr.rs.Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for j, node := range local.Learn {
		g, w := got[int64(node.ID())], want[int64(sync.Learn[j].ID())]
		if d := maxRelDiff(g, w); d > 1e-9 {
			t.Fatalf("parameter %s differs by %g", node.Name(), d)
		}
	}
}

// TestRoundsTrain: the default rounds (int8 deltas with error feedback,
// Nesterov outer step) bring the loss down, and the replicas hold the
// global parameters as sent after each update.
func TestRoundsTrain(t *testing.T) {
	for _, c := range []compress.Codec{compress.Int8, compress.Float16, compress.Float32} {
		t.Run(c.String(), func(t *testing.T) {
			m := mlpModel(tensor.Float32, 8, 6, 8, 3)
			data := roundsData(m, 96, 5)
			rs := openRounds(t, m, data, cpus(3), exec.WithRoundSteps(5), exec.WithInnerSolver(exec.SGD(0.05, 0.9)),
				exec.WithDeltaCodec(c), exec.WithRoundDeadline(0), exec.WithAdaptiveSteps(false))
			ctx := context.Background()
			var first, last float64
			var up int64
			for k := 0; k < 30; k++ {
				st, err := rs.Round(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if k == 0 {
					first = st.Loss
				}
				last = st.Loss
				if k > 0 {
					up += st.BytesUp
				}
			}
			if !(last < 0.7*first) {
				t.Fatalf("loss %v after 30 rounds, %v in the first", last, first)
			}
			if testing.Verbose() {
				t.Logf("loss %v after 30 rounds, %v in the first", last, first)
			}
			// The next round puts the last update on every replica: their
			// anchors then equal the requester's shared parameters.
			shared := rs.Shared()
			if _, err := rs.Round(ctx); err != nil {
				t.Fatal(err)
			}
			for i, s := range rs.Sessions() {
				for id, want := range shared {
					got, err := s.Get(ctx, exec.AnchorName(id))
					if err != nil {
						t.Fatal(err)
					}
					if !exectest.SameBits(got[exec.AnchorName(id)], want) {
						t.Fatalf("replica %d's anchor of %d differs from the shared parameters", i, id)
					}
				}
			}
			params := 6*8 + 8 + 8*3 + 3
			per := up / 29 / 3
			if want := int64(compress.Size(c, params)); per < want || per > want+8 {
				t.Fatalf("%d bytes up per replica per round, want %d (+ packing)", per, want)
			}
		})
	}
}

// failing is an executor whose sessions fail their LocalSteps from the
// n-th call on, or block in it until cancelled when block is set.
type failing struct {
	exec.Executor
	after int
	block bool
}

type failingSession struct {
	exec.Session
	f     *failing
	calls int
	spec  exec.SessionSpec
}

func (f *failing) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := f.Executor.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &failingSession{Session: s, f: f, spec: spec}, nil
}

var errVanished = errors.New("provider vanished")

func (s *failingSession) LocalSteps(ctx context.Context, req exec.LocalRequest) (exec.LocalResult, error) {
	s.calls++
	if s.calls >= s.f.after {
		if s.f.block {
			<-ctx.Done()
			return exec.LocalResult{}, ctx.Err()
		}
		return exec.LocalResult{}, errVanished
	}
	return exec.LocalSteps(ctx, s.Session, &s.spec, req)
}

// TestRoundsLeaveAndJoin: a replica whose provider fails leaves without
// failing the round; its replacement joins at a later round boundary and
// trains on its shard.
func TestRoundsLeaveAndJoin(t *testing.T) {
	m := mlpModel(tensor.Float64, 4, 6, 5, 3)
	data := roundsData(m, 48, 1)
	var mu sync.Mutex
	var events []exec.RoundEvent
	ready := make(chan exec.Executor, 1)
	execs := cpus(3)
	execs[1] = &failing{Executor: exec.NewCPU(), after: 3}
	rs := openRounds(t, m, data, execs, exec.WithRoundSteps(2), exec.WithRoundDeadline(0),
		exec.WithRoundEvents(func(e exec.RoundEvent) { mu.Lock(); events = append(events, e); mu.Unlock() }),
		exec.WithReplacements(func(ctx context.Context) (exec.Executor, error) {
			select {
			case ex := <-ready:
				return ex, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}))
	ctx := context.Background()
	var seen []int
	for k := 1; k <= 5; k++ {
		if k == 5 {
			ready <- exec.NewCPU()
			if err := rs.AwaitReplacements(ctx); err != nil {
				t.Fatal(err)
			}
		}
		st, err := rs.Round(ctx)
		if err != nil {
			t.Fatalf("round %d: %v", k, err)
		}
		seen = append(seen, st.Replicas)
		if (k == 3) != (st.Left == 1) || (k == 5) != (st.Joined == 1) {
			t.Fatalf("round %d: %d left, %d joined", k, st.Left, st.Joined)
		}
	}
	if !slices.Equal(seen, []int{3, 3, 2, 2, 3}) {
		t.Fatalf("replicas per round %v, want 3, 3, 2 after the failure, 2, 3 after the join", seen)
	}
	mu.Lock()
	defer mu.Unlock()
	var kinds []exec.EventKind
	for _, e := range events {
		kinds = append(kinds, e.Kind)
		if e.Replica != 1 {
			t.Fatalf("event %v names the wrong replica", e)
		}
	}
	if !slices.Equal(kinds, []exec.EventKind{exec.ReplicaLeft, exec.ReplicaJoined}) {
		t.Fatalf("events %v, want left then joined", events)
	}
	if !errors.Is(events[0].Err, errVanished) {
		t.Fatalf("leave event carries %v", events[0].Err)
	}
}

// TestRoundsDeadline: a replica that does not finish by the deadline is
// left out of the round and catches up at the next; the round does not
// wait for it.
func TestRoundsDeadline(t *testing.T) {
	m := mlpModel(tensor.Float64, 4, 6, 5, 3)
	data := roundsData(m, 48, 1)
	var events []exec.RoundEvent
	execs := cpus(3)
	execs[2] = &failing{Executor: exec.NewCPU(), after: 2, block: true}
	rs := openRounds(t, m, data, execs, exec.WithRoundSteps(2), exec.WithRoundDeadline(2),
		exec.WithRoundEvents(func(e exec.RoundEvent) { events = append(events, e) }))
	ctx := context.Background()
	for k := 1; k <= 3; k++ {
		st, err := rs.Round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 3
		if k >= 2 {
			want = 2
		}
		if st.Replicas != want || (k >= 2) != (st.Late == 1) {
			t.Fatalf("round %d: %d replicas, %d late", k, st.Replicas, st.Late)
		}
	}
	if len(events) != 2 || events[0].Kind != exec.ReplicaLate || events[0].Replica != 2 {
		t.Fatalf("events %v", events)
	}
	if rs.Active() != 3 {
		t.Fatalf("%d active replicas: a late one stays in the run", rs.Active())
	}
}

// TestRoundsNoReplica: a round that no replica finishes fails with
// ErrNoReplicas.
func TestRoundsNoReplica(t *testing.T) {
	m := mlpModel(tensor.Float64, 4, 6, 5, 3)
	data := roundsData(m, 16, 1)
	rs := openRounds(t, m, data, []exec.Executor{&failing{Executor: exec.NewCPU(), after: 1}})
	if _, err := rs.Round(context.Background()); !errors.Is(err, exec.ErrNoReplicas) {
		t.Fatalf("got %v, want ErrNoReplicas", err)
	}
}

// TestNewRoundsRefuses: bad set-ups give ErrSpec errors.
func TestNewRoundsRefuses(t *testing.T) {
	m := mlpModel(tensor.Float64, 4, 6, 5, 3)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := roundsData(m, 16, 1)
	for name, c := range map[string]struct {
		data  map[int64]*tensor.Dense
		execs int
		opts  []exec.RoundsOption
	}{
		"shards smaller than the batch": {data, 5, nil},
		"no executors":                  {data, 0, nil},
		"adam outer":                    {data, 2, []exec.RoundsOption{exec.WithOuterSolver(exec.Adam(0.01))}},
		"zero steps":                    {data, 2, []exec.RoundsOption{exec.WithRoundSteps(0)}},
		"deadline below 1":              {data, 2, []exec.RoundsOption{exec.WithRoundDeadline(0.5)}},
		"unknown codec":                 {data, 2, []exec.RoundsOption{exec.WithDeltaCodec(compress.Codec(99))}},
		"missing data":                  {map[int64]*tensor.Dense{}, 2, nil},
	} {
		_, err := exec.NewRounds(ctx, ir, int64(m.Loss.ID()), exec.NodeIDs(m.Data), c.data, cpus(c.execs), c.opts...)
		if !errors.Is(err, exec.ErrSpec) {
			t.Errorf("%s: got %v, want ErrSpec", name, err)
		}
	}
}

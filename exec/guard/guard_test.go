package guard_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/exec/guard/guardtest"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/partition"
)

// job is a float64 MLP cut into parts, with a fresh mini-batch per step
// drawn from a seeded source.
type job struct {
	ir    *graph.Graph
	loss  int64
	x, y  int64
	parts [][]int64
	learn []int64
	batch []map[int64]*tensor.Dense
	micro int
	cfg   exec.SolverConfig
}

func newJob(t testing.TB, k, steps int, sizes ...int) *job {
	t.Helper()
	return newJobBatch(t, k, steps, 8, sizes...)
}

func newJobBatch(t testing.TB, k, steps, batch int, sizes ...int) *job {
	t.Helper()
	rng := rand.New(rand.NewSource(3))
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, sizes[0]), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, sizes[len(sizes)-1]), gorgonia.WithName("y"))
	h := x
	var learn gorgonia.Nodes
	for i := 1; i < len(sizes); i++ {
		wv := tensor.New(tensor.WithShape(sizes[i-1], sizes[i]), tensor.WithBacking(normals(rng, sizes[i-1]*sizes[i], 0.4)))
		bv := tensor.New(tensor.WithShape(sizes[i]), tensor.WithBacking(normals(rng, sizes[i], 0.05)))
		w := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(sizes[i-1], sizes[i]), gorgonia.WithName(fmt.Sprint("w", i)), gorgonia.WithValue(wv))
		b := gorgonia.NewVector(g, tensor.Float64, gorgonia.WithShape(sizes[i]), gorgonia.WithName(fmt.Sprint("b", i)), gorgonia.WithValue(bv))
		learn = append(learn, w, b)
		h = gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		if i < len(sizes)-1 {
			h = gorgonia.Must(gorgonia.Tanh(h))
		}
	}
	lsm := gorgonia.Must(gorgonia.LogSoftMax(h))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(lsm, y))))))
	ir, err := graph.FromGorgonia(g, graph.Learnables(learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := partition.Split(ir, k)
	if err != nil {
		t.Fatal(err)
	}
	j := &job{ir: ir, loss: int64(loss.ID()), x: int64(x.ID()), y: int64(y.ID()), micro: 2, cfg: exec.Adam(0.05)}
	for _, p := range plan.Parts {
		j.parts = append(j.parts, p.Nodes)
	}
	for _, n := range learn {
		j.learn = append(j.learn, int64(n.ID()))
	}
	classes := sizes[len(sizes)-1]
	for range steps {
		xb := tensor.New(tensor.WithShape(batch, sizes[0]), tensor.WithBacking(normals(rng, batch*sizes[0], 1)))
		yb := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, classes))
		for i := range batch {
			yb.Float64s()[i*classes+rng.Intn(classes)] = 1
		}
		j.batch = append(j.batch, map[int64]*tensor.Dense{j.x: xb, j.y: yb})
	}
	return j
}

func normals(rng *rand.Rand, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = rng.NormFloat64() * scale
	}
	return out
}

// train runs every step of the job on execs and returns the parameters;
// onStep runs after each step.
func (j *job) train(ctx context.Context, execs []exec.Executor, onStep func(step int)) (map[int64]*tensor.Dense, error) {
	p, err := exec.NewPipeline(ctx, j.ir, j.loss, []int64{j.x, j.y}, j.parts, execs, exec.WithMicroBatches(j.micro), exec.WithSolver(j.cfg))
	if err != nil {
		return nil, err
	}
	defer p.Close()
	for s, b := range j.batch {
		if _, err := p.Step(ctx, b); err != nil {
			return nil, fmt.Errorf("step %d: %w", s, err)
		}
		if onStep != nil {
			onStep(s)
		}
	}
	return p.Params(ctx)
}

func cpus(n int) []exec.Executor {
	out := make([]exec.Executor, n)
	for i := range out {
		out[i] = guard.Named(fmt.Sprint("cpu", i), exec.NewCPU())
	}
	return out
}

// honest is the fault-free run.
func (j *job) honest(t testing.TB) map[int64]*tensor.Dense {
	t.Helper()
	p, err := j.train(context.Background(), cpus(len(j.parts)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// maxDiff is the largest element-wise difference between two runs'
// parameters.
func maxDiff(t testing.TB, got, want map[int64]*tensor.Dense) float64 {
	t.Helper()
	var m float64
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Fatalf("parameter %d missing", id)
		}
		for i, v := range w.Float64s() {
			m = math.Max(m, math.Abs(g.Float64s()[i]-v))
		}
	}
	return m
}

// recorder keeps the events.
type recorder struct {
	mu sync.Mutex
	ev []guard.Event
}

func (r *recorder) add(e guard.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev = append(r.ev, e)
}

func (r *recorder) of(k guard.EventKind) []guard.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []guard.Event
	for _, e := range r.ev {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func TestDyingExecutorReplacedBySpare(t *testing.T) {
	j := newJob(t, 2, 12, 6, 10, 4)
	want := j.honest(t)
	// 5 calls a step: two micro-batches forward and backward, then Step.
	for _, c := range []struct {
		every int
		after int
	}{{1, 5*4 + 1}, {5, 5*4 + 1}, {100, 5*4 + 1}, {5, 5*4 + 4}, {5, 5 * 4}} {
		every := c.every
		t.Run(fmt.Sprint("every", every, "/call", c.after+1), func(t *testing.T) {
			var rec recorder
			g, err := guard.New(guard.WithSpares(guard.Named("spare", exec.NewCPU())), guard.WithSnapshotEvery(every), guard.WithEvents(rec.add))
			if err != nil {
				t.Fatal(err)
			}
			// Part 1 dies during step 4: in its second call, its Step,
			// or its first call.
			execs := []exec.Executor{g.Executor(guard.Named("p0", exec.NewCPU())), g.Executor(guardtest.Dying("p1", exec.NewCPU(), c.after))}
			got, err := j.train(context.Background(), execs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(t, got, want); d != 0 {
				t.Errorf("parameters differ from the fault-free run by %g, want bit-identical", d)
			}
			rep := rec.of(guard.EventReplaced)
			if len(rep) != 1 || rep[0].Provider != "p1" || rep[0].Replacement != "spare" || rep[0].Step != 4 {
				t.Errorf("replacements %v, want p1 -> spare at step 4", rep)
			}
			if n := len(rec.of(guard.EventSnapshot)); n != 2*(12/every) {
				t.Errorf("%d snapshots, want %d", n, 2*(12/every))
			}
		})
	}
}

func TestHangingExecutorDetectedByCallTimeout(t *testing.T) {
	j := newJob(t, 2, 6, 6, 10, 4)
	want := j.honest(t)
	var rec recorder
	g, err := guard.New(guard.WithSpares(guard.Named("spare", exec.NewCPU())), guard.WithCallTimeout(time.Second), guard.WithEvents(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	execs := []exec.Executor{g.Executor(guardtest.Hanging("stuck", exec.NewCPU(), 9)), g.Executor(exec.NewCPU())}
	got, err := j.train(context.Background(), execs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("parameters differ from the fault-free run by %g", d)
	}
	f := rec.of(guard.EventFault)
	if len(f) == 0 || f[0].Provider != "stuck" || !errors.Is(f[0].Err, context.DeadlineExceeded) {
		t.Errorf("faults %v, want the stuck executor's deadline", f)
	}
}

func TestFailsWithTypedErrorAfterBoundedReplacements(t *testing.T) {
	j := newJob(t, 2, 6, 6, 10, 4)
	g, err := guard.New(guard.WithMaxReplacements(2),
		guard.WithSpares(guardtest.Dying("s1", exec.NewCPU(), 0), guardtest.Dying("s2", exec.NewCPU(), 0), guard.Named("s3", exec.NewCPU())))
	if err != nil {
		t.Fatal(err)
	}
	execs := []exec.Executor{g.Executor(exec.NewCPU()), g.Executor(guardtest.Dying("p1", exec.NewCPU(), 5))}
	_, err = j.train(context.Background(), execs, nil)
	var fe *guard.FailedError
	if !errors.As(err, &fe) || !errors.Is(err, exec.ErrUnavailable) {
		t.Fatalf("err %v, want a *guard.FailedError matching exec.ErrUnavailable", err)
	}
	if fe.Part != 1 || fe.Attempts != 2 || !strings.Contains(fe.Last.Error(), "s2") {
		t.Errorf("got %+v, want part 1 after 2 attempts, the last on s2", fe)
	}
}

func TestCallerErrorsPassThrough(t *testing.T) {
	j := newJob(t, 1, 1, 6, 10, 4)
	var rec recorder
	g, err := guard.New(guard.WithSpares(exec.NewCPU()), guard.WithEvents(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	p, err := exec.NewPipeline(context.Background(), j.ir, j.loss, []int64{j.x, j.y}, j.parts, []exec.Executor{g.Executor(exec.NewCPU())})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s := p.Sessions()[0]
	_, err = s.Forward(context.Background(), 0, map[int64]*tensor.Dense{j.x: tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{1, 2}))})
	if !errors.Is(err, exec.ErrFeed) {
		t.Errorf("bad feed: %v, want exec.ErrFeed", err)
	}
	if err := s.Step(context.Background()); !errors.Is(err, exec.ErrOrder) {
		t.Errorf("step first: %v, want exec.ErrOrder", err)
	}
	if _, err := s.Get(context.Background(), "nothing"); !errors.Is(err, exec.ErrUnknownName) {
		t.Errorf("get: %v, want exec.ErrUnknownName", err)
	}
	if len(rec.ev) != 0 {
		t.Errorf("events %v, want none", rec.ev)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Step(context.Background()); !errors.Is(err, exec.ErrClosed) {
		t.Errorf("after close: %v, want exec.ErrClosed", err)
	}
}

func TestLiesCaughtWithinOneStepUnderRedundancy2(t *testing.T) {
	const lieFrom = 3 // the liar lies from step 3 on
	for _, lie := range []guardtest.Lie{guardtest.Noise, guardtest.FlipSign, guardtest.Stale, guardtest.BadStep} {
		for _, part := range []int{0, 1} {
			t.Run(fmt.Sprint(lie, "/part", part), func(t *testing.T) {
				j := newJob(t, 2, 8, 6, 10, 4)
				j.batch[lieFrom+1] = j.batch[lieFrom] // so that a stale answer is a lie only in what changed: the parameters
				want := j.honest(t)
				var rec recorder
				g, err := guard.New(guard.WithRedundancy(2), guard.WithEvents(rec.add),
					guard.WithSpares(guard.Named("spare0", exec.NewCPU()), guard.Named("spare1", exec.NewCPU())))
				if err != nil {
					t.Fatal(err)
				}
				liar := guardtest.Liar("liar", exec.NewCPU(), lie, lieFrom*4, 9)
				execs := make([]exec.Executor, 2)
				for p := range execs {
					r := []exec.Executor{guard.Named(fmt.Sprint("honest", p, "a"), exec.NewCPU()), guard.Named(fmt.Sprint("honest", p, "b"), exec.NewCPU())}
					if p == part {
						r[0] = liar
					}
					execs[p] = g.Executor(r...)
				}
				var caughtAt []int
				step := 0
				got, err := j.train(context.Background(), execs, func(s int) {
					if len(rec.of(guard.EventExcluded)) > 0 && caughtAt == nil {
						caughtAt = []int{s}
					}
					step = s
				})
				if err != nil {
					t.Fatal(err)
				}
				_ = step
				ex := rec.of(guard.EventExcluded)
				if len(ex) != 1 || ex[0].Provider != "liar" || ex[0].Part != part {
					t.Fatalf("exclusions %v, want the liar once", ex)
				}
				var me *guard.MismatchError
				if !errors.As(ex[0].Err, &me) || me.Provider != "liar" || !errors.Is(ex[0].Err, guard.ErrMismatch) {
					t.Errorf("exclusion error %v, want a *guard.MismatchError naming the liar", ex[0].Err)
				}
				// A bad update shows in the first results that depend on
				// it: those of the next step.
				within := lieFrom
				if lie == guardtest.BadStep {
					within++
				}
				if caughtAt == nil || caughtAt[0] != within {
					t.Errorf("caught after step %v, want within step %d", caughtAt, within)
				}
				if d := maxDiff(t, got, want); d != 0 {
					t.Errorf("parameters differ from the honest run by %g", d)
				}
				if ex := g.Excluded(); len(ex) != 1 || ex[0] != "liar" {
					t.Errorf("Excluded() = %v", ex)
				}
			})
		}
	}
}

func TestMajorityWinsUnderRedundancy3(t *testing.T) {
	j := newJob(t, 1, 6, 6, 10, 4)
	want := j.honest(t)
	var rec recorder
	g, err := guard.New(guard.WithRedundancy(3), guard.WithEvents(rec.add), guard.WithSpares(guard.Named("spare", exec.NewCPU())))
	if err != nil {
		t.Fatal(err)
	}
	e := g.Executor(guard.Named("a", exec.NewCPU()), guardtest.Liar("liar", exec.NewCPU(), guardtest.FlipSign, 8, 1), guard.Named("c", exec.NewCPU()))
	got, err := j.train(context.Background(), []exec.Executor{e}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("parameters differ from the honest run by %g", d)
	}
	if ex := rec.of(guard.EventExcluded); len(ex) != 1 || ex[0].Provider != "liar" || ex[0].Step != 2 {
		t.Errorf("exclusions %v, want the liar at step 2", ex)
	}
	if rep := rec.of(guard.EventReplaced); len(rep) != 1 || rep[0].Replacement != "spare" {
		t.Errorf("replacements %v, want the spare", rep)
	}
	if n := len(rec.of(guard.EventCheck)); n != 0 {
		t.Errorf("%d arbiters called, want none: the majority decides", n)
	}
}

func TestSpotCheckCatchesLiarOnRequester(t *testing.T) {
	j := newJob(t, 2, 6, 6, 10, 4)
	want := j.honest(t)
	var rec recorder
	g, err := guard.New(guard.WithSpotCheck(0.5, 7), guard.WithLocal(), guard.WithEvents(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	execs := []exec.Executor{g.Executor(guard.Named("p0", exec.NewCPU())), g.Executor(guardtest.Liar("liar", exec.NewCPU(), guardtest.Noise, 8, 2))}
	got, err := j.train(context.Background(), execs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("parameters differ from the honest run by %g", d)
	}
	ex := rec.of(guard.EventExcluded)
	if len(ex) != 1 || ex[0].Provider != "liar" {
		t.Fatalf("exclusions %v, want the liar", ex)
	}
	if len(rec.of(guard.EventCheck)) == 0 {
		t.Error("no spot checks ran")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []guard.Option{guard.WithSnapshotEvery(0), guard.WithRedundancy(0), guard.WithSpotCheck(1.5, 0),
		guard.WithMaxReplacements(-1), guard.WithCallTimeout(-time.Second)} {
		if _, err := guard.New(o); !errors.Is(err, guard.ErrConfig) {
			t.Errorf("got %v, want guard.ErrConfig", err)
		}
	}
}

// closing is an executor whose connection was closed: every Open fails as
// a gRPC call on a closed connection does, with a cancellation the caller
// did not ask for.
type closing struct{ exec.Executor }

func (closing) Open(context.Context, exec.SessionSpec) (exec.Session, error) {
	return nil, fmt.Errorf("transport: open: %w", context.Canceled)
}

func TestClosedConnectionIsAFault(t *testing.T) {
	j := newJob(t, 1, 3, 6, 10, 4)
	want := j.honest(t)
	var rec recorder
	g, err := guard.New(guard.WithSpares(guard.Named("closed", closing{}), guard.Named("spare", exec.NewCPU())), guard.WithEvents(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	got, err := j.train(context.Background(), []exec.Executor{g.Executor(guardtest.Dying("p0", exec.NewCPU(), 6))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("parameters differ by %g", d)
	}
	if rep := rec.of(guard.EventReplaced); len(rep) != 1 || rep[0].Replacement != "spare" {
		t.Errorf("replacements %v, want p0 -> spare past the closed one", rep)
	}
	// A cancellation by the caller is not a fault: it passes through.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.train(ctx, []exec.Executor{g.Executor(exec.NewCPU())}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v, want context.Canceled", err)
	}
}

func TestExecutorDeadAtOpenIsReplaced(t *testing.T) {
	j := newJob(t, 2, 3, 6, 10, 4)
	want := j.honest(t)
	var rec recorder
	g, err := guard.New(guard.WithSpares(guard.Named("spare", exec.NewCPU())), guard.WithEvents(rec.add))
	if err != nil {
		t.Fatal(err)
	}
	got, err := j.train(context.Background(), []exec.Executor{g.Executor(exec.NewCPU()), g.Executor(guard.Named("gone", closing{}))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, got, want); d != 0 {
		t.Errorf("parameters differ by %g", d)
	}
	if rep := rec.of(guard.EventReplaced); len(rep) != 1 || rep[0].Provider != "gone" || rep[0].Replacement != "spare" || rep[0].Part != 1 {
		t.Errorf("replacements %v, want gone -> spare for part 1", rep)
	}
}

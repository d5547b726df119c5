// Package exectest is the conformance suite that every exec.Executor must
// pass: the in-process CPU executor, and executors that reach a provider
// over gRPC (in memory or over TCP).
//
// A test calls Run with a constructor for the executor under test. Each
// sub-test opens sessions for the parts of a small two-part MLP, drives
// them by hand (Forward, Backward, Step, Put, Get, Close) and compares the
// results with the same model trained by Gorgonia in this process, or
// checks that misuse gives the typed error the exec package documents.
// Nothing here knows where the executor runs.
//
// Two more suites hold an executor to the numbers of Gorgonia's tape
// machine. EqualsOneProcess trains models (an MLP, a CNN, a residual DAG,
// and one with BatchNorm and Dropout) cut into up to four parts with up
// to four micro-batches, with every solver kind, against the same graph
// trained in one process. OpsMatchCPU runs one part per op kind that
// exec/plan lowers against the tape-machine executor, loss and gradients.
package exectest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// Run runs the conformance suite against executors made by newExecutor;
// every sub-test gets a fresh executor.
func Run(t *testing.T, newExecutor func(t *testing.T) exec.Executor) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e exec.Executor)
	}{
		{"TrainMatchesGorgonia", testTrain},
		{"MicroBatchesAverage", testMicroBatches},
		{"ForwardOnlyAddsNothing", testForwardOnly},
		{"SameMicroBatchTwice", testSameMicroBatchTwice},
		{"PutGet", testPutGet},
		{"Gradients", testGradients},
		{"ResidentInput", testResidentInput},
		{"SolverState", testSolverState},
		{"OpenErrors", testOpenErrors},
		{"MicroBatchCount", testMicroBatchCount},
		{"FeedErrors", testFeedErrors},
		{"OrderErrors", testOrderErrors},
		{"NameErrors", testNameErrors},
		{"Closed", testClosed},
		{"ConcurrentSessions", testConcurrent},
		{"LocalRounds", testLocalRounds},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newExecutor(t)) })
	}
}

const (
	batch  = 4
	in     = 6
	hidden = 5
	out    = 3
	tol    = 1e-12
)

// net is a 6-5-3 tanh MLP, split after the hidden layer: part 0 computes
// the hidden activations, part 1 the logits and the loss.
type net struct {
	g        *gorgonia.ExprGraph
	x, y     *gorgonia.Node
	learn    gorgonia.Nodes
	loss     *gorgonia.Node
	ir       *graph.Graph
	lay      *exec.Layout
	xb, yb   *tensor.Dense // one mini-batch
	hiddenID int64
}

func newNet(t *testing.T) *net {
	t.Helper()
	rng := rand.New(rand.NewSource(42))
	g := gorgonia.NewGraph()
	n := &net{g: g}
	n.x = gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	n.y = gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, out), gorgonia.WithName("y"))
	p := func(name string, shape ...int) *gorgonia.Node {
		return gorgonia.NewTensor(g, tensor.Float64, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name),
			gorgonia.WithValue(randDense(rng, 0.5, shape...)))
	}
	w1, b1, w2 := p("w1", in, hidden), p("b1", hidden), p("w2", hidden, out)
	n.learn = gorgonia.Nodes{w1, b1, w2}
	h := gorgonia.Must(gorgonia.Tanh(gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(n.x, w1)), b1, nil, []byte{0}))))
	logits := gorgonia.Must(gorgonia.Mul(h, w2))
	lsm := gorgonia.Must(gorgonia.LogSoftMax(logits))
	n.loss = gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(lsm, n.y))))))
	n.hiddenID = int64(h.ID())
	ir, err := graph.FromGorgonia(g, graph.Learnables(n.learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	n.ir = ir
	var p0, p1 []int64
	for _, node := range ir.Nodes() {
		if node.Role != graph.RoleOp && node.Role != graph.RoleLearnable {
			continue
		}
		if node.ID <= n.hiddenID && node.ID != int64(w2.ID()) {
			p0 = append(p0, node.ID)
		} else {
			p1 = append(p1, node.ID)
		}
	}
	lay, err := exec.NewLayout(ir, [][]int64{p0, p1}, int64(n.loss.ID()), []int64{int64(n.x.ID()), int64(n.y.ID())})
	if err != nil {
		t.Fatal(err)
	}
	n.lay = lay
	n.xb = randDense(rng, 1, batch, in)
	n.yb = tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, out))
	for i := 0; i < batch; i++ {
		n.yb.Float64s()[i*out+rng.Intn(out)] = 1
	}
	return n
}

func randDense(rng *rand.Rand, scale float64, shape ...int) *tensor.Dense {
	t := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(shape...))
	for i := range t.Float64s() {
		t.Float64s()[i] = rng.NormFloat64() * scale
	}
	return t
}

// reference returns the loss and the gradients of the learnables (in
// n.learn order) that Gorgonia computes in one process, on a fresh copy
// of the graph, for the whole mini-batch.
func (n *net) reference(t *testing.T) (float64, []*tensor.Dense) {
	t.Helper()
	return n.referenceOn(t, n.xb, n.yb)
}

// referenceOn is reference on another mini-batch.
func (n *net) referenceOn(t *testing.T, xb, yb *tensor.Dense) (float64, []*tensor.Dense) {
	t.Helper()
	g2 := gorgonia.NewGraph()
	nodes, err := exec.Lower(n.ir, g2)
	if err != nil {
		t.Fatal(err)
	}
	learn := make(gorgonia.Nodes, len(n.learn))
	for i, l := range n.learn {
		learn[i] = nodes[int64(l.ID())]
	}
	loss := nodes[int64(n.loss.ID())]
	grads, err := gorgonia.Grad(loss, learn...)
	if err != nil {
		t.Fatal(err)
	}
	var lv gorgonia.Value
	gorgonia.Read(loss, &lv)
	if err := gorgonia.Let(nodes[int64(n.x.ID())], xb); err != nil {
		t.Fatal(err)
	}
	if err := gorgonia.Let(nodes[int64(n.y.ID())], yb); err != nil {
		t.Fatal(err)
	}
	vm := gorgonia.NewTapeMachine(g2)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	out := make([]*tensor.Dense, len(grads))
	for i, gn := range grads {
		out[i] = gn.Value().(*tensor.Dense).Clone().(*tensor.Dense)
	}
	return lv.Data().(float64), out
}

func (n *net) initial(i int) *tensor.Dense { return n.learn[i].Value().(*tensor.Dense) }

// open opens both parts on e with the solver cfg.
func (n *net) open(t *testing.T, e exec.Executor, cfg exec.SolverConfig) [2]exec.Session {
	t.Helper()
	var ss [2]exec.Session
	for p := range ss {
		spec := n.lay.Specs[p]
		spec.Solver = cfg
		s, err := e.Open(ctx(t), spec)
		if err != nil {
			t.Fatalf("open part %d: %v", p, err)
		}
		t.Cleanup(func() { s.Close() })
		ss[p] = s
	}
	return ss
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// step runs one micro-batch through both parts, forward then backward,
// and returns the loss.
func (n *net) step(t *testing.T, ss [2]exec.Session, mb int, x, y *tensor.Dense) float64 {
	t.Helper()
	l, _ := n.forward(t, ss, mb, x, y)
	n.backward(t, ss, mb)
	return l
}

func (n *net) forward(t *testing.T, ss [2]exec.Session, mb int, x, y *tensor.Dense) (float64, map[int64]*tensor.Dense) {
	t.Helper()
	xid, yid := int64(n.x.ID()), int64(n.y.ID())
	out0, err := ss[0].Forward(ctx(t), mb, map[int64]*tensor.Dense{xid: x})
	if err != nil {
		t.Fatal(err)
	}
	feeds := map[int64]*tensor.Dense{yid: y}
	for _, id := range n.lay.Specs[1].Inputs {
		feeds[id] = out0[id]
	}
	out1, err := ss[1].Forward(ctx(t), mb, feeds)
	if err != nil {
		t.Fatal(err)
	}
	l := out1[int64(n.loss.ID())]
	if l == nil {
		t.Fatal("no loss from the last part")
	}
	return l.Float64s()[0], out0
}

func (n *net) backward(t *testing.T, ss [2]exec.Session, mb int) {
	t.Helper()
	gin, err := ss[1].Backward(ctx(t), mb, map[int64]*tensor.Dense{})
	if err != nil {
		t.Fatal(err)
	}
	grads := map[int64]*tensor.Dense{}
	for _, id := range n.lay.Specs[0].Outputs {
		grads[id] = gin[id]
	}
	if _, err := ss[0].Backward(ctx(t), mb, grads); err != nil {
		t.Fatal(err)
	}
}

func (n *net) params(t *testing.T, ss [2]exec.Session) []*tensor.Dense {
	t.Helper()
	out := make([]*tensor.Dense, len(n.learn))
	for i, l := range n.learn {
		id := int64(l.ID())
		for p, spec := range n.lay.Specs {
			if _, ok := spec.Graph.Node(id); !ok {
				continue
			}
			if node, _ := spec.Graph.Node(id); node.Role != graph.RoleLearnable {
				continue
			}
			got, err := ss[p].Get(ctx(t), exec.ParamName(id))
			if err != nil {
				t.Fatal(err)
			}
			out[i] = got[exec.ParamName(id)]
		}
	}
	return out
}

func close(a, b float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func requireSGD(t *testing.T, got []*tensor.Dense, init func(int) *tensor.Dense, grads []*tensor.Dense, lr float64) {
	t.Helper()
	for i := range got {
		if got[i] == nil {
			t.Fatalf("parameter %d not found", i)
		}
		p0, g, p := init(i).Float64s(), grads[i].Float64s(), got[i].Float64s()
		for j := range p {
			if want := p0[j] - lr*g[j]; !close(p[j], want) {
				t.Fatalf("parameter %d[%d] = %v, want %v", i, j, p[j], want)
			}
		}
	}
}

func testTrain(t *testing.T, e exec.Executor) {
	n := newNet(t)
	wantLoss, wantGrads := n.reference(t)
	const lr = 0.1
	ss := n.open(t, e, exec.SGD(lr, 0))
	l := n.step(t, ss, 0, n.xb, n.yb)
	if !close(l, wantLoss) {
		t.Fatalf("loss %v, want %v", l, wantLoss)
	}
	for _, s := range ss {
		if err := s.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	requireSGD(t, n.params(t, ss), n.initial, wantGrads, lr)
}

// testForwardOnly runs forwards that no backward follows (evaluation),
// then one training micro-batch: only the latter counts.
func testForwardOnly(t *testing.T, e exec.Executor) {
	n := newNet(t)
	wantLoss, wantGrads := n.reference(t)
	const lr = 0.1
	ss := n.open(t, e, exec.SGD(lr, 0))
	for i := 0; i < 2; i++ {
		if l, _ := n.forward(t, ss, 0, n.xb, n.yb); !close(l, wantLoss) {
			t.Fatalf("loss %v, want %v", l, wantLoss)
		}
		n.forward(t, ss, 1, n.xb, n.yb)
	}
	n.step(t, ss, 0, n.xb, n.yb)
	for _, s := range ss {
		if err := s.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	requireSGD(t, n.params(t, ss), n.initial, wantGrads, lr)
}

// testSameMicroBatchTwice runs micro-batch index 0 forward and backward
// twice, on two different batches, before one Step: both gradients count,
// and the update uses their mean.
func testSameMicroBatchTwice(t *testing.T, e exec.Executor) {
	n := newNet(t)
	x2 := n.xb.Clone().(*tensor.Dense)
	for i := range x2.Float64s() {
		x2.Float64s()[i] = 0.5*x2.Float64s()[i] + 0.1
	}
	_, g1 := n.reference(t)
	_, g2 := n.referenceOn(t, x2, n.yb)
	want := make([]*tensor.Dense, len(g1))
	for i := range g1 {
		want[i] = g1[i].Clone().(*tensor.Dense)
		for j := range want[i].Float64s() {
			want[i].Float64s()[j] = (g1[i].Float64s()[j] + g2[i].Float64s()[j]) / 2
		}
	}
	const lr = 0.1
	ss := n.open(t, e, exec.SGD(lr, 0))
	n.step(t, ss, 0, n.xb, n.yb)
	n.step(t, ss, 0, x2, n.yb)
	for _, s := range ss {
		if err := s.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	requireSGD(t, n.params(t, ss), n.initial, want, lr)
}

// testMicroBatches sends the same mini-batch as two identical
// micro-batches; the averaged gradient equals the gradient of one.
func testMicroBatches(t *testing.T, e exec.Executor) {
	n := newNet(t)
	wantLoss, wantGrads := n.reference(t)
	const lr = 0.1
	ss := n.open(t, e, exec.SGD(lr, 0))
	l0, _ := n.forward(t, ss, 0, n.xb, n.yb)
	l1, _ := n.forward(t, ss, 1, n.xb, n.yb)
	n.backward(t, ss, 1)
	n.backward(t, ss, 0)
	if !close(l0, wantLoss) || !close(l1, wantLoss) {
		t.Fatalf("losses %v, %v, want %v", l0, l1, wantLoss)
	}
	for _, s := range ss {
		if err := s.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	requireSGD(t, n.params(t, ss), n.initial, wantGrads, lr)
}

func testPutGet(t *testing.T, e exec.Executor) {
	n := newNet(t)
	ss := n.open(t, e, exec.SGD(0.1, 0))
	id := int64(n.learn[0].ID())
	v := randDense(rand.New(rand.NewSource(7)), 1, in, hidden)
	if err := ss[0].Put(ctx(t), exec.ParamName(id), v); err != nil {
		t.Fatal(err)
	}
	if err := ss[0].Put(ctx(t), "shard/0", v); err != nil {
		t.Fatal(err)
	}
	got, err := ss[0].Get(ctx(t), exec.ParamName(id), "shard/0")
	if err != nil {
		t.Fatal(err)
	}
	for name, g := range got {
		for j, x := range g.Float64s() {
			if x != v.Float64s()[j] {
				t.Fatalf("%s[%d] = %v, want %v", name, j, x, v.Float64s()[j])
			}
		}
	}
	// Get returns copies: changing one changes nothing resident.
	got[exec.ParamName(id)].Float64s()[0] = 1e6
	again, err := ss[0].Get(ctx(t), exec.ParamName(id))
	if err != nil {
		t.Fatal(err)
	}
	if again[exec.ParamName(id)].Float64s()[0] == 1e6 {
		t.Fatal("Get returned the resident tensor itself")
	}
}

// owner returns the index of the part that holds learnable i.
func (n *net) owner(i int) int {
	id := int64(n.learn[i].ID())
	for p, spec := range n.lay.Specs {
		if node, ok := spec.Graph.Node(id); ok && node.Role == graph.RoleLearnable {
			return p
		}
	}
	return -1
}

// testGradients reads the accumulated gradients (GradName), replaces them
// and checks that Step applies the replacement.
func testGradients(t *testing.T, e exec.Executor) {
	n := newNet(t)
	_, wantGrads := n.reference(t)
	const lr = 0.1
	ss := n.open(t, e, exec.SGD(lr, 0))
	zero := func(i int) {
		t.Helper()
		name := exec.GradName(int64(n.learn[i].ID()))
		got, err := ss[n.owner(i)].Get(ctx(t), name)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range got[name].Float64s() {
			if v != 0 {
				t.Fatalf("%s[%d] = %v with nothing accumulated, want 0", name, j, v)
			}
		}
	}
	for i := range n.learn {
		zero(i)
	}
	// Two micro-batches of the same data: the accumulator holds the sum.
	n.forward(t, ss, 0, n.xb, n.yb)
	n.forward(t, ss, 1, n.xb, n.yb)
	n.backward(t, ss, 1)
	n.backward(t, ss, 0)
	rng := rand.New(rand.NewSource(9))
	repl := make([]*tensor.Dense, len(n.learn))
	for i, l := range n.learn {
		name := exec.GradName(int64(l.ID()))
		got, err := ss[n.owner(i)].Get(ctx(t), name)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range got[name].Float64s() {
			if want := 2 * wantGrads[i].Float64s()[j]; !close(v, want) {
				t.Fatalf("%s[%d] = %v, want %v", name, j, v, want)
			}
		}
		repl[i] = randDense(rng, 1, got[name].Shape()...)
		if err := ss[n.owner(i)].Put(ctx(t), name, repl[i]); err != nil {
			t.Fatal(err)
		}
	}
	// A gradient of the wrong shape, or of a node that is not a
	// parameter of the part, is refused.
	if err := ss[n.owner(0)].Put(ctx(t), exec.GradName(int64(n.learn[0].ID())), randDense(rng, 1, 2)); !errors.Is(err, exec.ErrFeed) {
		t.Errorf("put of a mis-shaped gradient: got %v, want ErrFeed", err)
	}
	if _, err := ss[0].Get(ctx(t), exec.GradName(1<<40)); !errors.Is(err, exec.ErrUnknownName) {
		t.Errorf("get of the gradient of no parameter: got %v, want ErrUnknownName", err)
	}
	for _, s := range ss {
		if err := s.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Step applied the values Put, divided by the two micro-batches.
	half := make([]*tensor.Dense, len(repl))
	for i, r := range repl {
		half[i] = randDense(rng, 0, r.Shape()...)
		for j, v := range r.Float64s() {
			half[i].Float64s()[j] = v / 2
		}
	}
	requireSGD(t, n.params(t, ss), n.initial, half, lr)
	for i := range n.learn {
		zero(i)
	}
}

func testResidentInput(t *testing.T, e exec.Executor) {
	n := newNet(t)
	wantLoss, _ := n.reference(t)
	ss := n.open(t, e, exec.SGD(0.1, 0))
	if err := ss[0].Put(ctx(t), exec.InputName(int64(n.x.ID())), n.xb); err != nil {
		t.Fatal(err)
	}
	out0, err := ss[0].Forward(ctx(t), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	feeds := map[int64]*tensor.Dense{int64(n.y.ID()): n.yb}
	for _, id := range n.lay.Specs[1].Inputs {
		feeds[id] = out0[id]
	}
	out1, err := ss[1].Forward(ctx(t), 0, feeds)
	if err != nil {
		t.Fatal(err)
	}
	if l := out1[int64(n.loss.ID())].Float64s()[0]; !close(l, wantLoss) {
		t.Fatalf("loss %v, want %v", l, wantLoss)
	}
}

func testSolverState(t *testing.T, e exec.Executor) {
	n := newNet(t)
	_, wantGrads := n.reference(t)
	const lr, mu = 0.1, 0.9
	ss := n.open(t, e, exec.SGD(lr, mu))
	n.step(t, ss, 0, n.xb, n.yb)
	for _, s := range ss {
		if err := s.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	id := int64(n.learn[0].ID())
	got, err := ss[0].Get(ctx(t), exec.StateName(id, "velocity"))
	if err != nil {
		t.Fatal(err)
	}
	for j, v := range got[exec.StateName(id, "velocity")].Float64s() {
		if !close(v, wantGrads[0].Float64s()[j]) {
			t.Fatalf("velocity[%d] = %v, want %v", j, v, wantGrads[0].Float64s()[j])
		}
	}
}

func testOpenErrors(t *testing.T, e exec.Executor) {
	n := newNet(t)
	for _, tc := range []struct {
		name   string
		mutate func(*exec.SessionSpec)
	}{
		{"no graph", func(s *exec.SessionSpec) { s.Graph = nil }},
		{"no solver", func(s *exec.SessionSpec) { s.Solver = exec.SolverConfig{} }},
		{"unknown output", func(s *exec.SessionSpec) { s.Outputs = append(s.Outputs, 1<<40) }},
		{"unfed input", func(s *exec.SessionSpec) { s.DataInputs = nil }},
	} {
		spec := n.lay.Specs[0]
		spec.Solver = exec.SGD(0.1, 0)
		tc.mutate(&spec)
		s, err := e.Open(ctx(t), spec)
		if !errors.Is(err, exec.ErrSpec) {
			t.Errorf("%s: got %v, want ErrSpec", tc.name, err)
		}
		if s != nil {
			s.Close()
		}
	}
}

// testMicroBatchCount checks that Open refuses a spec that asks for more
// micro-batches than the executor holds (no executor holds 1<<30) with a
// *MicroBatchLimitError, and a negative count with ErrSpec; and that a
// session takes the micro-batch indexes its spec asks for and no other.
func testMicroBatchCount(t *testing.T, e exec.Executor) {
	n := newNet(t)
	spec := n.lay.Specs[1]
	spec.Solver = exec.SGD(0.1, 0)
	spec.MicroBatches = 1 << 30
	s, err := e.Open(ctx(t), spec)
	var me *exec.MicroBatchLimitError
	switch {
	case !errors.Is(err, exec.ErrSpec) || !errors.As(err, &me):
		t.Errorf("open for %d micro-batches: got %v, want a *MicroBatchLimitError", spec.MicroBatches, err)
	case me.Part != 1 || me.MicroBatches != 1<<30 || me.Limit < 1 || me.Limit >= 1<<30:
		t.Errorf("the error says part %d, %d micro-batches, limit %d; want part 1, %d micro-batches, a limit in [1, %d)",
			me.Part, me.MicroBatches, me.Limit, 1<<30, 1<<30)
	}
	if s != nil {
		s.Close()
	}
	spec.MicroBatches = -1
	if s, err := e.Open(ctx(t), spec); !errors.Is(err, exec.ErrSpec) {
		t.Errorf("open for -1 micro-batches: got %v, want ErrSpec", err)
		if s != nil {
			s.Close()
		}
	}

	var ss [2]exec.Session
	for p := range ss {
		spec := n.lay.Specs[p]
		spec.Solver = exec.SGD(0.1, 0)
		spec.MicroBatches = 2
		s, err := e.Open(ctx(t), spec)
		if err != nil {
			t.Fatalf("open part %d for 2 micro-batches: %v", p, err)
		}
		t.Cleanup(func() { s.Close() })
		ss[p] = s
	}
	for _, mb := range []int{2, -1} {
		_, err := ss[0].Forward(ctx(t), mb, map[int64]*tensor.Dense{int64(n.x.ID()): n.xb})
		if !errors.Is(err, exec.ErrOrder) {
			t.Errorf("forward of micro-batch %d on a session of 2: got %v, want ErrOrder", mb, err)
		}
	}
	n.step(t, ss, 0, n.xb, n.yb)
	n.step(t, ss, 1, n.xb, n.yb)
	for _, s := range ss {
		if err := s.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

func testFeedErrors(t *testing.T, e exec.Executor) {
	n := newNet(t)
	ss := n.open(t, e, exec.SGD(0.1, 0))
	xid := int64(n.x.ID())
	f32 := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(batch, in))
	for _, tc := range []struct {
		name  string
		feeds map[int64]*tensor.Dense
		node  int64
	}{
		{"missing", map[int64]*tensor.Dense{}, xid},
		{"shape", map[int64]*tensor.Dense{xid: randDense(rand.New(rand.NewSource(1)), 1, batch+1, in)}, xid},
		{"dtype", map[int64]*tensor.Dense{xid: f32}, xid},
		{"unknown", map[int64]*tensor.Dense{xid: n.xb, 1 << 40: n.xb}, 1 << 40},
	} {
		_, err := ss[0].Forward(ctx(t), 0, tc.feeds)
		var fe *exec.FeedError
		if !errors.Is(err, exec.ErrFeed) || !errors.As(err, &fe) {
			t.Errorf("%s: got %v, want a *FeedError", tc.name, err)
			continue
		}
		if fe.Node != tc.node || fe.Part != 0 {
			t.Errorf("%s: error names part %d node %d, want part 0 node %d", tc.name, fe.Part, fe.Node, tc.node)
		}
		if tc.name == "shape" && (len(fe.Got) != 2 || fe.Got[0] != batch+1 || len(fe.Want) != 2 || fe.Want[0] != batch) {
			t.Errorf("shape: error says got %v want %v", fe.Got, fe.Want)
		}
	}
	// A gradient of the wrong shape.
	n.forward(t, ss, 0, n.xb, n.yb)
	bad := map[int64]*tensor.Dense{}
	for _, id := range n.lay.Specs[0].Outputs {
		bad[id] = randDense(rand.New(rand.NewSource(1)), 1, 1, 1)
	}
	if _, err := ss[0].Backward(ctx(t), 0, bad); !errors.Is(err, exec.ErrFeed) {
		t.Errorf("backward with a bad gradient: got %v, want ErrFeed", err)
	}
	// Put of a parameter with the wrong shape.
	if err := ss[0].Put(ctx(t), exec.ParamName(int64(n.learn[0].ID())), n.xb); !errors.Is(err, exec.ErrFeed) {
		t.Errorf("put with a bad shape: got %v, want ErrFeed", err)
	}
}

func testOrderErrors(t *testing.T, e exec.Executor) {
	n := newNet(t)
	ss := n.open(t, e, exec.SGD(0.1, 0))
	var oe *exec.OrderError
	_, err := ss[1].Backward(ctx(t), 0, map[int64]*tensor.Dense{})
	if !errors.Is(err, exec.ErrOrder) || !errors.As(err, &oe) || oe.Part != 1 || oe.MicroBatch != 0 {
		t.Errorf("backward before forward: got %v, want an *OrderError for part 1, micro-batch 0", err)
	}
	if err := ss[0].Step(ctx(t)); !errors.Is(err, exec.ErrOrder) {
		t.Errorf("step with nothing accumulated: got %v, want ErrOrder", err)
	}
	// After a full step the accumulated gradients are gone again.
	n.step(t, ss, 0, n.xb, n.yb)
	if err := ss[0].Step(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := ss[0].Step(ctx(t)); !errors.Is(err, exec.ErrOrder) {
		t.Errorf("second step: got %v, want ErrOrder", err)
	}
	// A forward that is never followed by its backward can be repeated.
	n.forward(t, ss, 0, n.xb, n.yb)
	n.forward(t, ss, 0, n.xb, n.yb)
	n.backward(t, ss, 0)
}

func testNameErrors(t *testing.T, e exec.Executor) {
	n := newNet(t)
	ss := n.open(t, e, exec.SGD(0.1, 0))
	for _, name := range []string{"nope", exec.ParamName(1 << 40), exec.StateName(int64(n.learn[0].ID()), "nope")} {
		_, err := ss[0].Get(ctx(t), name)
		var ne *exec.NameError
		if !errors.Is(err, exec.ErrUnknownName) || !errors.As(err, &ne) || ne.Name != name {
			t.Errorf("get %q: got %v, want a *NameError", name, err)
		}
	}
}

func testClosed(t *testing.T, e exec.Executor) {
	n := newNet(t)
	ss := n.open(t, e, exec.SGD(0.1, 0))
	n.forward(t, ss, 0, n.xb, n.yb) // part 0 waits for its backward
	for _, s := range ss {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	}
	if _, err := ss[0].Forward(ctx(t), 0, map[int64]*tensor.Dense{int64(n.x.ID()): n.xb}); !errors.Is(err, exec.ErrClosed) {
		t.Errorf("forward after close: got %v, want ErrClosed", err)
	}
	if err := ss[0].Step(ctx(t)); !errors.Is(err, exec.ErrClosed) {
		t.Errorf("step after close: got %v, want ErrClosed", err)
	}
	if _, err := ss[0].Get(ctx(t), "x"); !errors.Is(err, exec.ErrClosed) {
		t.Errorf("get after close: got %v, want ErrClosed", err)
	}
}

// testConcurrent trains two independent copies of the model on one
// executor at the same time, as parallel sub-tests.
func testConcurrent(t *testing.T, e exec.Executor) {
	n := newNet(t)
	wantLoss, wantGrads := n.reference(t)
	const lr = 0.1
	t.Run("copies", func(t *testing.T) {
		for c := 0; c < 2; c++ {
			t.Run(fmt.Sprint(c), func(t *testing.T) {
				t.Parallel()
				ss := n.open(t, e, exec.SGD(lr, 0))
				if l := n.step(t, ss, 0, n.xb, n.yb); !close(l, wantLoss) {
					t.Errorf("loss %v, want %v", l, wantLoss)
				}
				for _, s := range ss {
					if err := s.Step(ctx(t)); err != nil {
						t.Fatal(err)
					}
				}
				requireSGD(t, n.params(t, ss), n.initial, wantGrads, lr)
			})
		}
	})
}

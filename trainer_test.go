package rookery_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
)

type mlp struct {
	g       *gorgonia.ExprGraph
	x, y    *gorgonia.Node
	logits  *gorgonia.Node
	loss    *gorgonia.Node
	learn   gorgonia.Nodes
	xb, yb  *tensor.Dense
	batch   int
	in, hid int
	classes int
	// reads are added to the graph on the first forward, after the
	// trainer has read the graph
	reads              gorgonia.Nodes
	lossVal, logitsVal gorgonia.Value
}

func randDense(rng *rand.Rand, scale float64, shape ...int) *tensor.Dense {
	t := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(shape...))
	for i := range t.Float64s() {
		t.Float64s()[i] = rng.NormFloat64() * scale
	}
	return t
}

// newMLP builds in-hid-classes ReLU MLP with a mean cross-entropy loss and
// one fixed mini-batch.
func newMLP(batch, in, hid, classes int) *mlp {
	rng := rand.New(rand.NewSource(5))
	g := gorgonia.NewGraph()
	m := &mlp{g: g, batch: batch, in: in, hid: hid, classes: classes}
	m.x = gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	m.y = gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, classes), gorgonia.WithName("y"))
	p := func(name string, scale float64, shape ...int) *gorgonia.Node {
		return gorgonia.NewTensor(g, tensor.Float64, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name),
			gorgonia.WithValue(randDense(rng, scale, shape...)))
	}
	w1, b1, w2, b2 := p("w1", 0.3, in, hid), p("b1", 0.01, hid), p("w2", 0.3, hid, classes), p("b2", 0.01, classes)
	m.learn = gorgonia.Nodes{w1, b1, w2, b2}
	h := gorgonia.Must(gorgonia.Rectify(gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(m.x, w1)), b1, nil, []byte{0}))))
	m.logits = gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w2)), b2, nil, []byte{0}))
	gorgonia.WithName("logits")(m.logits)
	lsm := gorgonia.Must(gorgonia.LogSoftMax(m.logits))
	m.loss = gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(lsm, m.y))))))
	m.xb = randDense(rng, 1, batch, in)
	m.yb = tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, classes))
	for i := 0; i < batch; i++ {
		m.yb.Float64s()[i*classes+rng.Intn(classes)] = 1
	}
	return m
}

func (m *mlp) feeds() map[*gorgonia.Node]*tensor.Dense {
	return map[*gorgonia.Node]*tensor.Dense{m.x: m.xb, m.y: m.yb}
}

// forward runs the caller's own tape machine on the caller's graph and
// returns the loss and the logits.
func (m *mlp) forward(t *testing.T) (float64, *tensor.Dense) {
	t.Helper()
	if m.reads == nil {
		m.reads = gorgonia.Nodes{gorgonia.Read(m.loss, &m.lossVal), gorgonia.Read(m.logits, &m.logitsVal)}
	}
	if err := gorgonia.Let(m.x, m.xb); err != nil {
		t.Fatal(err)
	}
	if err := gorgonia.Let(m.y, m.yb); err != nil {
		t.Fatal(err)
	}
	vm := gorgonia.NewTapeMachine(m.g.SubgraphRoots(m.reads...))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return m.lossVal.Data().(float64), m.logitsVal.(*tensor.Dense).Clone().(*tensor.Dense)
}

func relDiff(a, b []float64) float64 {
	var d, mag float64
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
		mag = math.Max(mag, math.Abs(b[i]))
	}
	return d / math.Max(mag, 1e-300)
}

func TestTrainerPullSaveLoad(t *testing.T) {
	ctx := context.Background()
	m := newMLP(8, 12, 16, 4)
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, gorgonia.Nodes{m.x, m.y},
		rookery.WithParts(3), rookery.WithMicroBatches(2), rookery.WithSolver(exec.Adam(0.01)),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(2)))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := len(tr.Plan().Parts); got != 3 {
		t.Fatalf("plan has %d parts, want 3", got)
	}
	before, _ := m.forward(t)
	if l, err := tr.Evaluate(ctx, m.feeds()); err != nil || math.Abs(l-before) > 1e-12*math.Abs(before) {
		t.Fatalf("trainer's initial loss %v (%v), the caller's %v", l, err, before)
	}
	var last float64
	for s := 0; s < 15; s++ {
		if last, err = tr.Step(ctx, m.feeds()); err != nil {
			t.Fatal(err)
		}
	}
	trained, err := tr.Evaluate(ctx, m.feeds())
	if err != nil {
		t.Fatal(err)
	}
	if !(trained < before) || !(last < before) {
		t.Fatalf("loss did not fall: %v → %v (last step %v)", before, trained, last)
	}
	// The caller's graph still holds the initial parameters.
	if l, _ := m.forward(t); l != before {
		t.Fatalf("the caller's graph changed before Pull: loss %v, want %v", l, before)
	}
	if err := tr.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	pulled, logits := m.forward(t)
	if math.Abs(pulled-trained) > 1e-12*math.Abs(trained) {
		t.Fatalf("after Pull the caller's graph gives loss %v, the trained parts %v", pulled, trained)
	}

	var buf bytes.Buffer
	if err := tr.Save(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	model, err := rookery.Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	lid, err := model.ID("logits")
	if err != nil {
		t.Fatal(err)
	}
	out, err := model.Predict(ctx, map[int64]*tensor.Dense{int64(m.x.ID()): m.xb}, lid)
	if err != nil {
		t.Fatal(err)
	}
	if d := relDiff(out[lid].Float64s(), logits.Float64s()); d > 1e-12 {
		t.Fatalf("loaded model's logits differ from the caller's by %.3g", d)
	}
	// Predict on a smaller batch: the first three rows.
	x3 := tensor.New(tensor.WithShape(3, m.in), tensor.WithBacking(append([]float64{}, m.xb.Float64s()[:3*m.in]...)))
	out3, err := model.Predict(ctx, map[int64]*tensor.Dense{int64(m.x.ID()): x3}, lid)
	if err != nil {
		t.Fatal(err)
	}
	if d := relDiff(out3[lid].Float64s(), logits.Float64s()[:3*m.classes]); d > 1e-12 {
		t.Fatalf("logits of 3 rows differ by %.3g", d)
	}
}

func TestTrainerConfigErrors(t *testing.T) {
	ctx := context.Background()
	m := newMLP(8, 12, 16, 4)
	_, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, gorgonia.Nodes{m.x, m.y},
		rookery.WithParts(2), rookery.WithExecutors(exec.NewCPU(), exec.NewCPU(), exec.NewCPU()))
	if !errors.Is(err, rookery.ErrConfig) {
		t.Errorf("2 parts on 3 executors: got %v, want ErrConfig", err)
	}
	_, err = rookery.NewTrainer(ctx, m.g, m.loss, m.learn, gorgonia.Nodes{m.x, m.y}, rookery.WithMicroBatches(3))
	if !errors.Is(err, exec.ErrSpec) {
		t.Errorf("batch 8 in 3 micro-batches: got %v, want exec.ErrSpec", err)
	}
	_, err = rookery.NewTrainer(ctx, m.g, m.loss, m.learn, gorgonia.Nodes{m.x})
	if !errors.Is(err, exec.ErrSpec) {
		t.Errorf("labels not fed: got %v, want exec.ErrSpec", err)
	}
}

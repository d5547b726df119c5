package transport_test

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// mlp is a ReLU MLP with a softmax cross-entropy loss, in IR form, with a
// fixed mini-batch.
type mlp struct {
	g      *gorgonia.ExprGraph
	lossN  *gorgonia.Node
	learn  gorgonia.Nodes
	inputs gorgonia.Nodes
	ir     *graph.Graph
	loss   int64
	data   []int64
	feeds  map[int64]*tensor.Dense
}

func newMLP(t testing.TB, dt tensor.Dtype, batch int, sizes ...int) *mlp {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	randDense := func(scale float64, shape ...int) *tensor.Dense {
		d := tensor.New(tensor.Of(dt), tensor.WithShape(shape...))
		switch v := d.Data().(type) {
		case []float64:
			for i := range v {
				v[i] = rng.NormFloat64() * scale
			}
		case []float32:
			for i := range v {
				v[i] = float32(rng.NormFloat64() * scale)
			}
		}
		return d
	}
	g := gorgonia.NewGraph()
	in, out := sizes[0], sizes[len(sizes)-1]
	x := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(batch, out), gorgonia.WithName("y"))
	var learn gorgonia.Nodes
	h := x
	for i := 0; i+1 < len(sizes); i++ {
		w := gorgonia.NewMatrix(g, dt, gorgonia.WithShape(sizes[i], sizes[i+1]), gorgonia.WithName("w"+string(rune('1'+i))),
			gorgonia.WithValue(randDense(math.Sqrt(2/float64(sizes[i])), sizes[i], sizes[i+1])))
		b := gorgonia.NewVector(g, dt, gorgonia.WithShape(sizes[i+1]), gorgonia.WithName("b"+string(rune('1'+i))),
			gorgonia.WithValue(randDense(0.01, sizes[i+1])))
		learn = append(learn, w, b)
		h = gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		if i+2 < len(sizes) {
			h = gorgonia.Must(gorgonia.Rectify(h))
		}
	}
	lsm := gorgonia.Must(gorgonia.LogSoftMax(h))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(lsm, y))))))
	ir, err := graph.FromGorgonia(g, graph.Learnables(learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	xv := randDense(1, batch, in)
	yv := tensor.New(tensor.Of(dt), tensor.WithShape(batch, out))
	for i := 0; i < batch; i++ {
		c := rng.Intn(out)
		switch v := yv.Data().(type) {
		case []float64:
			v[i*out+c] = 1
		case []float32:
			v[i*out+c] = 1
		}
	}
	return &mlp{g: g, lossN: loss, learn: learn, inputs: gorgonia.Nodes{x, y}, ir: ir, loss: int64(loss.ID()), data: []int64{int64(x.ID()), int64(y.ID())},
		feeds: map[int64]*tensor.Dense{int64(x.ID()): xv, int64(y.ID()): yv}}
}

// parts cuts the ops into k runs in graph order; each learnable goes with
// its first consumer.
func (m *mlp) parts(k int) [][]int64 {
	var ops []int64
	for _, n := range m.ir.Nodes() {
		if n.Role == graph.RoleOp {
			ops = append(ops, n.ID)
		}
	}
	part := make(map[int64]int)
	parts := make([][]int64, k)
	for i, id := range ops {
		p := i * k / len(ops)
		part[id] = p
		parts[p] = append(parts[p], id)
	}
	for _, id := range m.ir.Learnables() {
		p := part[m.ir.Consumers(id)[0]]
		parts[p] = append(parts[p], id)
	}
	return parts
}

// train runs steps steps of the pipeline over execs and returns the
// losses and the final parameters.
func (m *mlp) train(t testing.TB, execs []exec.Executor, micro, steps int, cfg exec.SolverConfig) ([]float64, map[int64]*tensor.Dense) {
	t.Helper()
	ctx := context.Background()
	p, err := exec.NewPipeline(ctx, m.ir, m.loss, m.data, m.parts(len(execs)), execs,
		exec.WithMicroBatches(micro), exec.WithSolver(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var losses []float64
	for s := 0; s < steps; s++ {
		l, err := p.Step(ctx, m.feeds)
		if err != nil {
			t.Fatalf("step %d: %v", s, err)
		}
		losses = append(losses, l)
	}
	params, err := p.Params(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return losses, params
}

// requireSameTraining checks that two runs gave bit-identical losses and
// parameters: the wire carries raw bytes, so nothing may differ.
func requireSameTraining(t *testing.T, wantLoss, gotLoss []float64, wantP, gotP map[int64]*tensor.Dense) {
	t.Helper()
	if len(gotLoss) != len(wantLoss) {
		t.Fatalf("%d losses, want %d", len(gotLoss), len(wantLoss))
	}
	for i := range wantLoss {
		if gotLoss[i] != wantLoss[i] {
			t.Errorf("step %d: loss %v, want %v", i, gotLoss[i], wantLoss[i])
		}
	}
	if !(gotLoss[len(gotLoss)-1] < gotLoss[0]) {
		t.Errorf("loss did not fall: %v", gotLoss)
	}
	if len(gotP) != len(wantP) {
		t.Fatalf("%d parameters, want %d", len(gotP), len(wantP))
	}
	for id, w := range wantP {
		g := gotP[id]
		if g == nil || !g.Shape().Eq(w.Shape()) {
			t.Fatalf("parameter %d: got %v, want shape %v", id, g, w.Shape())
		}
		switch wv := w.Data().(type) {
		case []float64:
			for i, v := range g.Float64s() {
				if v != wv[i] {
					t.Fatalf("parameter %d[%d] = %v, want %v", id, i, v, wv[i])
				}
			}
		case []float32:
			for i, v := range g.Float32s() {
				if v != wv[i] {
					t.Fatalf("parameter %d[%d] = %v, want %v", id, i, v, wv[i])
				}
			}
		}
	}
}

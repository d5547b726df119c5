package exectest

import (
	"errors"
	"math/rand"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/graph"
)

// whole opens the net as one part (with the loss, one micro-batch) on e,
// with the shards xs, ys resident.
func (n *net) whole(t *testing.T, e exec.Executor, xs, ys *tensor.Dense) (exec.Session, exec.SessionSpec) {
	t.Helper()
	var all []int64
	for _, node := range n.ir.Nodes() {
		if node.Role == graph.RoleOp || node.Role == graph.RoleLearnable {
			all = append(all, node.ID)
		}
	}
	lay, err := exec.NewLayout(n.ir, [][]int64{all}, int64(n.loss.ID()), []int64{int64(n.x.ID()), int64(n.y.ID())})
	if err != nil {
		t.Fatal(err)
	}
	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0.5)
	spec.MicroBatches = 1
	s, err := e.Open(ctx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for id, sh := range map[int64]*tensor.Dense{int64(n.x.ID()): xs, int64(n.y.ID()): ys} {
		if err := s.Put(ctx(t), exec.ShardName(id), sh); err != nil {
			t.Fatal(err)
		}
	}
	return s, spec
}

// testLocalRounds: LocalSteps trains on the shard's rows in the order
// StreamRows gives, as Forward, Backward and Step by hand do; the delta
// read is the parameters' change since their anchors; an update moves
// parameters and anchors to anchor + update.
func testLocalRounds(t *testing.T, e exec.Executor) {
	n := newNet(t)
	const rows = 10
	rng := rand.New(rand.NewSource(9))
	xs := randDense(rng, 1, rows, in)
	ys := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(rows, out))
	for i := 0; i < rows; i++ {
		ys.Float64s()[i*out+rng.Intn(out)] = 1
	}
	s, spec := n.whole(t, e, xs, ys)
	ref, _ := n.whole(t, exec.NewCPU(), xs, ys)
	ids := spec.Graph.Learnables()
	for i, id := range ids {
		if err := s.Put(ctx(t), exec.AnchorName(id), n.initial(i)); err != nil {
			t.Fatal(err)
		}
	}
	req := exec.LocalRequest{Steps: 3, Seed: 5, Start: 7}
	res, err := exec.LocalSteps(ctx(t), s, &spec, req)
	if err != nil {
		t.Fatal(err)
	}
	// the same steps by hand on the reference session
	var sum float64
	for k := range req.Steps {
		idx := exec.StreamRows(req.Seed, rows, req.Start+int64(k*batch), batch)
		xb, yb := gather(xs, idx), gather(ys, idx)
		outs, err := ref.Forward(ctx(t), 0, map[int64]*tensor.Dense{int64(n.x.ID()): xb, int64(n.y.ID()): yb})
		if err != nil {
			t.Fatal(err)
		}
		sum += outs[int64(n.loss.ID())].Float64s()[0]
		if _, err := ref.Backward(ctx(t), 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := ref.Step(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if res.Steps != 3 || res.Rows != 3*batch || !close(res.Loss, sum/3) {
		t.Fatalf("LocalSteps did %+v, want 3 steps, %d rows, loss %v", res, 3*batch, sum/3)
	}
	var want []float64
	for i, id := range ids {
		got, err := s.Get(ctx(t), exec.ParamName(id))
		if err != nil {
			t.Fatal(err)
		}
		r, err := ref.Get(ctx(t), exec.ParamName(id))
		if err != nil {
			t.Fatal(err)
		}
		g, w := got[exec.ParamName(id)].Float64s(), r[exec.ParamName(id)].Float64s()
		for j := range g {
			if !close(g[j], w[j]) {
				t.Fatalf("parameter %d after the local steps: %v, by hand %v", id, g[j], w[j])
			}
			want = append(want, g[j]-n.initial(i).Float64s()[j])
		}
	}
	name := exec.DeltaName(compress.Float64)
	got, err := s.Get(ctx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := exec.UnpackDelta(got[name])
	if err != nil {
		t.Fatal(err)
	}
	d, err := compress.Decode(p, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for j := range d {
		if d[j] != want[j] {
			t.Fatalf("delta value %d is %v, the parameters moved by %v", j, d[j], want[j])
		}
	}
	u := make([]float64, len(want))
	for j := range u {
		u[j] = 0.01 * float64(j%5-2)
	}
	enc, err := compress.Encode(compress.Float64, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx(t), exec.UpdateName, exec.PackDelta(enc)); err != nil {
		t.Fatal(err)
	}
	off := 0
	for i, id := range ids {
		m := n.initial(i).Shape().TotalSize()
		want, err := exec.ApplyDelta(n.initial(i), u[off:off+m])
		if err != nil {
			t.Fatal(err)
		}
		off += m
		got, err := s.Get(ctx(t), exec.ParamName(id), exec.AnchorName(id))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{exec.ParamName(id), exec.AnchorName(id)} {
			for j, v := range got[name].Float64s() {
				if v != want.Float64s()[j] {
					t.Fatalf("%s after the update: %v, want anchor + update %v", name, v, want.Float64s()[j])
				}
			}
		}
	}
	// a request out of range, and a part that is not a whole model
	if _, err := exec.LocalSteps(ctx(t), s, &spec, exec.LocalRequest{Steps: 0}); !errors.Is(err, exec.ErrSpec) {
		t.Errorf("0 steps: got %v, want ErrSpec", err)
	}
	ss := n.open(t, e, exec.SGD(0.1, 0))
	spec0 := n.lay.Specs[0]
	if _, err := exec.LocalSteps(ctx(t), ss[0], &spec0, exec.LocalRequest{Steps: 1}); !errors.Is(err, exec.ErrSpec) {
		t.Errorf("a part without the loss: got %v, want ErrSpec", err)
	}
	if _, err := s.Get(ctx(t), "delta/nope"); !errors.Is(err, exec.ErrUnknownName) {
		t.Errorf("a delta of an unknown codec: got %v, want a name error", err)
	}
}

func gather(t *tensor.Dense, idx []int) *tensor.Dense {
	w := t.Shape()[1]
	src := t.Float64s()
	out := make([]float64, 0, len(idx)*w)
	for _, r := range idx {
		out = append(out, src[r*w:(r+1)*w]...)
	}
	return tensor.New(tensor.WithShape(len(idx), w), tensor.WithBacking(out))
}

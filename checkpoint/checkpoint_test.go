package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"reflect"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/checkpoint"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

// run is a small MLP read into the IR, with a pipeline of two parts on
// in-process executors.
type run struct {
	ir     *graph.Graph
	loss   int64
	data   []int64
	parts  [][]int64
	feeds  map[int64]*tensor.Dense
	solver exec.SolverConfig
}

// newRun builds an in-hid-2 tanh MLP with a mean cross-entropy loss and
// one fixed mini-batch of 4 rows.
func newRun(t testing.TB, in, hid int) *run {
	t.Helper()
	const batch, classes = 4, 2
	rng := rand.New(rand.NewSource(3))
	dense := func(scale float64, shape ...int) *tensor.Dense {
		d := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(shape...))
		for i := range d.Float64s() {
			d.Float64s()[i] = rng.NormFloat64() * scale
		}
		return d
	}
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, classes), gorgonia.WithName("y"))
	w1 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(in, hid), gorgonia.WithName("w1"), gorgonia.WithValue(dense(0.3, in, hid)))
	w2 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(hid, classes), gorgonia.WithName("w2"), gorgonia.WithValue(dense(0.3, hid, classes)))
	h := gorgonia.Must(gorgonia.Tanh(gorgonia.Must(gorgonia.Mul(x, w1))))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(
		gorgonia.Must(gorgonia.LogSoftMax(gorgonia.Must(gorgonia.Mul(h, w2)))), y))))))
	ir, err := graph.FromGorgonia(g, graph.Learnables(w1, w2), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	ys := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, classes))
	for i := range batch {
		ys.Float64s()[i*classes+i%classes] = 1
	}
	// Two parts: the first layer, and everything after it.
	var first, rest []int64
	for _, n := range ir.Nodes() {
		if n.ID == int64(x.ID()) || n.ID == int64(w1.ID()) || n.ID == int64(h.ID()) || (len(n.Inputs) > 0 && n.Inputs[0] == int64(x.ID())) {
			first = append(first, n.ID)
		} else {
			rest = append(rest, n.ID)
		}
	}
	return &run{ir: ir, loss: int64(loss.ID()), data: []int64{int64(x.ID()), int64(y.ID())}, parts: [][]int64{first, rest},
		feeds:  map[int64]*tensor.Dense{int64(x.ID()): dense(1, batch, in), int64(y.ID()): ys},
		solver: exec.Adam(0.1)}
}

func (r *run) open(t testing.TB) *exec.Pipeline {
	t.Helper()
	p, err := exec.NewPipeline(context.Background(), r.ir, r.loss, r.data, r.parts, []exec.Executor{exec.NewCPU(), exec.NewCPU()},
		exec.WithSolver(r.solver))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *run) step(t testing.TB, p *exec.Pipeline, n int) []float64 {
	t.Helper()
	var losses []float64
	for range n {
		l, err := p.Step(context.Background(), r.feeds)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
	}
	return losses
}

// written trains r for steps steps and returns its checkpoint's bytes.
func written(t testing.TB, r *run, steps int) []byte {
	t.Helper()
	p := r.open(t)
	defer p.Close()
	r.step(t, p, steps)
	s, err := checkpoint.Capture(context.Background(), p, r.ir, r.solver, steps)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := s.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestResume: a run restored from a checkpoint takes the steps the
// uninterrupted run takes, with the same losses, and the same state gives
// the same bytes.
func TestResume(t *testing.T) {
	const n, s = 6, 3
	r := newRun(t, 5, 6)
	p := r.open(t)
	defer p.Close()
	r.step(t, p, s)
	c, err := checkpoint.Capture(context.Background(), p, r.ir, r.solver, s)
	if err != nil {
		t.Fatal(err)
	}
	var b1, b2 bytes.Buffer
	if _, err := c.WriteTo(&b1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(&b2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Error("the same state gave different bytes")
	}
	want := r.step(t, p, n-s)

	back, err := checkpoint.Read(bytes.NewReader(b1.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if back.Steps != s || len(back.Slots) != len(c.Slots) || len(back.Slots) == 0 {
		t.Fatalf("read %d steps and %d slots, want %d and %d", back.Steps, len(back.Slots), s, len(c.Slots))
	}
	r2 := newRun(t, 5, 6)
	if err := back.Apply(r2.ir); err != nil {
		t.Fatal(err)
	}
	p2 := r2.open(t)
	defer p2.Close()
	if err := back.Restore(context.Background(), p2); err != nil {
		t.Fatal(err)
	}
	if got := r2.step(t, p2, n-s); !reflect.DeepEqual(got, want) {
		t.Errorf("losses after the restore %v, uninterrupted %v", got, want)
	}
}

// TestInvalid: what cannot be read, or does not fit the graph, gives
// ErrInvalid.
func TestInvalid(t *testing.T) {
	b := written(t, newRun(t, 5, 6), 1)
	for name, c := range map[string]struct {
		b     []byte
		typed bool                          // an *Error, not only ErrInvalid
		apply func(*checkpoint.State) error // after a successful Read
	}{
		"not a checkpoint": {b: []byte("model bytes, not a checkpoint"), typed: true},
		"empty":            {b: nil, typed: true},
		"truncated":        {b: b[:len(b)-5]},
		"bad version":      {b: append(append([]byte("RKRYCKPT"), 2, 0, 0, 0), b[12:]...), typed: true},
		"another graph":    {b: b, typed: true, apply: func(s *checkpoint.State) error { return s.Apply(newRun(t, 5, 7).ir) }},
	} {
		s, err := checkpoint.Read(bytes.NewReader(c.b))
		if err == nil && c.apply != nil {
			err = c.apply(s)
		}
		var ce *checkpoint.Error
		if !errors.Is(err, checkpoint.ErrInvalid) || (c.typed && !errors.As(err, &ce)) {
			t.Errorf("%s: %v, want checkpoint.ErrInvalid", name, err)
		}
	}
}

// FuzzRead feeds arbitrary bytes to Read, and what it reads to Apply and
// Restore: none may panic, nor allocate what a length field claims before
// the bytes are there.
func FuzzRead(f *testing.F) {
	b := written(f, newRun(f, 4, 3), 2)
	f.Add(b)
	f.Add(b[:40])
	f.Add([]byte("RKRYCKPT\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := checkpoint.Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		r := newRun(t, 4, 3)
		if err := s.Apply(r.ir); err != nil {
			return
		}
		p := r.open(t)
		defer p.Close()
		_ = s.Restore(context.Background(), p)
	})
}

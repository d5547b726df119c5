package exec_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
)

// wholeSession opens m as one part on the CPU executor.
func wholeSession(t *testing.T, m model) (exec.Session, []int64) {
	t.Helper()
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	lay, err := exec.NewLayout(ir, chunks(ir, 1), int64(m.Loss.ID()), exec.NodeIDs(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0)
	spec.MicroBatches = 1
	s, err := exec.NewCPU().Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, spec.Graph.Learnables()
}

// TestDeltaErrorFeedback: what the codec drops from one delta is added to
// the next, so that the deltas read over several rounds add up to the
// parameters' whole change, short of at most one rounding.
func TestDeltaErrorFeedback(t *testing.T) {
	ctx := context.Background()
	m := mlpModel(tensor.Float64, 4, 6, 5, 3)
	s, learn := wholeSession(t, m)
	if _, err := s.Get(ctx, exec.DeltaName(compress.Int8)); !errors.Is(err, exec.ErrOrder) {
		t.Fatalf("delta before the anchors: got %v, want ErrOrder", err)
	}
	start := map[int64]*tensor.Dense{}
	for _, id := range learn {
		got, err := s.Get(ctx, exec.ParamName(id))
		if err != nil {
			t.Fatal(err)
		}
		start[id] = got[exec.ParamName(id)]
		if err := s.Put(ctx, exec.AnchorName(id), start[id]); err != nil {
			t.Fatal(err)
		}
	}
	var total int
	for _, id := range learn {
		total += start[id].Shape().TotalSize()
	}
	sum := make([]float64, total)
	// move every parameter by a small amount, read the int8 delta, three
	// times; the anchors stay where they are
	for round := 1; round <= 3; round++ {
		for _, id := range learn {
			v := start[id].Clone().(*tensor.Dense)
			for j, x := range v.Float64s() {
				v.Float64s()[j] = x + float64(round)*1e-3*math.Sin(float64(j+int(id)))
			}
			if err := s.Put(ctx, exec.ParamName(id), v); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Get(ctx, exec.DeltaName(compress.Int8))
		if err != nil {
			t.Fatal(err)
		}
		p, err := exec.UnpackDelta(got[exec.DeltaName(compress.Int8)])
		if err != nil {
			t.Fatal(err)
		}
		d, err := compress.Decode(p, total)
		if err != nil {
			t.Fatal(err)
		}
		for j := range d {
			sum[j] += d[j]
		}
	}
	// the deltas read add up to the last change (3e-3·sin) plus the
	// changes of rounds 1 and 2 counted again: the anchors did not move
	off := 0
	worst := 0.0
	for _, id := range learn {
		n := start[id].Shape().TotalSize()
		for j := range n {
			want := 6e-3 * math.Sin(float64(j+int(id)))
			worst = max(worst, math.Abs(sum[off+j]-want))
		}
		off += n
	}
	// one int8 rounding of a block whose largest value is about 3e-3
	if worst > 3e-3/127 {
		t.Fatalf("deltas add up to the change within %g, want within one rounding", worst)
	}
}

// TestUpdateMovesAnchors: Put UpdateName adds the update to the anchors,
// in the parameters' dtype, as ApplyDelta does on the requester.
func TestUpdateMovesAnchors(t *testing.T) {
	ctx := context.Background()
	m := mlpModel(tensor.Float32, 4, 6, 5, 3)
	s, learn := wholeSession(t, m)
	u := []float64{}
	anchors := map[int64]*tensor.Dense{}
	for _, id := range learn {
		got, err := s.Get(ctx, exec.ParamName(id))
		if err != nil {
			t.Fatal(err)
		}
		anchors[id] = got[exec.ParamName(id)]
		if err := s.Put(ctx, exec.AnchorName(id), anchors[id]); err != nil {
			t.Fatal(err)
		}
		for j := range anchors[id].Shape().TotalSize() {
			u = append(u, 0.01*float64(j%7)-0.03)
		}
	}
	if err := s.Put(ctx, exec.UpdateName, exec.PackDelta([]byte("not a delta"))); !errors.Is(err, exec.ErrFeed) {
		t.Fatalf("a malformed update: got %v, want a feed error", err)
	}
	p, err := compress.Encode(compress.Float16, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, exec.UpdateName, exec.PackDelta(p)); err != nil {
		t.Fatal(err)
	}
	back, _ := compress.Decode(p, len(u))
	off := 0
	for _, id := range learn {
		n := anchors[id].Shape().TotalSize()
		want, err := exec.ApplyDelta(anchors[id], back[off:off+n])
		if err != nil {
			t.Fatal(err)
		}
		off += n
		got, err := s.Get(ctx, exec.ParamName(id), exec.AnchorName(id))
		if err != nil {
			t.Fatal(err)
		}
		if !exectest.SameBits(got[exec.ParamName(id)], want) || !exectest.SameBits(got[exec.AnchorName(id)], want) {
			t.Fatalf("parameter %d after the update differs from anchor + update", id)
		}
	}
}

func TestUnpackDeltaRefuses(t *testing.T) {
	good := exec.PackDelta([]byte{1, 2, 3, 4, 5})
	if p, err := exec.UnpackDelta(good); err != nil || !bytes.Equal(p, []byte{1, 2, 3, 4, 5}) {
		t.Fatalf("round trip: %v %v", p, err)
	}
	bad := []*tensor.Dense{
		nil,
		tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{1, 2})),
		tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float32{0, 0})),
		tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{math.Float32frombits(9), 0})),
		tensor.New(tensor.WithShape(3), tensor.WithBacking([]float32{math.Float32frombits(1), 0, 0})),
		tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{math.Float32frombits(1), math.Float32frombits(0x0100)})),
	}
	for i, b := range bad {
		if _, err := exec.UnpackDelta(b); !errors.Is(err, compress.ErrMalformed) {
			t.Errorf("case %d: got %v, want ErrMalformed", i, err)
		}
	}
}

// FuzzUnpackDelta: UnpackDelta reads what a provider or a requester sent;
// it never panics, and what it accepts packs back to the same tensor.
func FuzzUnpackDelta(f *testing.F) {
	f.Add([]byte{5, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{9, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		n := len(raw) / 4
		if n == 0 {
			return
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		}
		tt := tensor.New(tensor.WithShape(n), tensor.WithBacking(v))
		p, err := exec.UnpackDelta(tt)
		if err != nil {
			if !errors.Is(err, compress.ErrMalformed) {
				t.Fatalf("error %v does not match ErrMalformed", err)
			}
			return
		}
		back := exec.PackDelta(p).Data().([]float32)
		if len(back) != n {
			t.Fatalf("packs back to %d elements, was %d", len(back), n)
		}
		for i := range back {
			if math.Float32bits(back[i]) != math.Float32bits(v[i]) {
				t.Fatalf("element %d packs back differently", i)
			}
		}
	})
}

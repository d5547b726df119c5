package exec

import (
	"context"
	"runtime"
	"testing"
	"time"
	"weak"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// residentPart builds a one-part session whose data input x (4×3) is kept
// resident, with out = f(x) as its only output.
func residentPart(t *testing.T, f func(g *gorgonia.ExprGraph, x *gorgonia.Node) *gorgonia.Node) (*cpuHandle, int64, int64) {
	t.Helper()
	s, xid, oid := openResidentPart(t, f)
	t.Cleanup(func() { s.Close() })
	return s, xid, oid
}

// openResidentPart opens a session of a part whose input x (4×3) feeds
// f; the caller closes it.
func openResidentPart(t *testing.T, f func(g *gorgonia.ExprGraph, x *gorgonia.Node) *gorgonia.Node) (*cpuHandle, int64, int64) {
	t.Helper()
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(4, 3), gorgonia.WithName("x"))
	out := f(g, x)
	ir, err := graph.FromGorgonia(g)
	if err != nil {
		t.Fatal(err)
	}
	spec := SessionSpec{Graph: ir, DataInputs: []int64{int64(x.ID())}, Outputs: []int64{int64(out.ID())}, Solver: SGD(0.1, 0)}
	s, err := NewCPU().Open(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*cpuHandle), int64(x.ID()), int64(out.ID())
}

func TestResidentInputBoundOnlyWhereProgramNeverWritesIt(t *testing.T) {
	ctx := context.Background()
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	for _, tc := range []struct {
		name       string
		f          func(g *gorgonia.ExprGraph, x *gorgonia.Node) *gorgonia.Node
		want       []float64
		wantDirect bool
	}{
		{
			// x·w reads x into a fresh result: x can be bound directly
			name: "matmul",
			f: func(g *gorgonia.ExprGraph, x *gorgonia.Node) *gorgonia.Node {
				w := gorgonia.NewConstant(tensor.New(tensor.WithShape(3, 1), tensor.WithBacking([]float64{1, 10, 100})))
				return gorgonia.Must(gorgonia.Mul(x, w))
			},
			want:       []float64{321, 654, 987, 1320},
			wantDirect: true,
		},
		{
			// x + x⊙2: elementwise ops may overwrite their first operand
			// at its last use, but Gorgonia keeps arguments live
			name: "elementwise",
			f: func(g *gorgonia.ExprGraph, x *gorgonia.Node) *gorgonia.Node {
				two := gorgonia.NewConstant(tensor.New(tensor.WithShape(4, 3), tensor.WithBacking([]float64{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2})))
				return gorgonia.Must(gorgonia.Add(x, gorgonia.Must(gorgonia.HadamardProd(x, two))))
			},
			want:       []float64{3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36},
			wantDirect: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, xid, oid := residentPart(t, tc.f)
			x := tensor.New(tensor.WithShape(4, 3), tensor.WithBacking(append([]float64{}, xs...)))
			if err := s.Put(ctx, InputName(xid), x); err != nil {
				t.Fatal(err)
			}
			for run := 0; run < 3; run++ {
				out, err := s.Forward(ctx, 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := out[oid].Float64s(); !equalFloats(got, tc.want) {
					t.Fatalf("run %d: got %v, want %v", run, got, tc.want)
				}
			}
			if got := s.slots.Lookup(0).direct[xid]; got != tc.wantDirect {
				t.Errorf("input bound directly: got %v, want %v", got, tc.wantDirect)
			}
			res, err := s.Get(ctx, InputName(xid))
			if err != nil {
				t.Fatal(err)
			}
			if got := res[InputName(xid)].Float64s(); !equalFloats(got, xs) {
				t.Errorf("resident x after 3 runs: got %v, want %v", got, xs)
			}
			// a new value Put under the same name is the one used next
			x2 := tensor.New(tensor.WithShape(4, 3), tensor.WithBacking(make([]float64, 12)))
			if err := s.Put(ctx, InputName(xid), x2); err != nil {
				t.Fatal(err)
			}
			out, err := s.Forward(ctx, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range out[oid].Float64s() {
				if v != 0 {
					t.Fatalf("after Put of zeros: got %v, want all 0", out[oid].Float64s())
				}
			}
		})
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Stand-ins for the tape machine's program, with the field names and type
// names argsWritten reads.
type (
	register struct{ id, device int }
	loadArg  struct {
		index   int64
		writeTo register
	}
	execOp struct {
		readFrom []register
		writeTo  register
	}
	program struct{ instructions []any }
	fakeVM  struct {
		gorgonia.VM
		p *program
	}
	opaqueVM struct{ gorgonia.VM }
)

func (m fakeVM) Prog() *program { return m.p }

func TestArgsWritten(t *testing.T) {
	// arguments 7 and 8 in registers 0 and 1; an op reads both and writes
	// its result over register 1, as an in-place op would
	vm := fakeVM{p: &program{instructions: []any{
		loadArg{index: 7, writeTo: register{0, 0}},
		loadArg{index: 8, writeTo: register{1, 0}},
		&execOp{readFrom: []register{{0, 0}, {1, 0}}, writeTo: register{1, 0}},
		&execOp{readFrom: []register{{1, 0}}, writeTo: register{2, 0}},
	}}}
	written, ok := argsWritten(vm)
	if !ok {
		t.Fatal("program not read")
	}
	if written[7] || !written[8] {
		t.Errorf("written: got %v, want only 8", written)
	}
	if _, ok := argsWritten(opaqueVM{}); ok {
		t.Error("a VM without a program was read")
	}
	if _, ok := argsWritten(fakeVM{p: &program{instructions: []any{42}}}); ok {
		t.Error("a program of unknown instructions was read")
	}
}

// onlySession hides every method but those of Session.
type onlySession struct{ Session }

// TestKeep checks that Keep hands a resident input to the CPU session
// without a copy, that Put still copies, and that a session that is not
// a Keeper gets a Put.
func TestKeep(t *testing.T) {
	ctx := context.Background()
	s, xid, oid := residentPart(t, func(g *gorgonia.ExprGraph, x *gorgonia.Node) *gorgonia.Node {
		w := gorgonia.NewConstant(tensor.New(tensor.WithShape(3, 1), tensor.WithBacking([]float64{1, 10, 100})))
		return gorgonia.Must(gorgonia.Mul(x, w))
	})
	name := InputName(xid)
	kept := tensor.New(tensor.WithShape(4, 3), tensor.WithBacking([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}))
	if err := Keep(ctx, s, name, kept); err != nil {
		t.Fatal(err)
	}
	if s.store.resident[name] != kept {
		t.Errorf("Keep: the session holds a copy, want the tensor itself")
	}
	out, err := s.Forward(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out[oid].Float64s(), []float64{321, 654, 987, 1320}; !equalFloats(got, want) {
		t.Errorf("after Keep: got %v, want %v", got, want)
	}
	if !s.slots.Lookup(0).direct[xid] || s.slots.Lookup(0).in[xid] != nil {
		t.Errorf("the kept input is bound directly: %v; the slot made an input buffer for it: %v", s.slots.Lookup(0).direct[xid], s.slots.Lookup(0).in[xid] != nil)
	}
	put := tensor.New(tensor.WithShape(4, 3), tensor.WithBacking(make([]float64, 12)))
	if err := s.Put(ctx, name, put); err != nil {
		t.Fatal(err)
	}
	if s.store.resident[name] == put {
		t.Errorf("Put: the session holds the caller's tensor, want a copy")
	}
	other := tensor.New(tensor.WithShape(4, 3), tensor.WithBacking(make([]float64, 12)))
	if err := Keep(ctx, onlySession{s}, name, other); err != nil {
		t.Fatal(err)
	}
	if s.store.resident[name] == other {
		t.Errorf("Keep through a session that is not a Keeper: the tensor was not copied")
	}
	// a bad name or shape is refused as by Put
	if err := Keep(ctx, s, name, tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(make([]float64, 6)))); err == nil {
		t.Errorf("Keep of a wrongly shaped input: got no error")
	}
	if err := Keep(ctx, s, InputName(9999), kept); err == nil {
		t.Errorf("Keep of an unknown input: got no error")
	}
}

// TestClosedSessionIsCollected checks that a session, closed or only
// dropped, frees its machine and what the machine holds: the tensor it
// kept and the slot's buffers. The machine carries a finalizer in
// Gorgonia, and the cycle through it (the gate's callback holds the slot,
// which holds the machine) was never collected; and a session dropped
// after a Forward has its machine waiting at the gate for the Backward,
// which a cleanup on the handle ends.
func TestClosedSessionIsCollected(t *testing.T) {
	for _, close := range []bool{true, false} {
		ctx := context.Background()
		var kept weak.Pointer[float64]
		var machine weak.Pointer[slot]
		func() {
			s, xid, _ := openResidentPart(t, func(g *gorgonia.ExprGraph, x *gorgonia.Node) *gorgonia.Node {
				w := gorgonia.NewConstant(tensor.New(tensor.WithShape(3, 1), tensor.WithBacking([]float64{1, 10, 100})))
				return gorgonia.Must(gorgonia.Mul(x, w))
			})
			data := make([]float64, 12)
			if err := Keep(ctx, s, InputName(xid), tensor.New(tensor.WithShape(4, 3), tensor.WithBacking(data))); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Forward(ctx, 0, nil); err != nil {
				t.Fatal(err)
			}
			kept, machine = weak.Make(&data[0]), weak.Make(s.slots.Lookup(0))
			if close {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}()
		for i := 0; i < 20 && (kept.Value() != nil || machine.Value() != nil); i++ {
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
		if kept.Value() != nil {
			t.Errorf("closed %v: the kept tensor's data outlived the session", close)
		}
		if machine.Value() != nil {
			t.Errorf("closed %v: the slot (and its machine) outlived the session", close)
		}
	}
}

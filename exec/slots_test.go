package exec_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

func TestSlots(t *testing.T) {
	s := exec.NewSlots[int](3, 4)
	if s.Count() != 4 {
		t.Errorf("Count: got %d, want 4", s.Count())
	}
	built := 0
	build := func(mb int) (*int, error) {
		built++
		v := 10 * mb
		return &v, nil
	}
	for _, mb := range []int{-1, 4} {
		_, err := s.Slot(mb, build)
		var oe *exec.OrderError
		if !errors.As(err, &oe) || oe.Part != 3 || oe.MicroBatch != mb {
			t.Errorf("Slot(%d): got %v, want an *OrderError for part 3, micro-batch %d", mb, err, mb)
		}
	}
	a, err := s.Slot(2, build)
	if err != nil || *a != 20 {
		t.Fatalf("Slot(2): got %v, %v; want 20", a, err)
	}
	if b, _ := s.Slot(2, build); b != a || built != 1 {
		t.Errorf("second Slot(2): got a new slot (built %d times), want the first", built)
	}
	fail := errors.New("no memory")
	if _, err := s.Slot(1, func(int) (*int, error) { return nil, fail }); err != fail {
		t.Errorf("Slot(1) whose build fails: got %v, want the build's error", err)
	}
	if s.Lookup(1) != nil || s.Lookup(0) != nil || s.Lookup(9) != nil || s.Lookup(2) != a {
		t.Errorf("Lookup: a failed or unused index holds a slot, or index 2 lost its own")
	}

	if _, err := s.Pending(2); !errors.Is(err, exec.ErrOrder) {
		t.Errorf("Pending(2) before SetPending: got %v, want ErrOrder", err)
	}
	if _, err := s.Pending(0); !errors.Is(err, exec.ErrOrder) {
		t.Errorf("Pending(0) of an unused index: got %v, want ErrOrder", err)
	}
	s.SetPending(2, true)
	if p, err := s.Pending(2); err != nil || p != a || !s.IsPending(2) {
		t.Errorf("Pending(2) after SetPending: got %v, %v", p, err)
	}
	s.SetPending(2, false)
	if s.IsPending(2) {
		t.Errorf("IsPending(2) after SetPending false: got true")
	}

	if _, err := s.Slot(0, build); err != nil {
		t.Fatal(err)
	}
	var got []string
	for mb, v := range s.All() {
		got = append(got, fmt.Sprint(mb, ":", *v))
	}
	if want := []string{"0:0", "2:20"}; !slices.Equal(got, want) {
		t.Errorf("All: got %v, want %v", got, want)
	}
	s.Reset()
	for range s.All() {
		t.Errorf("All after Reset yields a slot")
	}
	if s.Lookup(2) != nil || s.IsPending(2) {
		t.Errorf("Reset kept a slot")
	}
}

// linearSpec is the spec of a one-part graph, y = x·w, with x fed and w
// learnable, asking for micro micro-batches.
func linearSpec(t *testing.T, micro int) (spec exec.SessionSpec, x, w *gorgonia.Node) {
	t.Helper()
	g := gorgonia.NewGraph()
	x = gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(2, 3), gorgonia.WithName("x"))
	w = gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(3, 1), gorgonia.WithName("w"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(3, 1), tensor.WithBacking([]float64{1, 2, 3}))))
	y := gorgonia.Must(gorgonia.Mul(x, w))
	ir, err := graph.FromGorgonia(g, graph.Learnables(w), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	return exec.SessionSpec{Part: 2, Graph: ir, DataInputs: []int64{int64(x.ID())}, Outputs: []int64{int64(y.ID())},
		Solver: exec.SGD(0.1, 0), MicroBatches: micro}, x, w
}

func TestCheckMicroBatches(t *testing.T) {
	for _, tc := range []struct {
		micro, limit, want int // want: the count refused, 0 for none
	}{
		{0, exec.DefaultMicroBatches, 0},
		{0, exec.DefaultMicroBatches - 1, exec.DefaultMicroBatches},
		{4, 4, 0},
		{5, 4, 5},
		{1, 1, 0},
	} {
		spec, _, _ := linearSpec(t, tc.micro)
		err := exec.CheckMicroBatches(&spec, tc.limit)
		var me *exec.MicroBatchLimitError
		switch {
		case tc.want == 0 && err != nil:
			t.Errorf("%d micro-batches, limit %d: got %v, want nil", tc.micro, tc.limit, err)
		case tc.want != 0 && (!errors.As(err, &me) || !errors.Is(err, exec.ErrSpec)):
			t.Errorf("%d micro-batches, limit %d: got %v, want a *MicroBatchLimitError", tc.micro, tc.limit, err)
		case tc.want != 0 && (me.Part != 2 || me.MicroBatches != tc.want || me.Limit != tc.limit):
			t.Errorf("%d micro-batches, limit %d: error says %+v", tc.micro, tc.limit, *me)
		}
	}
}

// TestCPUMicroBatchLimit checks that the CPU executor refuses at Open a
// spec asking for more micro-batches than WithMaxMicroBatches allows, the
// default count included, and that its sessions take only the indexes
// their spec asks for.
func TestCPUMicroBatchLimit(t *testing.T) {
	ctx := context.Background()
	e := exec.NewCPU(exec.WithMaxMicroBatches(4))
	for _, micro := range []int{5, 0} {
		spec, _, _ := linearSpec(t, micro)
		s, err := e.Open(ctx, spec)
		var me *exec.MicroBatchLimitError
		if !errors.As(err, &me) || me.Part != 2 || me.MicroBatches != spec.MicroBatchCount() || me.Limit != 4 {
			t.Errorf("open for %d micro-batches with a limit of 4: got %v, want a *MicroBatchLimitError", spec.MicroBatchCount(), err)
		}
		if s != nil {
			s.Close()
		}
	}
	spec, x, _ := linearSpec(t, 3)
	s, err := e.Open(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	feeds := map[int64]*tensor.Dense{int64(x.ID()): tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(make([]float64, 6)))}
	for mb := range 4 {
		_, err := s.Forward(ctx, mb, feeds)
		if mb < 3 && err != nil {
			t.Errorf("forward of micro-batch %d of 3: %v", mb, err)
		}
		var oe *exec.OrderError
		if mb == 3 && (!errors.As(err, &oe) || oe.MicroBatch != 3 || oe.Part != 2) {
			t.Errorf("forward of micro-batch 3 of 3: got %v, want an *OrderError", err)
		}
	}
}

// TestPipelineAsksForItsMicroBatches checks that the pipeline opens its
// sessions for the micro-batch count it runs: executors that hold fewer
// refuse at NewPipeline, not at a later Step.
func TestPipelineAsksForItsMicroBatches(t *testing.T) {
	m := mlpModel(tensor.Float64, 8, 4, 5, 3)
	ir, err := graph.FromGorgonia(m.G, graph.Learnables(m.Learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	var data []int64
	for _, n := range m.Data {
		data = append(data, int64(n.ID()))
	}
	execs := []exec.Executor{exec.NewCPU(exec.WithMaxMicroBatches(2)), exec.NewCPU(exec.WithMaxMicroBatches(2))}
	ctx := context.Background()
	p, err := exec.NewPipeline(ctx, ir, int64(m.Loss.ID()), data, chunks(ir, 2), execs, exec.WithMicroBatches(2))
	if err != nil {
		t.Fatalf("2 micro-batches on executors that hold 2: %v", err)
	}
	p.Close()
	_, err = exec.NewPipeline(ctx, ir, int64(m.Loss.ID()), data, chunks(ir, 2), execs, exec.WithMicroBatches(4))
	var me *exec.MicroBatchLimitError
	if !errors.As(err, &me) || me.MicroBatches != 4 || me.Limit != 2 {
		t.Errorf("4 micro-batches on executors that hold 2: got %v, want a *MicroBatchLimitError", err)
	}
}

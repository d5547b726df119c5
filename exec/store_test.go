package exec_test

import (
	"errors"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// fakeParams is a ParamStore in maps, with one solver slot, "m", and an
// error to return from its getters and setters when set.
type fakeParams struct {
	steps  int
	params map[int]*tensor.Dense
	state  map[int]*tensor.Dense
	err    error
}

func newFakeParams() *fakeParams {
	return &fakeParams{params: map[int]*tensor.Dense{}, state: map[int]*tensor.Dense{}}
}

func (p *fakeParams) Steps() int           { return p.steps }
func (p *fakeParams) SetSteps(n int)       { p.steps = n }
func (p *fakeParams) HasParam(i int) bool  { return p.params[i] != nil }
func (p *fakeParams) StateSlots() []string { return []string{"m"} }
func (p *fakeParams) Param(i int) (*tensor.Dense, error) {
	return p.params[i].Clone().(*tensor.Dense), p.err
}
func (p *fakeParams) SetParam(i int, t *tensor.Dense) error {
	if p.err != nil {
		return p.err
	}
	p.params[i] = t.Clone().(*tensor.Dense)
	return nil
}
func (p *fakeParams) State(i int, slot string) (*tensor.Dense, error) {
	return p.state[i].Clone().(*tensor.Dense), p.err
}
func (p *fakeParams) SetState(i int, slot string, t *tensor.Dense) error {
	if p.err != nil {
		return p.err
	}
	p.state[i] = t.Clone().(*tensor.Dense)
	return nil
}

func (p *fakeParams) Grad(i int) (*tensor.Dense, error) {
	return p.params[i].Clone().(*tensor.Dense), p.err
}
func (p *fakeParams) SetGrad(i int, t *tensor.Dense) error { return p.err }

func dense(shape []int, v ...float64) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

// wantErr fails unless err is a typed error of the kind that want names.
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	var (
		fe *exec.FeedError
		ne *exec.NameError
		oe *exec.OrderError
		re *exec.RunError
	)
	ok := false
	switch want {
	case "feed":
		ok = errors.As(err, &fe) && fe.Part == 2
	case "name":
		ok = errors.As(err, &ne) && ne.Part == 2
	case "order":
		ok = errors.As(err, &oe) && oe.Part == 2
	case "run":
		ok = errors.As(err, &re) && re.Part == 2
	}
	if !ok {
		t.Errorf("%s: got %v, want a %s error for part 2", what, err, want)
	}
}

func TestStorePutGet(t *testing.T) {
	spec, x, w := linearSpec(t, 1)
	p := newFakeParams()
	s := exec.NewStore(&spec, p)
	wName, mName := exec.ParamName(int64(w.ID())), exec.StateName(int64(w.ID()), "m")

	// other names: a copy, or with keep the tensor itself
	a := dense([]int{2}, 1, 2)
	if err := s.Put("a", a, false); err != nil {
		t.Fatal(err)
	}
	b := dense([]int{2}, 3, 4)
	if err := s.Put("b", b, true); err != nil {
		t.Fatal(err)
	}
	a.Float64s()[0], b.Float64s()[0] = -1, -1
	got, err := s.Get("a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if got["a"].Float64s()[0] != 1 || got["b"].Float64s()[0] != -1 {
		t.Errorf("Put copies and Put with keep holds the tensor: got a %v, b %v", got["a"].Float64s(), got["b"].Float64s())
	}
	got["a"].Float64s()[1] = -1
	if again, _ := s.Get("a"); again["a"].Float64s()[1] != 2 {
		t.Errorf("Get hands out the store's own tensor, want a copy")
	}
	wantErr(t, "put nil", s.Put("a", nil, false), "feed")
	_, err = s.Get("nope")
	wantErr(t, "get of an unknown name", err, "name")

	// the update count
	wantErr(t, "put of a float step count", s.Put(exec.SolverStepName, dense([]int{1}, 3), false), "feed")
	if err := s.Put(exec.SolverStepName, tensor.New(tensor.FromScalar(7)), false); err != nil || p.steps != 7 {
		t.Errorf("put of the step count: %v, steps %d, want 7", err, p.steps)
	}
	if got, err := s.Get(exec.SolverStepName); err != nil || got[exec.SolverStepName].Data() != 7 {
		t.Errorf("get of the step count: got %v, %v, want 7", got, err)
	}

	// parameters and their state
	wantErr(t, "put of an unknown parameter", s.Put(exec.ParamName(1<<40), dense([]int{3, 1}, 1, 2, 3), false), "name")
	err = s.Put(wName, dense([]int{1, 3}, 1, 2, 3), false)
	var fe *exec.FeedError
	if !errors.As(err, &fe) || fe.Name != wName {
		t.Errorf("put of a mis-shaped parameter: got %v, want a *FeedError naming %q", err, wName)
	}
	wantErr(t, "put of state before its parameter", s.Put(mName, dense([]int{3, 1}, 1, 2, 3), false), "order")
	if err := s.Put(wName, dense([]int{3, 1}, 4, 5, 6), false); err != nil || p.params[0].Float64s()[2] != 6 {
		t.Errorf("put of the parameter: %v, holds %v", err, p.params[0])
	}
	wantErr(t, "put of an unknown state", s.Put(exec.StateName(int64(w.ID()), "v"), dense([]int{3, 1}, 1, 2, 3), false), "name")
	if err := s.Put(mName, dense([]int{3, 1}, 7, 8, 9), false); err != nil || p.state[0].Float64s()[0] != 7 {
		t.Errorf("put of the state: %v, holds %v", err, p.state[0])
	}
	got, err = s.Get(wName, mName)
	if err != nil || got[wName].Float64s()[0] != 4 || got[mName].Float64s()[0] != 7 {
		t.Errorf("get of the parameter and its state: got %v, %v", got, err)
	}
	_, err = s.Get(exec.StateName(int64(w.ID()), "v"))
	wantErr(t, "get of an unknown state", err, "name")

	// errors of the ParamStore
	p.err = errors.New("device lost")
	wantErr(t, "put when the ParamStore fails", s.Put(wName, dense([]int{3, 1}, 1, 2, 3), false), "run")
	_, err = s.Get(mName)
	wantErr(t, "get when the ParamStore fails", err, "run")
	p.err = exec.ErrUnknownName
	wantErr(t, "put the ParamStore calls unknown", s.Put(mName, dense([]int{3, 1}, 1, 2, 3), false), "name")
	p.err = nil

	// resident inputs
	xName := exec.InputName(int64(x.ID()))
	wantErr(t, "put of an unknown input", s.Put(exec.InputName(1<<40), dense([]int{2, 3}, 1, 2, 3, 4, 5, 6), false), "name")
	wantErr(t, "put of a mis-shaped input", s.Put(xName, dense([]int{3, 2}, 1, 2, 3, 4, 5, 6), false), "feed")
	if _, ok := s.Input(int64(x.ID())); ok {
		t.Errorf("Input before its Put: found one")
	}
	if err := s.Put(xName, dense([]int{2, 3}, 1, 2, 3, 4, 5, 6), false); err != nil {
		t.Fatal(err)
	}
	if in, ok := s.Input(int64(x.ID())); !ok || in.Float64s()[5] != 6 {
		t.Errorf("Input after its Put: got %v, %v", in, ok)
	}
	s.Clear()
	if _, err := s.Get("a"); err == nil {
		t.Errorf("get after Clear: got no error")
	}
}

func TestStoreFeeds(t *testing.T) {
	spec, x, w := linearSpec(t, 1)
	p := newFakeParams()
	s := exec.NewStore(&spec, p)
	xid := int64(x.ID())
	if ids := s.FeedIDs(); len(ids) != 1 || ids[0] != xid || !s.IsFeed(xid) || s.IsFeed(int64(w.ID())) {
		t.Errorf("FeedIDs: got %v, want [%d]", ids, xid)
	}
	xv := dense([]int{2, 3}, 1, 2, 3, 4, 5, 6)
	for _, tc := range []struct {
		name  string
		feeds map[int64]*tensor.Dense
		node  int64
	}{
		{"unknown feed", map[int64]*tensor.Dense{xid: xv, 1 << 40: xv}, 1 << 40},
		{"missing", nil, xid},
		{"mis-shaped", map[int64]*tensor.Dense{xid: dense([]int{6}, 1, 2, 3, 4, 5, 6)}, xid},
		{"parameter without a value", map[int64]*tensor.Dense{xid: xv}, int64(w.ID())},
	} {
		_, _, err := s.Feeds(5, tc.feeds)
		var fe *exec.FeedError
		if !errors.As(err, &fe) || fe.Part != 2 || fe.Node != tc.node || fe.MicroBatch != 5 {
			t.Errorf("%s: got %v, want a *FeedError for part 2, node %d, micro-batch 5", tc.name, err, tc.node)
		}
	}
	if err := s.Put(exec.ParamName(int64(w.ID())), dense([]int{3, 1}, 1, 2, 3), false); err != nil {
		t.Fatal(err)
	}
	vals, res, err := s.Feeds(0, map[int64]*tensor.Dense{xid: xv})
	if err != nil || vals[0] != xv || res[0] {
		t.Errorf("fed: got %v, resident %v, %v; want the feed", vals, res, err)
	}
	if err := s.Put(exec.InputName(xid), xv, true); err != nil {
		t.Fatal(err)
	}
	vals, res, err = s.Feeds(0, nil)
	if err != nil || vals[0] != xv || !res[0] {
		t.Errorf("not fed: got %v, resident %v, %v; want the resident input", vals, res, err)
	}
}

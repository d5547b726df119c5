package exec_test

import (
	"errors"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

func TestResidentNames(t *testing.T) {
	for _, tc := range []struct {
		name     string
		id       int64
		slot     string
		param    bool
		input    bool
		inputID  int64
		describe string
	}{
		{exec.ParamName(7), 7, "", true, false, 0, "parameter"},
		{exec.StateName(7, "m"), 7, "m", true, false, 0, "solver state"},
		{exec.InputName(3), 0, "", false, true, 3, "resident input"},
		{exec.SolverStepName, 0, "", false, false, 0, "step count"},
		{"param/x", 0, "", false, false, 0, "bad id"},
		{"input/3/extra", 0, "", false, false, 0, "input with a suffix"},
		{"shard", 0, "", false, false, 0, "other"},
	} {
		id, slot, ok := exec.ParseParamName(tc.name)
		if ok != tc.param || (ok && (id != tc.id || slot != tc.slot)) {
			t.Errorf("%s %q: ParseParamName = %d, %q, %v; want %d, %q, %v", tc.describe, tc.name, id, slot, ok, tc.id, tc.slot, tc.param)
		}
		in, ok := exec.ParseInputName(tc.name)
		if ok != tc.input || (ok && in != tc.inputID) {
			t.Errorf("%s %q: ParseInputName = %d, %v; want %d, %v", tc.describe, tc.name, in, ok, tc.inputID, tc.input)
		}
	}
}

func TestCheckTensor(t *testing.T) {
	n := &graph.Node{ID: 5, Shape: graph.Shape{2, 3}, DType: graph.Float32}
	ok := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(2, 3))
	if err := exec.CheckTensor(1, 0, n, ok); err != nil {
		t.Fatalf("matching tensor: %v", err)
	}
	for what, bad := range map[string]*tensor.Dense{
		"nil":   nil,
		"dtype": tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(2, 3)),
		"shape": tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(3, 2)),
	} {
		err := exec.CheckTensor(1, 0, n, bad)
		var fe *exec.FeedError
		if !errors.As(err, &fe) || fe.Part != 1 || fe.Node != 5 || !errors.Is(err, exec.ErrFeed) {
			t.Errorf("%s: got %v, want a *FeedError for part 1, node 5", what, err)
		}
	}
}

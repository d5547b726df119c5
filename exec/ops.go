package exec

import (
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"sync/atomic"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file holds the three Gorgonia ops with which a session splits one
// tape-machine program into a forward and a backward half without
// recomputing anything:
//
//   - gateOp reads the part's outputs (and loss) at the end of the forward
//     half, hands copies to Forward, and blocks the machine until Backward
//     brings the gradients of the outputs, or the run is aborted;
//   - pickOp, one per output, depends on the gate and yields the gradient
//     of that output, seeding Backpropagate;
//   - sinkOp reads the gradients at the end of the program and copies them
//     out before the machine can reuse their buffers.
//
// None of them is differentiable; they live outside the part's math.

var opSerial atomic.Uint32

// errAborted ends a run that was waiting for its backward half.
var errAborted = errors.New("exec: run aborted")

// hookOp is the shared body of gateOp and sinkOp: n inputs of the given
// types, a scalar result, and a callback at run time.
type hookOp struct {
	name  string
	id    uint32
	types []hm.Type
	fn    func(in []gorgonia.Value) error
}

func newHookOp(name string, children gorgonia.Nodes, fn func([]gorgonia.Value) error) *hookOp {
	types := make([]hm.Type, len(children))
	for i, c := range children {
		types[i] = c.Type()
	}
	return &hookOp{name: name, id: opSerial.Add(1), types: types, fn: fn}
}

func (op *hookOp) Arity() int { return len(op.types) }

func (op *hookOp) Type() hm.Type {
	ts := append(append([]hm.Type{}, op.types...), tensor.Float64)
	return hm.NewFnType(ts...)
}

func (op *hookOp) InferShape(...gorgonia.DimSizer) (tensor.Shape, error) {
	return tensor.ScalarShape(), nil
}

func (op *hookOp) Do(in ...gorgonia.Value) (gorgonia.Value, error) {
	if err := op.fn(in); err != nil {
		return nil, err
	}
	return gorgonia.NewF64(0), nil
}

func (op *hookOp) ReturnsPtr() bool     { return false }
func (op *hookOp) CallsExtern() bool    { return false }
func (op *hookOp) OverwritesInput() int { return -1 }
func (op *hookOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "rookery.%s#%d", op.name, op.id)
}
func (op *hookOp) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}
func (op *hookOp) String() string { return fmt.Sprintf("rookery.%s#%d", op.name, op.id) }

// DiffWRT says that no input is differentiable, which keeps Backpropagate's
// analysis away from the op.
func (op *hookOp) DiffWRT(n int) []bool { return make([]bool, n) }

// SymDiff is never called: the op is not differentiable.
func (op *hookOp) SymDiff(gorgonia.Nodes, *gorgonia.Node, *gorgonia.Node) (gorgonia.Nodes, error) {
	return nil, fmt.Errorf("exec: %s is not differentiable", op.name)
}

// pickOp yields the gradient that Backward delivered for one output.
type pickOp struct {
	id    uint32
	gate  hm.Type
	typ   hm.Type
	shape tensor.Shape
	value *gorgonia.Value // set before the gate releases the machine
}

func newPickOp(gate, like *gorgonia.Node, value *gorgonia.Value) *pickOp {
	return &pickOp{id: opSerial.Add(1), gate: gate.Type(), typ: like.Type(), shape: like.Shape().Clone(), value: value}
}

func (op *pickOp) Arity() int    { return 1 }
func (op *pickOp) Type() hm.Type { return hm.NewFnType(op.gate, op.typ) }
func (op *pickOp) InferShape(...gorgonia.DimSizer) (tensor.Shape, error) {
	return op.shape.Clone(), nil
}
func (op *pickOp) Do(...gorgonia.Value) (gorgonia.Value, error) {
	if *op.value == nil {
		return nil, errAborted
	}
	return *op.value, nil
}
func (op *pickOp) ReturnsPtr() bool     { return false }
func (op *pickOp) CallsExtern() bool    { return false }
func (op *pickOp) OverwritesInput() int { return -1 }
func (op *pickOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "rookery.pick#%d", op.id)
}
func (op *pickOp) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}
func (op *pickOp) String() string       { return fmt.Sprintf("rookery.pick#%d", op.id) }
func (op *pickOp) DiffWRT(n int) []bool { return make([]bool, n) }
func (op *pickOp) SymDiff(gorgonia.Nodes, *gorgonia.Node, *gorgonia.Node) (gorgonia.Nodes, error) {
	return nil, errors.New("exec: pick is not differentiable")
}

// readInto copies a machine value into dst (a float tensor of the same
// size, or a scalar tensor for a scalar value).
func readInto(dst *tensor.Dense, v gorgonia.Value) error {
	switch v := v.(type) {
	case *tensor.Dense:
		if v.Dtype() != dst.Dtype() || v.Shape().TotalSize() != dst.Shape().TotalSize() {
			return fmt.Errorf("exec: value %v %v does not fit %v %v", v.Dtype(), v.Shape(), dst.Dtype(), dst.Shape())
		}
		if !v.IsNativelyAccessible() || v.RequiresIterator() {
			v = v.Materialize().(*tensor.Dense)
		}
		copyDense(dst, v)
		return nil
	case gorgonia.Scalar:
		switch d := v.Data().(type) {
		case float64:
			if dst.Dtype() == tensor.Float64 {
				dst.Float64s()[0] = d
				return nil
			}
		case float32:
			if dst.Dtype() == tensor.Float32 {
				dst.Float32s()[0] = d
				return nil
			}
		}
	}
	return fmt.Errorf("exec: cannot read %T into %v %v", v, dst.Dtype(), dst.Shape())
}

package graph

import (
	"errors"
	"fmt"
)

// Sentinel errors to branch on with errors.Is.
var (
	// ErrInvalid marks a graph or node that is inconsistent.
	ErrInvalid = errors.New("graph: invalid")
	// ErrDuplicateID marks two nodes with the same id.
	ErrDuplicateID = errors.New("graph: duplicate node id")
	// ErrLimit marks input that exceeds a decoding limit.
	ErrLimit = errors.New("graph: limit exceeded")
	// ErrMalformed marks bytes that do not decode.
	ErrMalformed = errors.New("graph: malformed encoding")
)

// UnsupportedOpError says that a Gorgonia node's op has no IR equivalent.
type UnsupportedOpError struct {
	Node   int64  // Gorgonia node id
	GoType string // the op's Go type, e.g. "gorgonia.upsampleOp"
	Detail string // what about it is unsupported, if the type itself is known
}

func (e *UnsupportedOpError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("graph: node %d: op %s: %s", e.Node, e.GoType, e.Detail)
	}
	return fmt.Sprintf("graph: node %d: unsupported op type %s", e.Node, e.GoType)
}

// UnknownKindError says that an IR node names an op kind that this version
// does not know (for instance in bytes from the network).
type UnknownKindError struct {
	Node int64
	Kind OpKind
}

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("graph: node %d: unknown op kind %q", e.Node, e.Kind)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *UnknownKindError) Is(t error) bool { return t == ErrInvalid }

// NoLoweringError says that Lower met a node whose kind Gorgonia has no
// op for (an Extension kind, see Props) and was given no LowerFunc to
// build it: exec.Lower, or LowerWith with exec's LowerFunc, builds it.
type NoLoweringError struct {
	Node int64
	Kind OpKind
}

func (e *NoLoweringError) Error() string {
	return fmt.Sprintf("graph: node %d: op kind %q has no Gorgonia op: lower the graph with a LowerFunc that builds it (exec.Lower)", e.Node, e.Kind)
}

// DanglingInputError says that a node names an input that is not in the graph.
type DanglingInputError struct {
	Node, Input int64
}

func (e *DanglingInputError) Error() string {
	return fmt.Sprintf("graph: node %d: input %d is not in the graph", e.Node, e.Input)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *DanglingInputError) Is(t error) bool { return t == ErrInvalid }

// CycleError says that the nodes cannot be ordered topologically.
type CycleError struct {
	Nodes []int64 // some of the nodes on or behind the cycle
}

func (e *CycleError) Error() string {
	return fmt.Sprintf("graph: cycle through nodes %v", e.Nodes)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *CycleError) Is(t error) bool { return t == ErrInvalid }

// ArityError says that a node has the wrong number of inputs for its op.
type ArityError struct {
	Node     int64
	Kind     OpKind
	Min, Max int // Max < 0: no upper bound
	Got      int
}

func (e *ArityError) Error() string {
	want := fmt.Sprint(e.Min)
	switch {
	case e.Max < 0:
		want = fmt.Sprintf("at least %d", e.Min)
	case e.Max != e.Min:
		want = fmt.Sprintf("%d to %d", e.Min, e.Max)
	}
	return fmt.Sprintf("graph: node %d: op %s takes %s inputs, got %d", e.Node, e.Kind, want, e.Got)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ArityError) Is(t error) bool { return t == ErrInvalid }

// ShapeError says that a node's shape is not what its op computes, or is
// not a valid shape.
type ShapeError struct {
	Node      int64
	Want, Got Shape
	Reason    string
}

func (e *ShapeError) Error() string {
	if e.Want != nil {
		return fmt.Sprintf("graph: node %d: shape %v, want %v: %s", e.Node, e.Got, e.Want, e.Reason)
	}
	return fmt.Sprintf("graph: node %d: shape %v: %s", e.Node, e.Got, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ShapeError) Is(t error) bool { return t == ErrInvalid }

// NodeError wraps any other problem with one node.
type NodeError struct {
	ID  int64
	Err error
}

func (e *NodeError) Error() string { return fmt.Sprintf("graph: node %d: %v", e.ID, e.Err) }

func (e *NodeError) Unwrap() error { return e.Err }

// LimitError says that decoding stopped because input exceeded a limit.
type LimitError struct {
	What       string // "nodes", "rank", "elements", "attribute bytes", ...
	Limit, Got int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("graph: %s: %d exceeds the limit of %d", e.What, e.Got, e.Limit)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(t error) bool { return t == ErrLimit }

package graph

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// UnmarshalBinary replaces the graph with the one encoded in b, decoded
// with DefaultLimits. On error the graph is left unchanged.
func (g *Graph) UnmarshalBinary(b []byte) error {
	if g == nil {
		return fmt.Errorf("%w: UnmarshalBinary into a nil graph", ErrInvalid)
	}
	d, err := Decode(b, defaultLimits)
	if err != nil {
		return err
	}
	*g = *d
	return nil
}

// Decode decodes a graph that MarshalBinary encoded, from bytes that may
// come from anyone. It checks b's length, then every count and size in it
// against lim (before proto.Unmarshal allocates anything from them), then
// orders the nodes topologically by their inputs (they may arrive in any
// order) and adds them one by one, so the result has passed every check
// that Graph.Add makes.
//
// Errors: a *LimitError when lim is exceeded; ErrMalformed for bytes that
// are not a rookery.v1 Graph or break its rules (unknown enum values, bad
// tensor data); ErrVersion for another format version; *DanglingInputError,
// *CycleError, a *NodeError wrapping ErrDuplicateID, *UnknownKindError,
// *ArityError, *ShapeError or *NodeError for graphs that are inconsistent.
func Decode(b []byte, lim Limits) (*Graph, error) {
	lim = lim.orDefault()
	if int64(len(b)) > lim.MaxBytes {
		return nil, &LimitError{What: "bytes", Limit: lim.MaxBytes, Got: int64(len(b))}
	}
	if err := scanWire(wireGraph, b, lim); err != nil {
		return nil, err
	}
	var pb rookeryv1.Graph
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return DecodeGraph(&pb, lim)
}

// DecodeGraph rebuilds a graph from its rookery.v1 message, checking it
// exactly as Decode does after parsing. It does not keep references into pb.
func DecodeGraph(pb *rookeryv1.Graph, lim Limits) (*Graph, error) {
	if pb == nil {
		return nil, fmt.Errorf("%w: no graph", ErrMalformed)
	}
	lim = lim.orDefault()
	if pb.Version != FormatVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads version %d", ErrVersion, pb.Version, FormatVersion)
	}
	if maxNodes := min(lim.MaxNodes, math.MaxInt32); len(pb.Nodes) > maxNodes { // positions are int32
		return nil, &LimitError{What: "nodes", Limit: int64(maxNodes), Got: int64(len(pb.Nodes))}
	}
	// Check every size first, so that nothing below allocates beyond lim.
	for i, n := range pb.Nodes {
		if n == nil {
			return nil, fmt.Errorf("%w: node %d of the message is missing", ErrMalformed, i)
		}
		if err := checkWireNode(n, lim); err != nil {
			return nil, err
		}
	}
	order, err := wireTopoOrder(pb.Nodes)
	if err != nil {
		return nil, err
	}
	g := New()
	g.nodes = make([]Node, 0, len(pb.Nodes))
	g.index = make(map[int64]int, len(pb.Nodes))
	for k := range pb.Nodes {
		i := k
		if order != nil {
			i = int(order[k])
		}
		n, err := decodeNode(pb.Nodes[i], lim)
		if err != nil {
			return nil, err
		}
		if err := addDecoded(g, n); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// errCheckPanicked marks a node whose checks panicked while decoding: a bug
// in this package, reported as an invalid node rather than taking the
// process down with bytes that came from the network.
var errCheckPanicked = fmt.Errorf("%w: checking the node panicked", ErrInvalid)

// addDecoded is g.Add that turns a panic into an error.
func addDecoded(g *Graph, n Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &NodeError{ID: n.ID, Err: fmt.Errorf("%w: %v", errCheckPanicked, r)}
		}
	}()
	return g.Add(n)
}

// checkWireNode checks a node message against the limits and the encoding's
// rules without allocating.
func checkWireNode(n *rookeryv1.Node, lim Limits) error {
	wrap := func(err error) error { return &NodeError{ID: n.Id, Err: err} }
	if err := checkWireName("op kind", n.Kind, lim); err != nil {
		return wrap(err)
	}
	if err := checkWireName("name", n.Name, lim); err != nil {
		return wrap(err)
	}
	if _, err := dtypeFromProto(n.Dtype); err != nil {
		return wrap(err)
	}
	if _, err := roleFromProto(n.Role); err != nil {
		return wrap(err)
	}
	if len(n.Inputs) > lim.MaxInputs {
		return wrap(&LimitError{What: "inputs", Limit: int64(lim.MaxInputs), Got: int64(len(n.Inputs))})
	}
	if _, err := checkWireDims(n.Shape, lim); err != nil {
		var nonPos *wireDimError
		if errors.As(err, &nonPos) {
			return &ShapeError{Node: n.Id, Got: shapeFromWire(n.Shape), Reason: "dimensions must be positive"}
		}
		return wrap(err)
	}
	if len(n.Attrs) > lim.MaxAttrs {
		return wrap(&LimitError{What: "attributes", Limit: int64(lim.MaxAttrs), Got: int64(len(n.Attrs))})
	}
	for _, a := range n.Attrs {
		if err := checkWireAttr(a, lim); err != nil {
			return wrap(err)
		}
	}
	if n.Value != nil {
		if err := checkWireTensor(n.Value, lim); err != nil {
			return wrap(fmt.Errorf("value: %w", err))
		}
	}
	return nil
}

func checkWireName(what, s string, lim Limits) error {
	if len(s) > lim.MaxNameLen {
		return fmt.Errorf("%s: %w", what, &LimitError{What: "name bytes", Limit: int64(lim.MaxNameLen), Got: int64(len(s))})
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, what)
	}
	return nil
}

func checkWireAttr(a *rookeryv1.Attr, lim Limits) error {
	if a == nil {
		return fmt.Errorf("%w: attribute missing", ErrMalformed)
	}
	if err := checkWireName("attribute name", a.Name, lim); err != nil {
		return err
	}
	elems := func(n int) error {
		if n > lim.MaxAttrElements {
			return fmt.Errorf("attribute %q: %w", a.Name, &LimitError{What: "attribute elements", Limit: int64(lim.MaxAttrElements), Got: int64(n)})
		}
		return nil
	}
	switch v := a.Value.(type) {
	case *rookeryv1.Attr_IntValue, *rookeryv1.Attr_FloatValue, *rookeryv1.Attr_BoolValue:
		return nil
	case *rookeryv1.Attr_StringValue:
		if !utf8.ValidString(v.StringValue) {
			return fmt.Errorf("%w: attribute %q: string is not valid UTF-8", ErrMalformed, a.Name)
		}
		return elems(len(v.StringValue))
	case *rookeryv1.Attr_Ints:
		return checkWireInts(a.Name, v.Ints, elems)
	case *rookeryv1.Attr_Shape:
		return checkWireInts(a.Name, v.Shape, elems)
	case *rookeryv1.Attr_Axes:
		return checkWireInts(a.Name, v.Axes, elems)
	case *rookeryv1.Attr_Floats:
		return elems(len(v.Floats.GetValues()))
	case *rookeryv1.Attr_Tensor:
		if err := checkWireTensor(v.Tensor, lim); err != nil {
			return fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		return nil
	case nil:
		return fmt.Errorf("%w: attribute %q has no value", ErrMalformed, a.Name)
	}
	return fmt.Errorf("%w: attribute %q has a value of type %T", ErrMalformed, a.Name, a.Value)
}

func checkWireInts(name string, v *rookeryv1.Ints, elems func(int) error) error {
	if err := elems(len(v.GetValues())); err != nil {
		return err
	}
	for _, x := range v.GetValues() {
		if x < math.MinInt || x > math.MaxInt {
			return fmt.Errorf("%w: attribute %q: %d does not fit in an int", ErrMalformed, name, x)
		}
	}
	return nil
}

func roleFromProto(r rookeryv1.Role) (Role, error) {
	switch r {
	case rookeryv1.Role_ROLE_INPUT:
		return RoleInput, nil
	case rookeryv1.Role_ROLE_LEARNABLE:
		return RoleLearnable, nil
	case rookeryv1.Role_ROLE_CONSTANT:
		return RoleConstant, nil
	case rookeryv1.Role_ROLE_OP:
		return RoleOp, nil
	case rookeryv1.Role_ROLE_UNSPECIFIED:
		return RoleInvalid, fmt.Errorf("%w: role unspecified", ErrMalformed)
	}
	return RoleInvalid, fmt.Errorf("%w: unknown role enum value %d", ErrMalformed, int32(r))
}

// decodeNode converts a node message that checkWireNode accepted.
func decodeNode(pb *rookeryv1.Node, lim Limits) (Node, error) {
	dt, err := dtypeFromProto(pb.Dtype)
	if err != nil {
		return Node{}, &NodeError{ID: pb.Id, Err: err}
	}
	role, err := roleFromProto(pb.Role)
	if err != nil {
		return Node{}, &NodeError{ID: pb.Id, Err: err}
	}
	n := Node{
		ID:     pb.Id,
		Role:   role,
		Inputs: slices.Clone(pb.Inputs),
		DType:  dt,
		Name:   pb.Name,
	}
	if len(pb.Shape) > 0 {
		n.Shape = shapeFromWire(pb.Shape) // checkWireNode bounded every dimension
	}
	var attrs []Attr
	if len(pb.Attrs) > 0 {
		attrs = make([]Attr, len(pb.Attrs))
	}
	for i, pa := range pb.Attrs {
		a, err := decodeAttr(pa, lim)
		if err != nil {
			return Node{}, &NodeError{ID: pb.Id, Err: err}
		}
		attrs[i] = a
	}
	n.Op = NewOp(OpKind(pb.Kind), attrs...)
	if pb.Value != nil {
		v, err := DecodeTensor(pb.Value, lim)
		if err != nil {
			return Node{}, &NodeError{ID: pb.Id, Err: fmt.Errorf("value: %w", err)}
		}
		n.Value = v
	}
	return n, nil
}

func decodeAttr(pa *rookeryv1.Attr, lim Limits) (Attr, error) {
	a := Attr{Name: pa.Name}
	switch v := pa.Value.(type) {
	case *rookeryv1.Attr_IntValue:
		a.Type, a.Int = AttrInt, v.IntValue
	case *rookeryv1.Attr_FloatValue:
		a.Type, a.Float = AttrFloat, v.FloatValue
	case *rookeryv1.Attr_BoolValue:
		a.Type, a.Bool = AttrBool, v.BoolValue
	case *rookeryv1.Attr_StringValue:
		a.Type, a.String = AttrString, v.StringValue
	case *rookeryv1.Attr_Ints:
		a.Type, a.Ints = AttrInts, intsFromWire(v.Ints.GetValues())
	case *rookeryv1.Attr_Shape:
		a.Type, a.Ints = AttrShape, intsFromWire(v.Shape.GetValues())
	case *rookeryv1.Attr_Axes:
		a.Type, a.Ints = AttrAxes, intsFromWire(v.Axes.GetValues())
	case *rookeryv1.Attr_Floats:
		a.Type, a.Floats = AttrFloats, append([]float64{}, v.Floats.GetValues()...)
	case *rookeryv1.Attr_Tensor:
		t, err := DecodeTensor(v.Tensor, lim)
		if err != nil {
			return Attr{}, fmt.Errorf("attribute %q: %w", pa.Name, err)
		}
		a.Type, a.Tensor = AttrTensor, t
	default:
		return Attr{}, fmt.Errorf("%w: attribute %q has no value", ErrMalformed, pa.Name)
	}
	return a, nil
}

// intsFromWire converts values that checkWireInts accepted; like the attribute
// constructors it never returns nil.
func intsFromWire(s []int64) []int {
	out := make([]int, len(s))
	for i, v := range s {
		out[i] = int(v)
	}
	return out
}

package graph

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// FormatVersion is the version of the encoding that MarshalBinary writes
// (rookery.v1 Graph.version) and the only one that Decode reads.
const FormatVersion = 1

// ErrVersion marks an encoded graph whose format version this build does
// not read.
var ErrVersion = errors.New("graph: unsupported format version")

// MarshalBinary encodes the graph as a rookery.v1 Graph message: nodes in
// graph order, attributes sorted by name, tensors as raw little-endian
// bytes. The output is deterministic: equal graphs give equal bytes.
func (g *Graph) MarshalBinary() ([]byte, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: nil graph", ErrInvalid)
	}
	pb, err := encodeGraph(g, true)
	if err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("graph: encoding: %w", err)
	}
	return b, nil
}

// EncodeGraph returns the rookery.v1 message for g, for embedding in other
// messages; MarshalBinary is EncodeGraph followed by a deterministic
// proto.Marshal. The message shares no memory with g.
func EncodeGraph(g *Graph) (*rookeryv1.Graph, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: nil graph", ErrInvalid)
	}
	return encodeGraph(g, false)
}

// encodeGraph builds the message; with alias, tensor data may share memory
// with the graph's tensors (for a message that is marshaled at once and
// dropped).
func encodeGraph(g *Graph, alias bool) (*rookeryv1.Graph, error) {
	pb := &rookeryv1.Graph{Version: FormatVersion, Nodes: make([]*rookeryv1.Node, len(g.nodes))}
	for i := range g.nodes {
		n, err := encodeNode(&g.nodes[i], alias)
		if err != nil {
			return nil, err
		}
		pb.Nodes[i] = n
	}
	return pb, nil
}

func encodeNode(n *Node, alias bool) (*rookeryv1.Node, error) {
	bad := func(format string, args ...any) error {
		return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)}
	}
	if !n.DType.Valid() {
		return nil, bad("dtype %v", n.DType)
	}
	if n.Role < RoleInput || n.Role > RoleOp {
		return nil, bad("role %v", n.Role)
	}
	if !utf8.ValidString(n.Name) {
		return nil, bad("name %q is not valid UTF-8", n.Name)
	}
	if !utf8.ValidString(string(n.Op.Kind)) {
		return nil, bad("op kind %q is not valid UTF-8", n.Op.Kind)
	}
	pb := &rookeryv1.Node{
		Id:     n.ID,
		Kind:   string(n.Op.Kind),
		Dtype:  rookeryv1.DType(n.DType),
		Shape:  int64sToWire(n.Shape),
		Inputs: slices.Clone(n.Inputs),
		Name:   n.Name,
		Role:   rookeryv1.Role(n.Role),
	}
	if len(n.Op.Attrs) > 0 {
		pb.Attrs = make([]*rookeryv1.Attr, len(n.Op.Attrs))
	}
	for i, a := range n.Op.Attrs {
		pa, err := encodeAttr(a, alias)
		if err != nil {
			return nil, &NodeError{ID: n.ID, Err: err}
		}
		pb.Attrs[i] = pa
	}
	if n.Value != nil {
		v, err := encodeTensor(n.Value, alias)
		if err != nil {
			return nil, &NodeError{ID: n.ID, Err: err}
		}
		pb.Value = v
	}
	return pb, nil
}

func encodeAttr(a Attr, alias bool) (*rookeryv1.Attr, error) {
	if !utf8.ValidString(a.Name) {
		return nil, fmt.Errorf("%w: attribute name %q is not valid UTF-8", ErrInvalid, a.Name)
	}
	pa := &rookeryv1.Attr{Name: a.Name}
	switch a.Type {
	case AttrInt:
		pa.Value = &rookeryv1.Attr_IntValue{IntValue: a.Int}
	case AttrFloat:
		pa.Value = &rookeryv1.Attr_FloatValue{FloatValue: a.Float}
	case AttrBool:
		pa.Value = &rookeryv1.Attr_BoolValue{BoolValue: a.Bool}
	case AttrString:
		if !utf8.ValidString(a.String) {
			return nil, fmt.Errorf("%w: attribute %q: string is not valid UTF-8", ErrInvalid, a.Name)
		}
		pa.Value = &rookeryv1.Attr_StringValue{StringValue: a.String}
	case AttrInts:
		pa.Value = &rookeryv1.Attr_Ints{Ints: &rookeryv1.Ints{Values: int64sToWire(a.Ints)}}
	case AttrShape:
		pa.Value = &rookeryv1.Attr_Shape{Shape: &rookeryv1.Ints{Values: int64sToWire(a.Ints)}}
	case AttrAxes:
		pa.Value = &rookeryv1.Attr_Axes{Axes: &rookeryv1.Ints{Values: int64sToWire(a.Ints)}}
	case AttrFloats:
		pa.Value = &rookeryv1.Attr_Floats{Floats: &rookeryv1.Floats{Values: slices.Clone(a.Floats)}}
	case AttrTensor:
		if a.Tensor == nil {
			return nil, fmt.Errorf("%w: attribute %q has no tensor", ErrInvalid, a.Name)
		}
		t, err := encodeTensor(a.Tensor, alias)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		pa.Value = &rookeryv1.Attr_Tensor{Tensor: t}
	default:
		return nil, fmt.Errorf("%w: attribute %q has type %v", ErrInvalid, a.Name, a.Type)
	}
	return pa, nil
}

func int64sToWire(s []int) []int64 {
	if len(s) == 0 {
		return nil
	}
	out := make([]int64, len(s))
	for i, v := range s {
		out[i] = int64(v)
	}
	return out
}

package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gorgonia.org/tensor"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// FormatVersion is the version of the encoding that MarshalBinary writes
// (rookery.v1 Graph.version) and the only one that Decode reads.
const FormatVersion = 1

// ErrVersion marks an encoded graph whose format version this build does
// not read.
var ErrVersion = errors.New("graph: unsupported format version")

// Limits bound what decoding accepts from untrusted bytes. Every size is
// checked against them before anything is allocated from it. A zero (or
// negative) field means the DefaultLimits value of that field.
type Limits struct {
	MaxBytes        int64 // length of the encoded graph
	MaxNodes        int   // nodes in the graph
	MaxRank         int   // dimensions of one shape (a node's or a tensor's)
	MaxElements     int64 // elements of one shape or tensor: the product of its dimensions
	MaxAttrs        int   // attributes of one node
	MaxAttrElements int   // values of one list attribute (ints, floats, shape, axes), or bytes of a string attribute
	MaxInputs       int   // inputs of one node
	MaxNameLen      int   // bytes of a node name, an op kind or an attribute name
}

// DefaultLimits are the limits that UnmarshalBinary applies and that Decode
// uses for any zero field of the Limits it is given. It is a copy for
// reference: changing it changes nothing; pass Limits to Decode instead.
var DefaultLimits = defaultLimits

var defaultLimits = Limits{
	MaxBytes:        1 << 30,
	MaxNodes:        1 << 22,
	MaxRank:         8,
	MaxElements:     1 << 31,
	MaxAttrs:        64,
	MaxAttrElements: 1 << 16,
	MaxInputs:       1 << 16,
	MaxNameLen:      1024,
}

// orDefault fills the zero fields of l from the default limits.
func (l Limits) orDefault() Limits {
	d := defaultLimits
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	if l.MaxNodes > 0 {
		d.MaxNodes = l.MaxNodes
	}
	if l.MaxRank > 0 {
		d.MaxRank = l.MaxRank
	}
	if l.MaxElements > 0 {
		d.MaxElements = l.MaxElements
	}
	if l.MaxAttrs > 0 {
		d.MaxAttrs = l.MaxAttrs
	}
	if l.MaxAttrElements > 0 {
		d.MaxAttrElements = l.MaxAttrElements
	}
	if l.MaxInputs > 0 {
		d.MaxInputs = l.MaxInputs
	}
	if l.MaxNameLen > 0 {
		d.MaxNameLen = l.MaxNameLen
	}
	return d
}

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

// checkWireTensor checks a tensor message's dtype, shape and data length.
func checkWireTensor(t *rookeryv1.Tensor, lim Limits) error {
	_, err := wireTensorSize(t, lim)
	return err
}

// wireTensorSize checks t and returns its element count.
func wireTensorSize(t *rookeryv1.Tensor, lim Limits) (int, error) {
	if t == nil {
		return 0, fmt.Errorf("%w: tensor missing", ErrMalformed)
	}
	dt, err := dtypeFromProto(t.Dtype)
	if err != nil {
		return 0, fmt.Errorf("tensor: %w", err)
	}
	n, err := checkWireDims(t.Shape, lim)
	if err != nil {
		var nonPos *wireDimError
		if errors.As(err, &nonPos) {
			return 0, fmt.Errorf("%w: tensor shape %v: %w", ErrMalformed, t.Shape, err)
		}
		return 0, fmt.Errorf("tensor: %w", err)
	}
	size := int64(dt.Size())
	if hi, lo := bits.Mul64(uint64(n), uint64(size)); hi != 0 || lo != uint64(len(t.Data)) {
		return 0, fmt.Errorf("%w: tensor %v %v holds %d bytes of data, want %d elements of %d bytes", ErrMalformed, dt, t.Shape, len(t.Data), n, size)
	}
	return int(n), nil
}

// wireDimError says that a dimension is not positive.
type wireDimError struct {
	Axis int
	Dim  int64
}

func (e *wireDimError) Error() string {
	return fmt.Sprintf("dimension %d is %d, must be positive", e.Axis, e.Dim)
}

// checkWireDims checks a shape from the wire: rank, positive dimensions, and the
// product of the dimensions, which it returns, against MaxElements (with
// checked multiplication).
func checkWireDims(dims []int64, lim Limits) (int64, error) {
	if len(dims) > lim.MaxRank {
		return 0, &LimitError{What: "rank", Limit: int64(lim.MaxRank), Got: int64(len(dims))}
	}
	n := int64(1)
	for i, d := range dims {
		if d <= 0 {
			return 0, &wireDimError{Axis: i, Dim: d}
		}
		if d > math.MaxInt {
			return 0, &LimitError{What: "dimension", Limit: math.MaxInt, Got: d}
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, &LimitError{What: "elements", Limit: lim.MaxElements, Got: math.MaxInt64}
		}
		n = int64(lo)
		if n > lim.MaxElements {
			return 0, &LimitError{What: "elements", Limit: lim.MaxElements, Got: n}
		}
	}
	return n, nil
}

// shapeFromWire converts a shape from the wire for an error message.
func shapeFromWire(dims []int64) Shape {
	s := make(Shape, len(dims))
	for i, d := range dims {
		s[i] = int(max(min(d, math.MaxInt), math.MinInt))
	}
	return s
}

func dtypeFromProto(d rookeryv1.DType) (DType, error) {
	switch d {
	case rookeryv1.DType_DTYPE_FLOAT64:
		return Float64, nil
	case rookeryv1.DType_DTYPE_FLOAT32:
		return Float32, nil
	case rookeryv1.DType_DTYPE_INT64:
		return Int, nil
	case rookeryv1.DType_DTYPE_BOOL:
		return Bool, nil
	case rookeryv1.DType_DTYPE_UNSPECIFIED:
		return DTypeInvalid, fmt.Errorf("%w: dtype unspecified", ErrMalformed)
	}
	return DTypeInvalid, fmt.Errorf("%w: unknown dtype enum value %d", ErrMalformed, int32(d))
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

// wireTopoOrder returns the positions of the nodes in an order where every node
// comes after its inputs, keeping the given order where it allows (nil when
// the given order already is topological). It reports duplicate ids,
// inputs that name no node, and cycles.
func wireTopoOrder(nodes []*rookeryv1.Node) ([]int32, error) {
	index := make(map[int64]int32, len(nodes))
	for i, n := range nodes {
		if _, dup := index[n.Id]; dup {
			return nil, &NodeError{ID: n.Id, Err: ErrDuplicateID}
		}
		index[n.Id] = int32(i)
	}
	sorted := true
	edges := 0
	for i, n := range nodes {
		for _, in := range n.Inputs {
			p, ok := index[in]
			if !ok {
				return nil, &DanglingInputError{Node: n.Id, Input: in}
			}
			if int(p) >= i {
				sorted = false
			}
		}
		edges += len(n.Inputs)
	}
	if sorted {
		return nil, nil
	}

	// Kahn's algorithm, always taking the earliest ready node so that the
	// result is deterministic and stays close to the given order.
	// consumers[start[p]:start[p+1]] are the consumers of node p, once per
	// use.
	start := make([]int32, len(nodes)+1)
	for _, n := range nodes {
		for _, in := range n.Inputs {
			start[index[in]+1]++
		}
	}
	for p := range nodes {
		start[p+1] += start[p]
	}
	consumers := make([]int32, edges)
	fill := slices.Clone(start[:len(nodes)])
	pending := make([]int32, len(nodes)) // inputs not yet placed, per use
	for i, n := range nodes {
		for _, in := range n.Inputs {
			p := index[in]
			consumers[fill[p]] = int32(i)
			fill[p]++
		}
		pending[i] = int32(len(n.Inputs))
	}
	var ready posHeap
	for i := range nodes {
		if pending[i] == 0 {
			ready.push(int32(i))
		}
	}
	order := make([]int32, 0, len(nodes))
	for len(ready) > 0 {
		p := ready.pop()
		order = append(order, p)
		for _, c := range consumers[start[p]:start[p+1]] {
			pending[c]--
			if pending[c] == 0 {
				ready.push(c)
			}
		}
	}
	if len(order) < len(nodes) {
		return nil, &CycleError{Nodes: wireCycle(nodes, index, pending)}
	}
	return order, nil
}

// wireCycle returns the ids of the nodes on one cycle (at most 32 of them,
// in data-flow order) among the nodes that Kahn's algorithm could not
// place: each of those has an input that was not placed either, so walking
// such inputs must come back to a node already seen.
func wireCycle(nodes []*rookeryv1.Node, index map[int64]int32, pending []int32) []int64 {
	const maxReported = 32
	start := slices.IndexFunc(pending, func(c int32) bool { return c > 0 })
	step := make(map[int32]int)
	var path []int32
	for p := int32(start); ; {
		if s, seen := step[p]; seen {
			path = path[s:]
			break
		}
		step[p] = len(path)
		path = append(path, p)
		next := int32(-1)
		for _, in := range nodes[p].Inputs {
			if q := index[in]; pending[q] > 0 {
				next = q
				break
			}
		}
		if next < 0 { // cannot happen; keep what was found
			break
		}
		p = next
	}
	slices.Reverse(path)
	if len(path) > maxReported {
		path = path[:maxReported]
	}
	ids := make([]int64, len(path))
	for i, p := range path {
		ids[i] = nodes[p].Id
	}
	return ids
}

// posHeap is a binary min-heap of node positions.
type posHeap []int32

func (h *posHeap) push(v int32) {
	*h = append(*h, v)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent] <= s[i] {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

func (h *posHeap) pop() int32 {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l] < s[m] {
			m = l
		}
		if r < len(s) && s[r] < s[m] {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// Tensors.

// nativeLittleEndian reports whether this machine stores numbers little-endian,
// in which case tensor data is copied as whole blocks of memory.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// nativeInt64 reports whether Go's int is 64 bits wide, as int64 on the wire.
const nativeInt64 = math.MaxInt == math.MaxInt64

// EncodeTensor returns the wire form of a dense tensor: dtype, shape and
// the elements in row-major order as raw little-endian bytes. Int and Int64
// tensors both travel as DTYPE_INT64. Views (slices, transposes) are
// materialized first; masked and column-major tensors, and shapes with a
// zero dimension, are rejected with an error matching ErrInvalid. The
// message shares no memory with t.
func EncodeTensor(t *tensor.Dense) (*rookeryv1.Tensor, error) {
	return encodeTensor(t, false)
}

func encodeTensor(t *tensor.Dense, alias bool) (*rookeryv1.Tensor, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: nil tensor", ErrInvalid)
	}
	dt, err := DTypeOf(t.Dtype())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if t.IsMasked() {
		return nil, fmt.Errorf("%w: masked tensors are not supported", ErrInvalid)
	}
	if t.DataOrder().IsColMajor() {
		return nil, fmt.Errorf("%w: column-major tensors are not supported", ErrInvalid)
	}
	if t.IsMaterializable() || t.RequiresIterator() {
		m, ok := t.Materialize().(*tensor.Dense)
		if !ok {
			return nil, fmt.Errorf("%w: tensor view does not materialize to a dense tensor", ErrInvalid)
		}
		t, alias = m, true // m is ours
	}
	shape := t.Shape()
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return nil, fmt.Errorf("%w: tensor shape %v has a dimension that is not positive", ErrInvalid, shape)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt/8 {
			return nil, fmt.Errorf("%w: tensor shape %v is too large", ErrInvalid, shape)
		}
		n = int(lo)
	}
	pb := &rookeryv1.Tensor{Dtype: rookeryv1.DType(dt), Shape: int64sToWire(shape)}
	raw, err := denseData(t)
	if err != nil {
		return nil, err
	}
	short := func(have int) error {
		return fmt.Errorf("%w: tensor of shape %v holds %d elements", ErrInvalid, shape, have)
	}
	switch v := raw.(type) {
	case []float64:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putFloat64s(v[:n], alias, nativeLittleEndian)
	case float64:
		pb.Data = putFloat64s([]float64{v}, true, nativeLittleEndian)
	case []float32:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putFloat32s(v[:n], alias, nativeLittleEndian)
	case float32:
		pb.Data = putFloat32s([]float32{v}, true, nativeLittleEndian)
	case []int:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putInts(v[:n], alias, nativeLittleEndian && nativeInt64)
	case int:
		pb.Data = putInts([]int{v}, true, nativeLittleEndian && nativeInt64)
	case []int64:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putInt64s(v[:n], alias, nativeLittleEndian)
	case int64:
		pb.Data = putInt64s([]int64{v}, true, nativeLittleEndian)
	case []bool:
		if len(v) < n {
			return nil, short(len(v))
		}
		pb.Data = putBools(v[:n])
	case bool:
		pb.Data = putBools([]bool{v})
	default:
		return nil, fmt.Errorf("%w: tensor data of type %T", ErrInvalid, raw)
	}
	return pb, nil
}

// denseData returns t.Data(), which panics on a tensor without backing
// memory, as an error instead.
func denseData(t *tensor.Dense) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%w: tensor has no data: %v", ErrInvalid, r)
		}
	}()
	return t.Data(), nil
}

// DecodeTensor rebuilds a dense, row-major tensor from its wire form after
// checking it against lim: a known dtype, rank at most MaxRank, positive
// dimensions whose product is at most MaxElements, data of exactly that
// many elements, and bool bytes that are 0 or 1. DTYPE_INT64 becomes an
// Int (Go int) tensor. Errors are a *LimitError or match ErrMalformed.
func DecodeTensor(pb *rookeryv1.Tensor, lim Limits) (*tensor.Dense, error) {
	lim = lim.orDefault()
	n, err := wireTensorSize(pb, lim)
	if err != nil {
		return nil, err
	}
	shape := make([]int, len(pb.Shape))
	for i, d := range pb.Shape {
		shape[i] = int(d) // checked by wireTensorSize
	}
	var backing any
	switch pb.Dtype {
	case rookeryv1.DType_DTYPE_FLOAT64:
		backing = getFloat64s(pb.Data, n, nativeLittleEndian)
	case rookeryv1.DType_DTYPE_FLOAT32:
		backing = getFloat32s(pb.Data, n, nativeLittleEndian)
	case rookeryv1.DType_DTYPE_INT64:
		v, err := getInts(pb.Data, n, nativeLittleEndian && nativeInt64)
		if err != nil {
			return nil, err
		}
		backing = v
	case rookeryv1.DType_DTYPE_BOOL:
		v, err := getBools(pb.Data, n)
		if err != nil {
			return nil, err
		}
		backing = v
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing)), nil
}

// The put functions return the little-endian bytes of s. With fast (only
// on a little-endian machine, and for ints only where int is 64 bits) they
// copy memory as a block, or with alias return s's own memory; otherwise
// they convert element by element.

func putFloat64s(s []float64, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*8), alias)
	}
	b := make([]byte, len(s)*8)
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[i*8:], math.Float64bits(v))
	}
	return b
}

func putFloat32s(s []float32, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*4), alias)
	}
	b := make([]byte, len(s)*4)
	for i, v := range s {
		binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(v))
	}
	return b
}

func putInt64s(s []int64, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*8), alias)
	}
	b := make([]byte, len(s)*8)
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[i*8:], uint64(v))
	}
	return b
}

// putInts: fast requires a 64-bit int.
func putInts(s []int, alias, fast bool) []byte {
	if fast {
		return memBytes(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*8), alias)
	}
	b := make([]byte, len(s)*8)
	for i, v := range s {
		binary.LittleEndian.PutUint64(b[i*8:], uint64(int64(v)))
	}
	return b
}

func putBools(s []bool) []byte {
	b := make([]byte, len(s))
	for i, v := range s {
		if v {
			b[i] = 1
		}
	}
	return b
}

func memBytes(m []byte, alias bool) []byte {
	if alias {
		return m
	}
	return slices.Clone(m)
}

// The get functions convert exactly n elements' worth of little-endian
// bytes (checked by the caller) into a new slice.

func getFloat64s(b []byte, n int, fast bool) []float64 {
	s := make([]float64, n)
	if fast {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n*8), b)
		return s
	}
	for i := range s {
		s[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[i*8:]))
	}
	return s
}

func getFloat32s(b []byte, n int, fast bool) []float32 {
	s := make([]float32, n)
	if fast {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n*4), b)
		return s
	}
	for i := range s {
		s[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[i*4:]))
	}
	return s
}

// getInts: fast requires a 64-bit int. Without it, each value must fit in
// an int.
func getInts(b []byte, n int, fast bool) ([]int, error) {
	s := make([]int, n)
	if fast {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n*8), b)
		return s, nil
	}
	for i := range s {
		v := int64(binary.LittleEndian.Uint64(b[i*8:]))
		if v < math.MinInt || v > math.MaxInt {
			return nil, fmt.Errorf("%w: tensor element %d: %d does not fit in an int", ErrMalformed, i, v)
		}
		s[i] = int(v)
	}
	return s, nil
}

func getBools(b []byte, n int) ([]bool, error) {
	s := make([]bool, n)
	for i, c := range b[:n] {
		switch c {
		case 0:
		case 1:
			s[i] = true
		default:
			return nil, fmt.Errorf("%w: bool tensor element %d is byte %d, want 0 or 1", ErrMalformed, i, c)
		}
	}
	return s, nil
}

// Scanning the wire format before parsing it.
//
// proto.Unmarshal allocates as it parses: a node of two bytes on the wire
// becomes a struct of some hundred bytes, a packed list of one-byte varints
// becomes eight bytes per element. scanWire walks the bytes first, without
// allocating, and checks every list's length and every string's size
// against the limits, so that what Unmarshal then allocates is bounded by
// them. It follows the schema through the message descriptors; a field that
// the schema does not know is skipped (Unmarshal discards it). It rejects,
// as malformed, a singular message field that appears more than once
// (which protobuf would merge, and which no writer of this format emits),
// so that every list is counted exactly.

// limitKind names the limit that applies to a field.
type limitKind uint8

const (
	limNone limitKind = iota
	limNodes
	limAttrs
	limRank
	limInputs
	limAttrElements
	limName
	limTensorBytes
)

// wireLimits says which limit applies to each list, string and bytes field
// of the schema (TestWireLimitsCoverSchema checks that none is missing).
var wireLimits = map[protoreflect.FullName]limitKind{
	"rookery.v1.Graph.nodes":       limNodes,
	"rookery.v1.Node.kind":         limName,
	"rookery.v1.Node.attrs":        limAttrs,
	"rookery.v1.Node.shape":        limRank,
	"rookery.v1.Node.inputs":       limInputs,
	"rookery.v1.Node.name":         limName,
	"rookery.v1.Attr.name":         limName,
	"rookery.v1.Attr.string_value": limAttrElements,
	"rookery.v1.Ints.values":       limAttrElements,
	"rookery.v1.Floats.values":     limAttrElements,
	"rookery.v1.Tensor.shape":      limRank,
	"rookery.v1.Tensor.data":       limTensorBytes,
}

func (l Limits) of(k limitKind) (what string, max int64) {
	switch k {
	case limNodes:
		return "nodes", int64(l.MaxNodes)
	case limAttrs:
		return "attributes", int64(l.MaxAttrs)
	case limRank:
		return "rank", int64(l.MaxRank)
	case limInputs:
		return "inputs", int64(l.MaxInputs)
	case limAttrElements:
		return "attribute elements", int64(l.MaxAttrElements)
	case limName:
		return "name bytes", int64(l.MaxNameLen)
	case limTensorBytes:
		if l.MaxElements > math.MaxInt64/8 {
			return "tensor bytes", math.MaxInt64
		}
		return "tensor bytes", l.MaxElements * 8
	}
	return "", math.MaxInt64
}

// maxWireField bounds the field numbers of the schema, so that per-message
// counters fit in fixed arrays.
const maxWireField = 16

// wireMsg is the part of a message descriptor that scanWire needs.
type wireMsg struct {
	name   protoreflect.FullName
	fields [maxWireField]*wireField
}

type wireField struct {
	desc  protoreflect.FieldDescriptor
	limit limitKind
	msg   *wireMsg // for message fields
}

var wireGraph = buildWire((&rookeryv1.Graph{}).ProtoReflect().Descriptor(), map[protoreflect.FullName]*wireMsg{})

func buildWire(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*wireMsg) *wireMsg {
	if m, ok := seen[md.FullName()]; ok {
		return m
	}
	m := &wireMsg{name: md.FullName()}
	seen[md.FullName()] = m
	fds := md.Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if fd.Number() >= maxWireField {
			panic(fmt.Sprintf("graph: field %s has number %d; raise maxWireField", fd.FullName(), fd.Number()))
		}
		f := &wireField{desc: fd, limit: wireLimits[fd.FullName()]}
		if fd.Kind() == protoreflect.MessageKind {
			f.msg = buildWire(fd.Message(), seen)
		}
		m.fields[fd.Number()] = f
	}
	return m
}

// scanWire checks the encoded message b of type m against lim.
func scanWire(m *wireMsg, b []byte, lim Limits) error {
	var counts [maxWireField]int64
	var seen uint32 // singular message fields already met
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, m.name, protowire.ParseError(n))
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("%w: %s field %d: %w", ErrMalformed, m.name, num, protowire.ParseError(n))
		}
		val := b[:n]
		b = b[n:]
		if num >= maxWireField || m.fields[num] == nil {
			continue // unknown to the schema: discarded by Unmarshal
		}
		f := m.fields[num]
		fd := f.desc
		var content []byte
		if typ == protowire.BytesType {
			content, _ = protowire.ConsumeBytes(val)
		}
		switch {
		case fd.IsList():
			var k int64
			switch {
			case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
				if typ != protowire.BytesType {
					continue
				}
				k = 1
			case typ == protowire.BytesType: // a packed list of scalars
				k = packedCount(fd.Kind(), content)
			default:
				k = 1
			}
			counts[num] += k
			if what, max := lim.of(f.limit); counts[num] > max {
				return &LimitError{What: what, Limit: max, Got: counts[num]}
			}
			if f.msg != nil {
				if err := scanWire(f.msg, content, lim); err != nil {
					return err
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if typ != protowire.BytesType {
				continue
			}
			if seen&(1<<num) != 0 {
				return fmt.Errorf("%w: %s appears more than once", ErrMalformed, fd.FullName())
			}
			seen |= 1 << num
			if err := scanWire(f.msg, content, lim); err != nil {
				return err
			}
		case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
			if typ != protowire.BytesType {
				continue
			}
			if what, max := lim.of(f.limit); int64(len(content)) > max {
				return &LimitError{What: what, Limit: max, Got: int64(len(content))}
			}
		}
	}
	return nil
}

// packedCount is the number of elements in a packed list of scalars of
// kind k (an upper bound if the list is malformed, which Unmarshal then
// reports).
func packedCount(k protoreflect.Kind, b []byte) int64 {
	switch k {
	case protoreflect.DoubleKind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return int64(len(b)+7) / 8
	case protoreflect.FloatKind, protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return int64(len(b)+3) / 4
	}
	var c int64 // varints: one per byte without the continuation bit
	for _, x := range b {
		if x < 0x80 {
			c++
		}
	}
	if len(b) > 0 && b[len(b)-1] >= 0x80 {
		c++
	}
	return c
}

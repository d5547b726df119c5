package graph

import (
	"fmt"
	"sort"
	"sync"

	"gorgonia.org/tensor"
)

// DType is the element type of a node's value.
type DType uint8

// The element types the IR carries. Int is a 64-bit signed integer on the
// wire whatever the platform's int size.
const (
	DTypeInvalid DType = iota
	Float64
	Float32
	Int
	Bool
)

var dtypeNames = [...]string{"invalid", "float64", "float32", "int", "bool"}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the number of bytes one element occupies on the wire.
func (d DType) Size() int {
	switch d {
	case Float64, Int:
		return 8
	case Float32:
		return 4
	case Bool:
		return 1
	}
	return 0
}

// Valid reports whether d is one of the known element types.
func (d DType) Valid() bool { return d >= Float64 && d <= Bool }

// Tensor returns the gorgonia.org/tensor dtype for d.
func (d DType) Tensor() (tensor.Dtype, error) {
	switch d {
	case Float64:
		return tensor.Float64, nil
	case Float32:
		return tensor.Float32, nil
	case Int:
		return tensor.Int, nil
	case Bool:
		return tensor.Bool, nil
	}
	return tensor.Dtype{}, fmt.Errorf("graph: no tensor dtype for %v", d)
}

// DTypeOf maps a gorgonia.org/tensor dtype onto the IR.
func DTypeOf(t tensor.Dtype) (DType, error) {
	switch t {
	case tensor.Float64:
		return Float64, nil
	case tensor.Float32:
		return Float32, nil
	case tensor.Int, tensor.Int64:
		return Int, nil
	case tensor.Bool:
		return Bool, nil
	}
	return DTypeInvalid, fmt.Errorf("graph: dtype %v is not supported", t)
}

// Shape is a node's shape; a scalar has the empty shape.
type Shape []int

// Size is the number of elements (1 for a scalar).
func (s Shape) Size() int64 {
	n := int64(1)
	for _, d := range s {
		n *= int64(d)
	}
	return n
}

// Eq reports whether two shapes are identical.
func (s Shape) Eq(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of s.
func (s Shape) Clone() Shape {
	if s == nil {
		return nil
	}
	return append(Shape{}, s...)
}

func (s Shape) String() string { return fmt.Sprint([]int(s)) }

// Role says what a node is to the graph.
type Role uint8

// Roles: inputs are fed on every run, learnable parameters are trained,
// constants carry their value with the graph, ops compute.
const (
	RoleInvalid Role = iota
	RoleInput
	RoleLearnable
	RoleConstant
	RoleOp
)

var roleNames = [...]string{"invalid", "input", "learnable", "constant", "op"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Node is one vertex of the IR.
type Node struct {
	ID     int64
	Role   Role
	Op     Op // KindInput for inputs and learnables, KindConstant for constants
	Inputs []int64
	Shape  Shape
	DType  DType
	Name   string
	// Value holds a constant's value, and a learnable's value when the
	// graph was read with values (see WithValues); nil otherwise.
	Value *tensor.Dense
}

// IsInput reports whether the node is fed from outside (an input or a
// learnable parameter).
func (n *Node) IsInput() bool { return n.Role == RoleInput || n.Role == RoleLearnable }

// IsLearnable reports whether the node is a learnable parameter.
func (n *Node) IsLearnable() bool { return n.Role == RoleLearnable }

// IsConstant reports whether the node is a constant.
func (n *Node) IsConstant() bool { return n.Role == RoleConstant }

// IsOp reports whether the node computes from its inputs.
func (n *Node) IsOp() bool { return n.Role == RoleOp }

// Graph is a portable computation graph: nodes in topological order, each
// naming its inputs by id. The zero value is not usable; call New.
// Several goroutines may read a Graph at once; Add must not run beside them.
type Graph struct {
	nodes     []Node
	index     map[int64]int
	consumers [][]int32 // by position; built lazily, under consMu
	consMu    *sync.Mutex
}

// New returns an empty graph.
func New() *Graph { return &Graph{index: make(map[int64]int), consMu: new(sync.Mutex)} }

// Len is the number of nodes.
func (g *Graph) Len() int { return len(g.nodes) }

// Nodes returns the nodes in topological order (every node after its
// inputs). The slice is the graph's own: read it, do not modify it.
func (g *Graph) Nodes() []Node { return g.nodes }

// Node returns the node with the given id.
func (g *Graph) Node(id int64) (*Node, bool) {
	i, ok := g.index[id]
	if !ok {
		return nil, false
	}
	return &g.nodes[i], true
}

// Pos returns the position of node id in Nodes(), or -1.
func (g *Graph) Pos(id int64) int {
	if i, ok := g.index[id]; ok {
		return i
	}
	return -1
}

// Add appends a node. Its inputs must already be in the graph, which keeps
// Nodes() topological and the graph acyclic; its op must be known, have the
// right arity and attributes, and its shape and dtype must agree with what
// the op computes from its inputs.
func (g *Graph) Add(n Node) error {
	if _, dup := g.index[n.ID]; dup {
		return &NodeError{ID: n.ID, Err: ErrDuplicateID}
	}
	for _, in := range n.Inputs {
		if _, ok := g.index[in]; !ok {
			return &DanglingInputError{Node: n.ID, Input: in}
		}
	}
	if err := g.check(&n); err != nil {
		return err
	}
	g.index[n.ID] = len(g.nodes)
	g.nodes = append(g.nodes, n)
	g.consumers = nil // Add is not safe beside readers; reads are
	return nil
}

// MustAdd is Add that panics on error, for building graphs in code.
func (g *Graph) MustAdd(n Node) {
	if err := g.Add(n); err != nil {
		panic(err)
	}
}

// Consumers returns the ids of the nodes that use id as an input, in
// topological order, once each.
func (g *Graph) Consumers(id int64) []int64 {
	p, ok := g.index[id]
	if !ok {
		return nil
	}
	g.buildConsumers()
	out := make([]int64, len(g.consumers[p]))
	for i, c := range g.consumers[p] {
		out[i] = g.nodes[c].ID
	}
	return out
}

// ConsumerPositions returns the positions (indexes into Nodes) of the
// consumers of the node at position p. The slice is the graph's own.
func (g *Graph) ConsumerPositions(p int) []int32 {
	g.buildConsumers()
	return g.consumers[p]
}

func (g *Graph) buildConsumers() {
	if g.consMu == nil { // a graph not made by New
		g.consMu = new(sync.Mutex)
	}
	g.consMu.Lock()
	defer g.consMu.Unlock()
	if g.consumers != nil {
		return
	}
	counts := make([]int32, len(g.nodes))
	for i := range g.nodes {
		for j, in := range g.nodes[i].Inputs {
			if dupBefore(g.nodes[i].Inputs, j) {
				continue
			}
			counts[g.index[in]]++
		}
	}
	flat := make([]int32, 0, sum32(counts))
	g.consumers = make([][]int32, len(g.nodes))
	for p, c := range counts {
		g.consumers[p] = flat[len(flat) : len(flat) : len(flat)+int(c)]
		flat = flat[:len(flat)+int(c)]
	}
	for i := range g.nodes {
		for j, in := range g.nodes[i].Inputs {
			if dupBefore(g.nodes[i].Inputs, j) {
				continue
			}
			p := g.index[in]
			g.consumers[p] = append(g.consumers[p], int32(i))
		}
	}
}

func dupBefore(s []int64, j int) bool {
	for k := 0; k < j; k++ {
		if s[k] == s[j] {
			return true
		}
	}
	return false
}

func sum32(s []int32) int {
	n := 0
	for _, v := range s {
		n += int(v)
	}
	return n
}

// Learnables returns the ids of the learnable parameters in graph order.
func (g *Graph) Learnables() []int64 { return g.idsWith(RoleLearnable) }

// Inputs returns the ids of the (non-learnable) inputs in graph order.
func (g *Graph) Inputs() []int64 { return g.idsWith(RoleInput) }

func (g *Graph) idsWith(r Role) []int64 {
	var ids []int64
	for i := range g.nodes {
		if g.nodes[i].Role == r {
			ids = append(ids, g.nodes[i].ID)
		}
	}
	return ids
}

// Outputs returns the ids of nodes that no other node consumes, sorted.
func (g *Graph) Outputs() []int64 {
	g.buildConsumers()
	var ids []int64
	for p := range g.nodes {
		if len(g.consumers[p]) == 0 {
			ids = append(ids, g.nodes[p].ID)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// ByName returns the first node with the given name.
func (g *Graph) ByName(name string) (*Node, bool) {
	for i := range g.nodes {
		if g.nodes[i].Name == name {
			return &g.nodes[i], true
		}
	}
	return nil, false
}

// Validate checks the whole graph again: unique ids, inputs before use,
// known ops with the right arity and attributes, consistent shapes and
// dtypes.
func (g *Graph) Validate() error {
	seen := make(map[int64]bool, len(g.nodes))
	for i := range g.nodes {
		n := &g.nodes[i]
		if seen[n.ID] {
			return &NodeError{ID: n.ID, Err: ErrDuplicateID}
		}
		for _, in := range n.Inputs {
			if !seen[in] {
				if _, ok := g.index[in]; ok {
					return &CycleError{Nodes: []int64{n.ID, in}}
				}
				return &DanglingInputError{Node: n.ID, Input: in}
			}
		}
		if err := g.check(n); err != nil {
			return err
		}
		seen[n.ID] = true
	}
	return nil
}

// check validates one node against its already-present inputs.
func (g *Graph) check(n *Node) error {
	if !n.DType.Valid() {
		return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: dtype %v", ErrInvalid, n.DType)}
	}
	for _, d := range n.Shape {
		if d <= 0 {
			return &ShapeError{Node: n.ID, Got: n.Shape, Reason: "dimensions must be positive"}
		}
	}
	spec, ok := specs[n.Op.Kind]
	if !ok {
		return &UnknownKindError{Node: n.ID, Kind: n.Op.Kind}
	}
	switch n.Role {
	case RoleInput, RoleLearnable:
		if n.Op.Kind != KindInput {
			return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: role %v with op %q", ErrInvalid, n.Role, n.Op.Kind)}
		}
	case RoleConstant:
		if n.Op.Kind != KindConstant {
			return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: role %v with op %q", ErrInvalid, n.Role, n.Op.Kind)}
		}
		if n.Value == nil {
			return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: constant without a value", ErrInvalid)}
		}
	case RoleOp:
		if n.Op.Kind == KindInput || n.Op.Kind == KindConstant {
			return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: role %v with op %q", ErrInvalid, n.Role, n.Op.Kind)}
		}
	default:
		return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: role %v", ErrInvalid, n.Role)}
	}
	if len(n.Inputs) < spec.minIn || (spec.maxIn >= 0 && len(n.Inputs) > spec.maxIn) {
		return &ArityError{Node: n.ID, Kind: n.Op.Kind, Min: spec.minIn, Max: spec.maxIn, Got: len(n.Inputs)}
	}
	if err := spec.checkAttrs(n.Op); err != nil {
		return &NodeError{ID: n.ID, Err: err}
	}
	if n.Value != nil {
		if err := checkValue(n); err != nil {
			return err
		}
	}
	if n.Role != RoleOp {
		return nil
	}
	in := make([]*Node, len(n.Inputs))
	for i, id := range n.Inputs {
		in[i], _ = g.Node(id)
	}
	shape, dt, err := g.inferNode(n.Op, in)
	if err != nil {
		return &ShapeError{Node: n.ID, Got: n.Shape, Reason: err.Error()}
	}
	if !shape.Eq(n.Shape) {
		return &ShapeError{Node: n.ID, Want: shape, Got: n.Shape, Reason: fmt.Sprintf("op %s computes %v", n.Op.Kind, shape)}
	}
	if dt != n.DType {
		return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: op %s computes dtype %v, node says %v", ErrInvalid, n.Op.Kind, dt, n.DType)}
	}
	return nil
}

func checkValue(n *Node) error {
	v := n.Value
	dt, err := DTypeOf(v.Dtype())
	if err != nil || dt != n.DType {
		return &NodeError{ID: n.ID, Err: fmt.Errorf("%w: value dtype %v, node dtype %v", ErrInvalid, v.Dtype(), n.DType)}
	}
	vs := Shape(v.Shape())
	if v.IsScalar() {
		vs = nil
	}
	if vs.Size() != n.Shape.Size() || len(vs) != len(n.Shape) && !(len(vs) == 0 && len(n.Shape) == 0) {
		return &ShapeError{Node: n.ID, Want: n.Shape, Got: vs, Reason: "value shape differs from node shape"}
	}
	if !vs.Eq(n.Shape) {
		return &ShapeError{Node: n.ID, Want: n.Shape, Got: vs, Reason: "value shape differs from node shape"}
	}
	return nil
}

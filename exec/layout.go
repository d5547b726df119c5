package exec

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/rookery-ml/rookery/graph"
)

// Layout is a partitioned graph made ready to run: one SessionSpec per
// part (Solver and EvalMode left for the caller) and the routes tensors
// take between parts.
type Layout struct {
	Specs []SessionSpec
	// Succ[p] lists the parts that consume part p's outputs, sorted.
	Succ [][]int
	// Consumers maps each cut value (the id of a node one part produces
	// and others use) to the parts that use it, sorted.
	Consumers map[int64][]int
	// Producer maps each cut value to the part that produces it.
	Producer map[int64]int
	// LossPart is the part that computes the loss.
	LossPart int
}

// NewLayout turns g and an assignment of its nodes to parts (parts[p] lists
// the ids of part p, as partition.Plan's Parts do) into a Layout. Every op
// and learnable node must be in exactly one part. Data inputs (the ids in
// data) and constants may be listed anywhere or nowhere: each part that
// uses them gets its own copy. A value that one part computes and another
// uses becomes an output of the first and an input of the second, under
// the same id; so does a learnable parameter that parts other than its
// owner use, and its gradient comes back to the owner.
func NewLayout(g *graph.Graph, parts [][]int64, loss int64, data []int64) (*Layout, error) {
	k := len(parts)
	if k == 0 {
		return nil, fmt.Errorf("%w: no parts", ErrSpec)
	}
	isData := make(map[int64]bool, len(data))
	for _, id := range data {
		n, ok := g.Node(id)
		if !ok || n.Role != graph.RoleInput {
			return nil, &SpecError{Part: -1, Node: id, Reason: "data input is not an input node of the graph"}
		}
		isData[id] = true
	}
	owner := make(map[int64]int, g.Len())
	for p, ids := range parts {
		for _, id := range ids {
			n, ok := g.Node(id)
			if !ok {
				return nil, &SpecError{Part: p, Node: id, Reason: "not in the graph"}
			}
			if n.Role == graph.RoleInput || n.Role == graph.RoleConstant {
				continue
			}
			if q, dup := owner[id]; dup {
				return nil, &SpecError{Part: p, Node: id, Reason: fmt.Sprintf("also in part %d", q)}
			}
			owner[id] = p
		}
	}
	for _, n := range g.Nodes() {
		switch n.Role {
		case graph.RoleInput:
			if !isData[n.ID] {
				return nil, &SpecError{Part: -1, Node: n.ID, Reason: fmt.Sprintf("input %q is not fed", n.Name)}
			}
		case graph.RoleOp, graph.RoleLearnable:
			if _, ok := owner[n.ID]; !ok {
				return nil, &SpecError{Part: -1, Node: n.ID, Reason: "in no part"}
			}
		}
	}
	lossPart, ok := owner[loss]
	if !ok {
		return nil, &SpecError{Part: -1, Node: loss, Reason: "loss is not an op node of the graph"}
	}

	lay := &Layout{Specs: make([]SessionSpec, k), Succ: make([][]int, k),
		Consumers: make(map[int64][]int), Producer: make(map[int64]int), LossPart: lossPart}
	outputs := make([]map[int64]bool, k)
	for p := range outputs {
		outputs[p] = make(map[int64]bool)
	}
	for p := 0; p < k; p++ {
		pg := graph.New()
		spec := &lay.Specs[p]
		spec.Part = p
		added := make(map[int64]bool)
		add := func(n graph.Node) error {
			if err := pg.Add(n); err != nil {
				return &SpecError{Part: p, Node: n.ID, Reason: err.Error()}
			}
			added[n.ID] = true
			return nil
		}
		for _, n := range g.Nodes() {
			if o, mine := owner[n.ID]; !mine || o != p {
				continue
			}
			for _, in := range n.Inputs {
				if added[in] {
					continue
				}
				src, _ := g.Node(in)
				switch {
				case isData[in]:
					spec.DataInputs = append(spec.DataInputs, in)
					if err := add(*src); err != nil {
						return nil, err
					}
				case src.Role == graph.RoleConstant:
					if err := add(*src); err != nil {
						return nil, err
					}
				default: // produced by another part
					q := owner[in]
					cut := graph.Node{ID: in, Role: graph.RoleInput, Op: graph.NewOp(graph.KindInput),
						Shape: src.Shape.Clone(), DType: src.DType, Name: "rookery.cut." + strconv.FormatInt(in, 10)}
					if err := add(cut); err != nil {
						return nil, err
					}
					spec.Inputs = append(spec.Inputs, in)
					outputs[q][in] = true
					lay.Producer[in] = q
					lay.Consumers[in] = append(lay.Consumers[in], p)
				}
			}
			if err := add(n); err != nil {
				return nil, err
			}
		}
		if pg.Len() == 0 {
			return nil, &SpecError{Part: p, Node: -1, Reason: "part has no nodes"}
		}
		spec.Graph = pg
		if p == lossPart {
			spec.Loss, spec.HasLoss = loss, true
		}
	}
	for p := 0; p < k; p++ {
		for id := range outputs[p] {
			lay.Specs[p].Outputs = append(lay.Specs[p].Outputs, id)
		}
		sort.Slice(lay.Specs[p].Outputs, func(i, j int) bool { return lay.Specs[p].Outputs[i] < lay.Specs[p].Outputs[j] })
		succ := make(map[int]bool)
		for _, id := range lay.Specs[p].Outputs {
			for _, c := range lay.Consumers[id] {
				succ[c] = true
			}
		}
		for c := range succ {
			lay.Succ[p] = append(lay.Succ[p], c)
		}
		sort.Ints(lay.Succ[p])
	}
	for p := range lay.Specs {
		if !lay.Specs[p].HasLoss && len(lay.Specs[p].Outputs) == 0 {
			return nil, &SpecError{Part: p, Node: -1, Reason: "nothing the part computes reaches the loss or another part"}
		}
	}
	return lay, nil
}

// Rebatch returns a copy of g whose batch size is to instead of from: the
// data inputs (batch on axis 0) and every node computed from them whose
// axis 0 is a multiple of from get axis 0 scaled by to/from, and Reshape
// targets follow. Reductions over axis 0, transposes that move axis 0 and
// products that contract it end the batch. Lowering the result checks
// every shape.
func Rebatch(g *graph.Graph, data []int64, from, to int) (*graph.Graph, error) {
	if from == to {
		return g, nil
	}
	if from <= 0 || to <= 0 {
		return nil, fmt.Errorf("%w: batch %d → %d", ErrSpec, from, to)
	}
	batchy := make(map[int64]bool)
	for _, id := range data {
		n, ok := g.Node(id)
		if !ok || len(n.Shape) == 0 || n.Shape[0] != from {
			return nil, &SpecError{Part: -1, Node: id, Reason: fmt.Sprintf("data input must have the batch (%d) on axis 0", from)}
		}
		batchy[id] = true
	}
	scale := func(d int) int { return d / from * to }
	out := graph.New()
	for _, n := range g.Nodes() {
		m := n
		if batchy[n.ID] {
			m.Shape = append(graph.Shape{to}, n.Shape[1:]...)
		} else if n.Role == graph.RoleOp && len(n.Shape) > 0 && n.Shape[0]%from == 0 && carries(g, &n, batchy) {
			batchy[n.ID] = true
			m.Shape = append(graph.Shape{scale(n.Shape[0])}, n.Shape[1:]...)
			if n.Op.Kind == graph.KindReshape {
				s := append([]int{}, n.Op.Ints("shape")...)
				if len(s) > 0 {
					s[0] = scale(s[0])
				}
				attrs := append([]graph.Attr{}, n.Op.Attrs...)
				for i := range attrs {
					if attrs[i].Name == "shape" {
						attrs[i] = graph.ShapeAttr("shape", s...)
					}
				}
				m.Op = graph.Op{Kind: n.Op.Kind, Attrs: attrs}
			}
		}
		if err := out.Add(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// carries reports whether op node n keeps the batch axis of a batched
// input on its axis 0.
func carries(g *graph.Graph, n *graph.Node, batchy map[int64]bool) bool {
	first := -1
	for i, in := range n.Inputs {
		if batchy[in] {
			first = i
			break
		}
	}
	if first < 0 {
		return false
	}
	switch n.Op.Kind {
	case graph.KindSum, graph.KindMax:
		for _, ax := range n.Op.Ints("axes") {
			if ax == 0 {
				return false
			}
		}
	case graph.KindTranspose:
		if p := n.Op.Ints("perm"); len(p) > 0 && p[0] != 0 {
			return false
		}
	case graph.KindMatMul, graph.KindBatchedMatMul:
		if first == 0 && n.Op.Bool("trans_a") {
			return false
		}
		if first == 1 && !batchy[n.Inputs[0]] {
			return false
		}
	case graph.KindVecDot, graph.KindTensordot, graph.KindSizeOf, graph.KindAt:
		return false
	}
	return true
}

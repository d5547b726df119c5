package exec

import (
	"fmt"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Bind writes values, by node id, into the learnable nodes of a caller's
// Gorgonia graph: into the tensor already bound to a node where its shape
// and dtype match (so that a machine the caller already made sees them),
// else by binding the value. Every node must have a value.
func Bind(nodes gorgonia.Nodes, values map[int64]*tensor.Dense) error {
	for _, n := range nodes {
		v, ok := values[int64(n.ID())]
		if !ok {
			return fmt.Errorf("exec: no trained value for %q (node %d)", n.Name(), n.ID())
		}
		if cur, ok := n.Value().(*tensor.Dense); ok && cur.Dtype() == v.Dtype() && cur.Shape().Eq(v.Shape()) && cur.IsNativelyAccessible() {
			if err := tensor.Copy(cur, v); err != nil {
				return err
			}
			continue
		}
		if err := gorgonia.Let(n, v); err != nil {
			return fmt.Errorf("exec: binding %q: %w", n.Name(), err)
		}
	}
	return nil
}

// NodeIDs returns the ids of nodes, in order.
func NodeIDs(nodes gorgonia.Nodes) []int64 {
	out := make([]int64, len(nodes))
	for i, n := range nodes {
		out[i] = int64(n.ID())
	}
	return out
}

// Pick returns xs[idx[0]], xs[idx[1]], ...: the executors a layout
// chose (partition.Candidate.Executors), in its grid order.
func Pick[T any](xs []T, idx []int) []T {
	out := make([]T, len(idx))
	for i, j := range idx {
		out[i] = xs[j]
	}
	return out
}

// FeedsByID keys feeds by node id, as Pipeline.Step and Replicas.Step
// take them. A nil node is an error matching ErrSpec.
func FeedsByID(feeds map[*gorgonia.Node]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	out := make(map[int64]*tensor.Dense, len(feeds))
	for n, v := range feeds {
		if n == nil {
			return nil, fmt.Errorf("%w: nil feed node", ErrSpec)
		}
		out[int64(n.ID())] = v
	}
	return out, nil
}

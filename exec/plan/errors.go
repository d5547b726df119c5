package plan

import (
	"errors"
	"fmt"

	"github.com/rookery-ml/rookery/graph"
)

// ErrUnsupported marks a part that holds an op, dtype or mode that Lower
// does not lower; the part can run on the tape-machine executor
// (exec.NewCPU) instead.
var ErrUnsupported = errors.New("plan: unsupported")

// UnsupportedOpError names the node of a part that Lower cannot lower.
type UnsupportedOpError struct {
	Part   int
	Node   int64
	Kind   graph.OpKind
	Reason string
}

func (e *UnsupportedOpError) Error() string {
	return fmt.Sprintf("plan: part %d: node %d: op %s: %s", e.Part, e.Node, e.Kind, e.Reason)
}

// Is makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedOpError) Is(t error) bool { return t == ErrUnsupported }

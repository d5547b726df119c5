package cuda

import (
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
)

func newReference(opts ...Option) exec.Executor {
	return &executor{cfg: newConfig(opts), dev: newRefDevice()}
}

// TestConformanceReference runs the executor conformance suite on the
// reference device: the plans, the derived gradients and the session
// logic, with every kernel interpreted in Go.
func TestConformanceReference(t *testing.T) {
	exectest.Run(t, func(t *testing.T) exec.Executor { return newReference() })
}

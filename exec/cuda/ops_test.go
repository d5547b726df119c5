package cuda

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/graph"
)

// opCase is one op node of the IR applied to learnable operands.
type opCase = exectest.OpCase

// TestOpsMatchCPU lowers each supported op kind (in float64) into a small
// part, runs it forward and backward on the reference device and on the
// CPU executor, and compares the loss and the gradients of the operands.
func TestOpsMatchCPU(t *testing.T) { opsMatchCPU(t, newReference(), 1e-12) }

// opsMatchCPU runs every op case on e, within tol of the CPU executor.
// Gorgonia's gradients of log2, inverse_sqrt and dropout are not their
// derivatives: a part holding one must be refused, not run differently.
func opsMatchCPU(t *testing.T, e exec.Executor, tol float64) {
	exectest.OpsMatchCPU(t, e, tol, exectest.WantRefused(func(c opCase, err error) error {
		var ue *UnsupportedOpError
		if !errors.As(err, &ue) || !errors.Is(err, ErrUnsupported) || ue.Node != 10 || ue.Kind != c.Op.Kind {
			return fmt.Errorf("got %v, want an *UnsupportedOpError for node 10 (%s)", err, c.Op.Kind)
		}
		return nil
	}, graph.KindLog2, graph.KindInverseSqrt, graph.KindDropout))
}

func newRand() *rand.Rand { return rand.New(rand.NewSource(4)) }

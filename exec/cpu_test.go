package exec_test

import (
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
)

func TestCPUConformance(t *testing.T) {
	exectest.Run(t, func(t *testing.T) exec.Executor { return exec.NewCPU() })
}

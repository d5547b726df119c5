package transport_test

import (
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
)

// The conformance suite of package exec runs against the local CPU
// executor and against the same executor behind gRPC: over an in-memory
// listener here, over loopback TCP to a `rookery provider` child process
// in daemon_test.go.

func TestConformanceCPU(t *testing.T) {
	exectest.Run(t, func(t *testing.T) exec.Executor { return exec.NewCPU() })
}

func TestConformanceBufconn(t *testing.T) {
	exectest.Run(t, func(t *testing.T) exec.Executor {
		_, c := startBufconn(t, exec.NewCPU())
		return c
	})
}

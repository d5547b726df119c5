package native_test

import (
	"fmt"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/native"
)

// TestConformance runs the executor conformance suite on the native
// executor, on one thread and on several.
func TestConformance(t *testing.T) {
	for _, threads := range []int{1, 3} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			exectest.Run(t, func(t *testing.T) exec.Executor { return native.New(native.WithThreads(threads), native.WithoutFallback()) })
		})
	}
}

package exec_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// closed session must not leave a paused machine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

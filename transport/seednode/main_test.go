package seednode_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running
// after them: registries, providers, announce loops and leased
// connections must all end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

package guard

import (
	"errors"
	"fmt"

	"github.com/rookery-ml/rookery/exec"
)

// Sentinel errors to branch on with errors.Is. The typed errors below match
// them.
var (
	// ErrMismatch marks replicas of a part whose results disagree beyond
	// the tolerance.
	ErrMismatch = errors.New("guard: results disagree")
	// ErrNoSpare marks a part that needed another executor (a replacement,
	// an arbiter, a checker) when none was left.
	ErrNoSpare = errors.New("guard: no spare executor")
	// ErrConfig marks options that cannot work together.
	ErrConfig = errors.New("guard: invalid configuration")
)

// FailedError says that a part could not be kept running: every executor
// tried for it failed. It matches exec.ErrUnavailable, and ErrNoSpare when
// the spares ran out; Last is the last failure.
type FailedError struct {
	Part     int
	Call     string // "open", "forward", "backward", "step", "put", "get"
	Attempts int    // replacements tried
	Last     error
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("guard: part %d: %s failed after %d replacement(s): %v", e.Part, e.Call, e.Attempts, e.Last)
}

// Is makes errors.Is(err, exec.ErrUnavailable) true.
func (e *FailedError) Is(t error) bool { return t == exec.ErrUnavailable }

// Unwrap returns the last failure.
func (e *FailedError) Unwrap() error { return e.Last }

// MismatchError says that an executor's result disagreed with the result
// the other replicas (or an arbiter) agreed on. Provider names the
// executor that disagreed; Key names the tensor (a node id, or a resident
// name for Get) and Index the first element out of tolerance.
type MismatchError struct {
	Part       int
	Call       string
	MicroBatch int // -1 when not about one micro-batch
	Provider   string
	Key        string
	Index      int
	Got, Want  float64
	Reason     string // set when the results differ in shape, dtype or keys
}

func (e *MismatchError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("guard: part %d: %s (micro-batch %d) on %s: %s: %s", e.Part, e.Call, e.MicroBatch, e.Provider, e.Key, e.Reason)
	}
	return fmt.Sprintf("guard: part %d: %s (micro-batch %d) on %s: %s[%d] = %g, the others agree on %g",
		e.Part, e.Call, e.MicroBatch, e.Provider, e.Key, e.Index, e.Got, e.Want)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(t error) bool { return t == ErrMismatch }

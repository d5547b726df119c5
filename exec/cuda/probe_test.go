package cuda

import (
	"errors"
	"testing"
)

// TestProbeAndNewAgree checks that without a usable GPU Probe and New
// both say why, with the same typed error, and that New never hands back
// an executor then; with a GPU both succeed.
func TestProbeAndNewAgree(t *testing.T) {
	info, perr := Probe()
	e, nerr := New()
	if perr == nil {
		if nerr != nil {
			t.Fatalf("Probe found %v, New failed: %v", info, nerr)
		}
		t.Logf("GPU: %v", info)
		if err := e.(*Executor).Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Logf("no GPU: %v", perr)
	var pe *ProbeError
	if !errors.As(perr, &pe) {
		t.Fatalf("Probe error %v is not a *ProbeError", perr)
	}
	known := false
	for _, s := range []error{ErrNoDriver, ErrNoDevice, ErrDriverTooOld, ErrNoCUBLAS} {
		if errors.Is(perr, s) {
			known = true
			if !errors.Is(nerr, s) {
				t.Errorf("Probe says %v, New says %v", perr, nerr)
			}
		}
	}
	if !known {
		t.Errorf("Probe error %v matches no sentinel", perr)
	}
	if e != nil {
		t.Errorf("New returned an executor without a GPU")
	}
}

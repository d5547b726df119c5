package cuda

import (
	"errors"
	"testing"

	"github.com/rookery-ml/rookery/graph"
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

// TestPackArgs checks the argument layout handed to cuLaunchKernel: a
// pointer with its offset in bytes, a C int (negative ones too), and a
// scalar as a float or a double, each in the low bytes of its slot.
func TestPackArgs(t *testing.T) {
	bufs := []uint64{0x1000, 0x2000}
	args := []Arg{ptr(1), {Type: ArgPtr, Buf: 0, Off: 3}, ival(-2), ival(7), sval(0.5)}
	got, err := packArgs(graph.Float32, args, bufs)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{0x2000, 0x1000 + 12, 0xfffffffe, 7, 0x3f000000}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("float32 argument %d = %#x, want %#x", i, got[i], want[i])
		}
	}
	got, err = packArgs(graph.Float64, args, bufs)
	if err != nil {
		t.Fatal(err)
	}
	if got[1] != 0x1000+24 || got[4] != 0x3fe0000000000000 {
		t.Errorf("float64 arguments %#x", got)
	}
	for _, bad := range []Arg{ptr(2), ival(1 << 40), {}} {
		if _, err := packArgs(graph.Float32, []Arg{bad}, bufs); !errors.Is(err, ErrCUDA) {
			t.Errorf("%+v: got %v, want ErrCUDA", bad, err)
		}
	}
}

package cuda

import (
	"errors"
	"fmt"

	"github.com/rookery-ml/rookery/exec/plan"
)

// Sentinel errors to branch on with errors.Is.
var (
	// ErrNoDriver marks a host without the CUDA driver library
	// (libcuda.so.1) or one that fails to initialise.
	ErrNoDriver = errors.New("cuda: no CUDA driver")
	// ErrNoDevice marks a driver that sees no GPU.
	ErrNoDevice = errors.New("cuda: no CUDA device")
	// ErrDriverTooOld marks a driver older than the kernels need.
	ErrDriverTooOld = errors.New("cuda: CUDA driver too old")
	// ErrNoCUBLAS marks a host without a loadable cuBLAS library.
	ErrNoCUBLAS = errors.New("cuda: no cuBLAS library")
	// ErrUnsupported marks a part that holds an op, dtype or mode that
	// plan.Lower does not lower; the part can run on the CPU instead. It
	// is plan.ErrUnsupported.
	ErrUnsupported = plan.ErrUnsupported
	// ErrCUDA marks a failed call into the driver or cuBLAS.
	ErrCUDA = errors.New("cuda: call failed")
)

// UnsupportedOpError names the node of a part that the CUDA executor
// cannot lower; it is plan.UnsupportedOpError.
type UnsupportedOpError = plan.UnsupportedOpError

// CallError is a failed driver or cuBLAS call, with its status code.
type CallError struct {
	Call string // "cuMemAlloc_v2", "cublasSgemm_v2", ...
	Code int
	Name string // the driver's name for the code, when known
}

func (e *CallError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("cuda: %s: %s (%d)", e.Call, e.Name, e.Code)
	}
	return fmt.Sprintf("cuda: %s: status %d", e.Call, e.Code)
}

// Is makes errors.Is(err, ErrCUDA) true.
func (e *CallError) Is(t error) bool { return t == ErrCUDA }

// ProbeError says why no GPU can be used: Err is one of ErrNoDriver,
// ErrNoDevice, ErrDriverTooOld, ErrNoCUBLAS; Detail says more (the
// libraries tried, the driver's message).
type ProbeError struct {
	Err    error
	Detail string
}

func (e *ProbeError) Error() string { return fmt.Sprintf("%v: %s", e.Err, e.Detail) }

func (e *ProbeError) Unwrap() error { return e.Err }

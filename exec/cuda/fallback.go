package cuda

import (
	"context"
	"errors"

	"github.com/rookery-ml/rookery/exec"
)

// Fallback returns an executor that opens each part on gpu and, when the
// GPU executor refuses the part with ErrUnsupported, on cpu instead;
// onFallback (if not nil) hears of every such part. Other errors are
// returned as they are. It is how a provider keeps parts the CUDA
// executor cannot lower on the CPU, visibly, part by part.
func Fallback(gpu, cpu exec.Executor, onFallback func(part int, err error)) exec.Executor {
	return &fallback{gpu: gpu, cpu: cpu, note: onFallback}
}

type fallback struct {
	gpu, cpu exec.Executor
	note     func(part int, err error)
}

func (f *fallback) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := f.gpu.Open(ctx, spec)
	if err == nil || !errors.Is(err, ErrUnsupported) {
		return s, err
	}
	if f.note != nil {
		f.note(spec.Part, err)
	}
	return f.cpu.Open(ctx, spec)
}

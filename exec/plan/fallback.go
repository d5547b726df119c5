package plan

import (
	"context"
	"errors"

	"github.com/rookery-ml/rookery/exec"
)

// Fallback returns an executor that opens each part on primary (an
// executor of lowered plans: exec/native's or exec/cuda's) and, when it
// refuses the part with ErrUnsupported, on secondary instead (usually the
// tape-machine executor, exec.NewCPU); onFallback (if not nil) hears of
// every such part and why, possibly from several goroutines at once.
// Other errors are returned as they are. It is how parts that Lower
// cannot lower keep running, visibly, part by part.
func Fallback(primary, secondary exec.Executor, onFallback func(part int, err error)) exec.Executor {
	return &fallback{primary: primary, secondary: secondary, note: onFallback}
}

type fallback struct {
	primary, secondary exec.Executor
	note               func(part int, err error)
}

func (f *fallback) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := f.primary.Open(ctx, spec)
	if err == nil || !errors.Is(err, ErrUnsupported) {
		return s, err
	}
	if f.note != nil {
		f.note(spec.Part, err)
	}
	return f.secondary.Open(ctx, spec)
}

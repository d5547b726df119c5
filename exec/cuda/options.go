package cuda

import (
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/plan"
)

// Option configures the CUDA executor.
type Option func(*config)

type config struct {
	maxMicroBatches int
	ordinal         int
}

// WithMaxMicroBatches bounds the micro-batch count a spec may ask for
// (default exec.DefaultMicroBatches); Open refuses a larger one with an
// *exec.MicroBatchLimitError. Each index a session has seen keeps its own
// activations on the device.
func WithMaxMicroBatches(n int) Option { return func(c *config) { c.maxMicroBatches = n } }

// WithDevice picks the GPU by its ordinal (default 0).
func WithDevice(ordinal int) Option { return func(c *config) { c.ordinal = ordinal } }

func newConfig(opts []Option) config {
	c := config{maxMicroBatches: exec.DefaultMicroBatches}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Fallback returns an executor that opens each part on gpu and, when the
// GPU executor refuses the part with ErrUnsupported, on cpu instead;
// onFallback (if not nil) hears of every such part. It is plan.Fallback.
func Fallback(gpu, cpu exec.Executor, onFallback func(part int, err error)) exec.Executor {
	return plan.Fallback(gpu, cpu, onFallback)
}

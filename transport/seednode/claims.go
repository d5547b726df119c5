package seednode

import (
	"errors"
	"fmt"
	"math"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/transport"
)

// The largest speeds a provider may claim. They are far above any one
// machine of today (a GPU does some 10⁶ GFLOP/s at its narrowest
// precision, a memory system some 10¹³ bytes/s), so they refuse only
// claims that no machine makes.
const (
	MaxGFLOPS       = 1e7  // GFLOP/s
	MaxMemBandwidth = 1e14 // bytes per second
)

// ErrSpeed marks a claimed speed that is not a finite number within its
// cap. The error is a *SpeedError.
var ErrSpeed = errors.New("seednode: implausible speed")

// SpeedError is a claimed speed out of range. It matches ErrSpeed and
// transport.ErrInvalidArgument (InvalidArgument on the wire).
type SpeedError struct {
	Field string  // "gflops" or "mem_bandwidth_bytes_per_sec"
	Value float64 // as claimed
	Max   float64
}

func (e *SpeedError) Error() string {
	return fmt.Sprintf("seednode: %s %g: want a finite number in [0, %g] (0: not measured)", e.Field, e.Value, e.Max)
}

// Is makes errors.Is match ErrSpeed and transport.ErrInvalidArgument.
func (e *SpeedError) Is(t error) bool { return t == ErrSpeed || t == transport.ErrInvalidArgument }

// CheckSpeeds returns a *SpeedError unless the speeds c claims are finite
// and within [0, MaxGFLOPS] and [0, MaxMemBandwidth]. Zero means not
// measured (a provider started with --bench 0) and ranks last.
func CheckSpeeds(c *rookeryv1.Capabilities) error {
	for _, f := range []struct {
		name   string
		v, max float64
	}{
		{"gflops", c.GetGflops(), MaxGFLOPS},
		{"mem_bandwidth_bytes_per_sec", c.GetMemBandwidthBytesPerSec(), MaxMemBandwidth},
	} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > f.max {
			return &SpeedError{Field: f.name, Value: f.v, Max: f.max}
		}
	}
	return nil
}

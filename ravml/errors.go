package ravml

import (
	"errors"
	"fmt"
)

// Sentinel errors to branch on with errors.Is.
var (
	// ErrData marks input data that cannot be used: ragged rows, NaN or
	// Inf, labels out of range, a width that differs from the fitted one.
	ErrData = errors.New("ravml: bad data")
	// ErrParam marks a parameter that does not fit the data or is out of
	// range (k larger than the number of rows, a negative depth).
	ErrParam = errors.New("ravml: bad parameter")
	// ErrNotFitted marks Predict, Score or Save on a model before Fit.
	ErrNotFitted = errors.New("ravml: model is not fitted")
)

// DataError says where input data is bad. Row and Col are -1 when the
// problem is not about one row or column.
type DataError struct {
	Row, Col int
	Reason   string
}

func (e *DataError) Error() string {
	switch {
	case e.Row >= 0 && e.Col >= 0:
		return fmt.Sprintf("ravml: row %d, column %d: %s", e.Row, e.Col, e.Reason)
	case e.Row >= 0:
		return fmt.Sprintf("ravml: row %d: %s", e.Row, e.Reason)
	case e.Col >= 0:
		return fmt.Sprintf("ravml: column %d: %s", e.Col, e.Reason)
	}
	return "ravml: " + e.Reason
}

// Is makes errors.Is(err, ErrData) true.
func (e *DataError) Is(t error) bool { return t == ErrData }

// ParamError names a parameter that does not fit.
type ParamError struct {
	Name   string
	Reason string
}

func (e *ParamError) Error() string { return fmt.Sprintf("ravml: %s: %s", e.Name, e.Reason) }

// Is makes errors.Is(err, ErrParam) true.
func (e *ParamError) Is(t error) bool { return t == ErrParam }

func notFitted(model string) error { return fmt.Errorf("%w: %s", ErrNotFitted, model) }

package ravdl

import (
	"errors"
	"fmt"
)

// Sentinel errors to branch on with errors.Is. The typed errors below
// match them.
var (
	// ErrShape marks data or a layer whose shape does not fit.
	ErrShape = errors.New("ravdl: bad shape")
	// ErrLabel marks a class label outside [0, classes).
	ErrLabel = errors.New("ravdl: label out of range")
	// ErrNotBuilt marks a call that needs trained (or at least built)
	// parameters, such as Predict before Fit or Build.
	ErrNotBuilt = errors.New("ravdl: model not built: call Fit or Build first")
	// ErrConfig marks options that cannot work together.
	ErrConfig = errors.New("ravdl: invalid configuration")
	// ErrFormat marks a data file or saved model that cannot be read.
	ErrFormat = errors.New("ravdl: bad file")
)

// ShapeError says that a tensor handed to a layer or to Fit has a shape
// the model cannot take. Layer is -1 when the data itself is at fault.
type ShapeError struct {
	Layer  int    // index of the layer in the Sequential, or -1
	Kind   string // the layer's kind, or what the data is ("x", "y")
	Got    []int
	Reason string
}

func (e *ShapeError) Error() string {
	if e.Layer < 0 {
		return fmt.Sprintf("ravdl: %s has shape %v: %s", e.Kind, e.Got, e.Reason)
	}
	return fmt.Sprintf("ravdl: layer %d (%s): input shape %v: %s", e.Layer, e.Kind, e.Got, e.Reason)
}

// Is makes errors.Is(err, ErrShape) true.
func (e *ShapeError) Is(t error) bool { return t == ErrShape }

// LabelError says that sample Index has a label outside [0, Classes).
type LabelError struct {
	Index   int
	Label   float64
	Classes int
}

func (e *LabelError) Error() string {
	return fmt.Sprintf("ravdl: sample %d has label %v, want an integer in [0, %d)", e.Index, e.Label, e.Classes)
}

// Is makes errors.Is(err, ErrLabel) true.
func (e *LabelError) Is(t error) bool { return t == ErrLabel }

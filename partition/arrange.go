package partition

import (
	"errors"
	"fmt"

	"github.com/rookery-ml/rookery/graph"
)

// ErrRequest marks a Request whose numbers cannot be met together (parts
// that disagree with the plan or with the executors, negative counts).
var ErrRequest = errors.New("partition: layout request")

// Request is what a trainer was asked for: k parts, r replicas, a fixed
// plan, or a layout chosen for the executors it has. Zero counts mean
// "not given".
type Request struct {
	Parts, Replicas int
	Plan            *Plan
	// Auto, when not nil, lets Arrange choose k and r (ChooseLayout with
	// these options) if neither Parts, Replicas nor Plan is given and
	// there is more than one executor.
	Auto []LayoutOption
	// Executors is how many executors there are; 0 when the caller makes
	// k·r of its own after Arrange.
	Executors int
	// Split holds the options of Split (capacities, seed, method).
	Split []Option
}

// Arrangement is how a Request resolves: the plan of k parts, run by r
// replicas on k·r executors.
type Arrangement struct {
	Plan *Plan
	K, R int
	// Layout, Pick and RowWeights are set when the layout was chosen:
	// the candidates weighed, the executors the pick uses (in the order
	// exec.Grid places them) and the replicas' shares of the rows.
	Layout     *Layout
	Pick       []int
	RowWeights []float64
}

// Arrange resolves req for g. Without Parts, it makes one part per
// executor and replica (1 when there are no executors). A plan given
// with Plan is used as it is. Errors from Split come back as they are;
// the others, ChooseLayout's included, match ErrRequest.
func Arrange(g *graph.Graph, req Request) (*Arrangement, error) {
	if req.Parts < 0 || req.Replicas < 0 {
		return nil, fmt.Errorf("%w: %d parts, %d replicas", ErrRequest, req.Parts, req.Replicas)
	}
	a := &Arrangement{Plan: req.Plan, K: req.Parts, R: max(req.Replicas, 1)}
	n := req.Executors
	if req.Replicas == 0 && req.Parts == 0 && req.Plan == nil && req.Auto != nil && n > 1 {
		l, err := ChooseLayout(g, n, append(req.Auto, WithSplitOptions(req.Split...))...)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRequest, err)
		}
		ch := l.Chosen()
		a.Layout, a.Pick, a.RowWeights, a.Plan, a.R = l, ch.Executors, ch.RowWeights, ch.Plan, ch.R
		n = len(ch.Executors)
	}
	switch {
	case a.Plan != nil:
		if a.K != 0 && a.K != len(a.Plan.Parts) {
			return nil, fmt.Errorf("%w: %d parts asked, the plan has %d", ErrRequest, a.K, len(a.Plan.Parts))
		}
		a.K = len(a.Plan.Parts)
	case a.K == 0:
		a.K = max(n/a.R, 1)
	}
	if n > 0 && n != a.K*a.R {
		return nil, fmt.Errorf("%w: %d executors for %d parts × %d replicas", ErrRequest, n, a.K, a.R)
	}
	if a.Plan == nil {
		p, err := Split(g, a.K, req.Split...)
		if err != nil {
			return nil, err
		}
		a.Plan = p
	}
	return a, nil
}

package partition

import (
	"errors"
	"fmt"
)

// Sentinel errors to branch on with errors.Is.
var (
	// ErrInfeasible marks a request that no plan can satisfy.
	ErrInfeasible = errors.New("partition: infeasible request")
	// ErrInvalidOption marks an option value that makes no sense.
	ErrInvalidOption = errors.New("partition: invalid option")
	// ErrInvalidPlan marks a plan that does not fit its graph.
	ErrInvalidPlan = errors.New("partition: invalid plan")
)

// InfeasibleReason says why a split cannot be made.
type InfeasibleReason uint8

// Reasons for an InfeasibleError.
const (
	// ReasonBadK: k is less than 1.
	ReasonBadK InfeasibleReason = iota + 1
	// ReasonTooFewNodes: fewer nodes do work (have positive FLOPs) than
	// there are parts, so some part would have nothing to do.
	ReasonTooFewNodes
	// ReasonHeavyNode: one node costs more than the largest part may hold
	// under the imbalance bound.
	ReasonHeavyNode
)

func (r InfeasibleReason) String() string {
	switch r {
	case ReasonBadK:
		return "k must be at least 1"
	case ReasonTooFewNodes:
		return "fewer nodes with work than parts"
	case ReasonHeavyNode:
		return "a node is heavier than the largest part may be"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// InfeasibleError says that the graph cannot be split into K parts as
// asked, and why.
type InfeasibleError struct {
	K      int
	Reason InfeasibleReason
	// Node is the node that makes the split impossible (ReasonHeavyNode).
	Node int64
	// Cost is that node's FLOPs and Limit the most FLOPs the largest part
	// may hold (ReasonHeavyNode).
	Cost, Limit float64
	// Working is the number of nodes with positive FLOPs
	// (ReasonTooFewNodes).
	Working int
}

func (e *InfeasibleError) Error() string {
	switch e.Reason {
	case ReasonBadK:
		return fmt.Sprintf("partition: k = %d: %v", e.K, e.Reason)
	case ReasonTooFewNodes:
		return fmt.Sprintf("partition: k = %d: only %d nodes have work, so some part would be idle", e.K, e.Working)
	case ReasonHeavyNode:
		return fmt.Sprintf("partition: k = %d: node %d costs %.6g FLOPs, more than the %.6g the largest part may hold; use fewer parts or allow more imbalance",
			e.K, e.Node, e.Cost, e.Limit)
	}
	return fmt.Sprintf("partition: k = %d: %v", e.K, e.Reason)
}

// Is makes errors.Is(err, ErrInfeasible) true.
func (e *InfeasibleError) Is(t error) bool { return t == ErrInfeasible }

// CapacityError says that the capacities given with WithCapacities do not
// fit the request: the wrong number of them, or one that is not a positive
// finite number.
type CapacityError struct {
	K          int
	Capacities []float64
	Index      int // the offending capacity, or -1 when the count is wrong
}

func (e *CapacityError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("partition: %d capacities for k = %d parts", len(e.Capacities), e.K)
	}
	return fmt.Sprintf("partition: capacity %d is %v; capacities must be positive and finite", e.Index, e.Capacities[e.Index])
}

// Is makes errors.Is(err, ErrInvalidOption) true.
func (e *CapacityError) Is(t error) bool { return t == ErrInvalidOption }

// OptionError says that an option other than the capacities has a value
// that makes no sense.
type OptionError struct {
	Option string
	Value  float64
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("partition: %s = %v: %s", e.Option, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidOption) true.
func (e *OptionError) Is(t error) bool { return t == ErrInvalidOption }

// PlanError says how a plan fails to fit its graph.
type PlanError struct {
	Part    int // the part concerned, or -1
	Node    int64
	HasNode bool // whether the error is about Node
	Reason  string
}

func (e *PlanError) Error() string {
	switch {
	case e.Part >= 0 && e.HasNode:
		return fmt.Sprintf("partition: plan: part %d, node %d: %s", e.Part, e.Node, e.Reason)
	case e.Part >= 0:
		return fmt.Sprintf("partition: plan: part %d: %s", e.Part, e.Reason)
	case e.HasNode:
		return fmt.Sprintf("partition: plan: node %d: %s", e.Node, e.Reason)
	}
	return "partition: plan: " + e.Reason
}

// Is makes errors.Is(err, ErrInvalidPlan) true.
func (e *PlanError) Is(t error) bool { return t == ErrInvalidPlan }

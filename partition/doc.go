// Package partition splits a Rookery graph into k balanced parts that can
// run as a pipeline across k providers, sending as few bytes between them
// as it can.
//
// A value moves through it like this. Split takes a *graph.Graph, k and
// options (WithCapacities for providers of unequal speed,
// WithMaxImbalance, WithSeed) and flattens the graph into slices indexed
// by graph position: each node's FLOPs and output bytes from the graph's
// cost model, and its consumers. Inputs, learnable parameters and
// constants (nodes with no inputs and no work) are set aside; every other
// node is split. When those nodes form a chain (a single topological
// order), an exact dynamic program over contiguous segments of that order
// gives the plan with the fewest bytes sent among those within the
// imbalance bound, or, when granularity makes the bound unreachable, the
// smallest bottleneck (largest part cost over its capacity) and the fewest
// bytes among those. Otherwise Split also refines the same program's split
// of the graph's order in a V-cycle, runs a multilevel partitioner (acyclic coarsening by
// matching along edges between adjacent longest-path levels, a split of
// the coarsest graph, and refinement that moves nodes between adjacent
// parts only where that keeps every edge pointing forward), compares both
// with the baseline that cuts the graph's order by cost alone, and keeps
// the best. Parts form a total order, so the graph of parts is acyclic by
// construction. The set-aside nodes then join the first part that
// consumes them. The result is a *Plan: the nodes and cost of each part,
// a topological order of the parts, each value sent across a cut, the
// parameters that several parts share, and Validate to check it against
// the graph. Everything is a pure function of its inputs: the same graph,
// k, options and seed give the same plan.
//
// Error policy: requests that no plan can satisfy give an
// *InfeasibleError (errors.Is ErrInfeasible) that says why: k below 1,
// fewer nodes with work than parts, or one node heavier than the largest
// part may be. Bad options give a *CapacityError or *OptionError
// (ErrInvalidOption). Validate reports a *PlanError (ErrInvalidPlan).
// Split never returns a plan that fails Validate and never panics on a
// valid graph. A plan whose Imbalance exceeds the bound is not an error: it
// is returned only when no contiguous split of the graph's order meets the
// bound (node granularity), and its imbalance is then the smallest such a
// split reaches or less.
package partition

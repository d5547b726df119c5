// Package graph is Rookery's portable graph IR: what a requester's Gorgonia
// computation graph becomes so that another machine can rebuild it and
// compute the very same numbers.
//
// A value moves through it like this. FromGorgonia reads every node of a
// *gorgonia.ExprGraph into a Graph whose node ids are the Gorgonia node ids,
// collapsing Gorgonia's expansions (the Broadcast* family) into one IR node
// each. MarshalBinary turns the Graph into bytes (the rookery.v1 protobuf
// messages); UnmarshalBinary on the provider turns them back, checking every
// size against limits before allocating and every node for consistency.
// Lower rebuilds the Graph into a fresh *gorgonia.ExprGraph, where
// gradients are derived again with Gorgonia's Grad or Backpropagate: only
// the forward graph is ever shipped. Cost gives each node's FLOPs and bytes
// for the partitioner; WriteDOT draws the graph.
//
// The package describes and runs nothing: it holds the op kinds, their
// attributes, shape and dtype rules (Infer), costs, properties (Props:
// which inputs carry a gradient) and encoding, but no kernel, goroutine or
// BLAS call. The kinds that Gorgonia has no op for (the ML kinds, whose
// Props say Extension) are computed by package exec/kernels; Lower refuses
// them, and LowerWith builds them with the LowerFunc it is given.
// exec.Lower is LowerWith with exec's kernel ops, and is what executors
// call.
//
// Error policy: nothing in this package panics on bad input (the Must…
// helpers excepted, which are for building graphs in code). An op that the
// IR does not know is an *UnsupportedOpError when read from Gorgonia and an
// *UnknownKindError when decoded; malformed or inconsistent graphs give
// *DanglingInputError, *CycleError, *ArityError, *ShapeError or *NodeError
// (all match ErrInvalid under errors.Is), and exceeded decoding limits give
// a *LimitError (matching ErrLimit). Lowering a kind without a Gorgonia op
// and without a LowerFunc gives a *NoLoweringError naming the node and its
// kind.
package graph

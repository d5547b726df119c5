package graph

import "slices"

// Props are what the executors need to know of an op kind beside its
// arity, attributes and shape rule: which inputs carry a gradient, and
// whether Gorgonia has an op for it.
type Props struct {
	// NoGrad lists, in increasing order, the inputs that carry no
	// gradient, for which Gorgonia's DiffWRT is false: both operands of a
	// comparison, the input of sign, ceil, floor, size_of and at, and the
	// count of repeat. Gradient analyses skip them.
	NoGrad []int
	// Extension marks a kind that Gorgonia has no op for (the ML kinds of
	// MLKinds and matmul_top_k): Lower builds it only with a LowerFunc,
	// and it has no gradient at all. Its NoGrad is empty all the same:
	// gradient analyses follow paths through it, so that a backward pass
	// that needs one fails when Gorgonia derives it instead of treating
	// the path as absent.
	Extension bool
}

// noGrad is the NoGrad of each kind that has inputs without a gradient.
var noGrad = map[OpKind][]int{
	KindLt: {0, 1}, KindGt: {0, 1}, KindLte: {0, 1}, KindGte: {0, 1}, KindEq: {0, 1}, KindNe: {0, 1},
	KindBroadcastLt: {0, 1}, KindBroadcastGt: {0, 1}, KindBroadcastLte: {0, 1}, KindBroadcastGte: {0, 1},
	KindBroadcastEq: {0, 1}, KindBroadcastNe: {0, 1},
	KindSign: {0}, KindCeil: {0}, KindFloor: {0}, KindSizeOf: {0}, KindAt: {0},
	KindRepeat: {1},
}

// Props returns the properties of k; a kind the IR does not know has the
// zero Props.
func (k OpKind) Props() Props {
	return Props{NoGrad: slices.Clone(noGrad[k]), Extension: specs[k].class == classCustom}
}

// NoGrad reports whether input i of an op of kind k carries no gradient:
// whether i is in k.Props().NoGrad, without copying the list.
func (k OpKind) NoGrad(i int) bool {
	for _, j := range noGrad[k] {
		if j == i {
			return true
		}
	}
	return false
}

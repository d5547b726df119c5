package cuda

import (
	"fmt"

	"github.com/rookery-ml/rookery/graph"
)

// Elementwise op codes, the first argument of the unary, binary and
// gradient kernels. kernels/ops.h defines the same numbers; a test reads
// it and checks that they agree.
const (
	// unary: y = f(x)
	uCopy = iota
	uNeg
	uAbs
	uSign
	uCeil
	uFloor
	uSin
	uCos
	uExp
	uLog
	uLog2
	uSquare
	uSqrt
	uInverse
	uInverseSqrt
	uCube
	uTanh
	uSigmoid
	uLog1p
	uExpm1
	uSoftplus
)

const (
	// binary: z = f(a, b)
	bAdd = iota
	bSub
	bMul
	bDiv
	bPow
	bLt
	bGt
	bLte
	bGte
	bEq
	bNe
	bPowGradA // b·a^(b−1)
	bPowGradB // a^b·ln a
)

// Reduction op codes.
const (
	rSum = iota
	rMax
	rSumSquares
)

// Solver op codes for the update kernel.
const (
	sSGD = iota
	sMomentum
	sNesterov
	sAdam
	sRMSProp
)

var unaryCodes = map[graph.OpKind]int{
	graph.KindNeg: uNeg, graph.KindAbs: uAbs, graph.KindSign: uSign, graph.KindCeil: uCeil,
	graph.KindFloor: uFloor, graph.KindSin: uSin, graph.KindCos: uCos, graph.KindExp: uExp,
	graph.KindLog: uLog, graph.KindLog2: uLog2, graph.KindSquare: uSquare, graph.KindSqrt: uSqrt,
	graph.KindInverse: uInverse, graph.KindInverseSqrt: uInverseSqrt, graph.KindCube: uCube,
	graph.KindTanh: uTanh, graph.KindSigmoid: uSigmoid, graph.KindLog1p: uLog1p,
	graph.KindExpm1: uExpm1, graph.KindSoftplus: uSoftplus,
}

var binaryCodes = map[graph.OpKind]int{
	graph.KindAdd: bAdd, graph.KindSub: bSub, graph.KindMul: bMul, graph.KindDiv: bDiv, graph.KindPow: bPow,
	graph.KindLt: bLt, graph.KindGt: bGt, graph.KindLte: bLte, graph.KindGte: bGte, graph.KindEq: bEq, graph.KindNe: bNe,
	graph.KindBroadcastAdd: bAdd, graph.KindBroadcastSub: bSub, graph.KindBroadcastMul: bMul,
	graph.KindBroadcastDiv: bDiv, graph.KindBroadcastPow: bPow,
	graph.KindBroadcastLt: bLt, graph.KindBroadcastGt: bGt, graph.KindBroadcastLte: bLte,
	graph.KindBroadcastGte: bGte, graph.KindBroadcastEq: bEq, graph.KindBroadcastNe: bNe,
}

var unaryNames = [...]string{"copy", "neg", "abs", "sign", "ceil", "floor", "sin", "cos", "exp", "log", "log2",
	"square", "sqrt", "inverse", "inverse_sqrt", "cube", "tanh", "sigmoid", "log1p", "expm1", "softplus"}
var binaryNames = [...]string{"add", "sub", "mul", "div", "pow", "lt", "gt", "lte", "gte", "eq", "ne", "pow_grad_a", "pow_grad_b"}
var reduceNames = [...]string{"sum", "max", "sum_squares"}
var solverNames = [...]string{"sgd", "momentum", "nesterov", "adam", "rmsprop"}

// ArgType is the C type of a kernel parameter.
type ArgType uint8

// Kernel parameter types: a device pointer, a 32-bit int, and a floating
// point scalar of the kernel's element type (float or double).
const (
	ArgPtr ArgType = iota + 1
	ArgInt
	ArgScalar
)

func (t ArgType) String() string {
	switch t {
	case ArgPtr:
		return "ptr"
	case ArgInt:
		return "int"
	case ArgScalar:
		return "scalar"
	}
	return fmt.Sprintf("argtype(%d)", uint8(t))
}

// Kernel parameter lists, by kernel base name (the PTX entry is the base
// name with _f32 or _f64). Dims are padded to rank 4 on the left; d0 is
// implied by n.
var kernelSigs = map[string][]ArgType{
	// unary(op, n, acc, d1, d2, d3, xs0..xs3, x, y): y[i] (+)= f(x[strided i])
	"unary": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr},
	// scatter(n, acc, d1, d2, d3, xs0..xs3, ys0..ys3, x, y): y[strided i] (+)= x[strided i]
	"scatter": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr},
	// unary_grad(op, n, acc, x, y, dy, dx): dx (+)= dy·f'(x)
	"unary_grad": {ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
	// binary(op, n, acc, d1, d2, d3, as0..as3, bs0..bs3, a, b, z)
	"binary": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr},
	// reduce(op, nOut, acc, scale, o1, o2, o3, r0..r3, xs0..xs3, x, y)
	"reduce": {ArgInt, ArgInt, ArgInt, ArgScalar, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr},
	// fill(n, v, y)
	"fill": {ArgInt, ArgScalar, ArgPtr},
	// softmax(rows, cols, log, x, y): along the last axis
	"softmax": {ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr},
	// softmax_grad(rows, cols, log, acc, y, dy, dx)
	"softmax_grad": {ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr},
	// im2col(n, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, x, col)
	"im2col": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr},
	// col2im(n, acc, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, col, dx): n = b·c·h·w
	"col2im": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr},
	// maxpool(n, c, h, w, oh, ow, kh, kw, pn, pw, sh, sw, x, y): n = b·c·oh·ow
	"maxpool": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr},
	// maxpool_grad(n, acc, c, h, w, oh, ow, kh, kw, pn, pw, sh, sw, x, y, dy, dx): n = b·c·h·w
	"maxpool_grad": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
	// update(op, n, lr, scale, wd, decay, mu, b1, b2, c1, c2, eps, clip, p, g, s0, s1)
	"update": {ArgInt, ArgInt, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgScalar, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
}

// KernelNames lists the base names of the kernels, sorted.
func KernelNames() []string {
	return []string{"binary", "col2im", "fill", "im2col", "maxpool", "maxpool_grad", "reduce", "scatter", "softmax", "softmax_grad", "unary", "unary_grad", "update"}
}

// suffix is the kernel name suffix for a dtype.
func suffix(dt graph.DType) string {
	if dt == graph.Float64 {
		return "_f64"
	}
	return "_f32"
}

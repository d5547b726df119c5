package plan

import (
	"fmt"

	"github.com/rookery-ml/rookery/graph"
)

// Elementwise op codes, the first argument of the unary, binary and
// gradient kernels. kernels/ops.h defines the same numbers; a test reads
// it and checks that they agree.
const (
	// unary: y = f(x)
	UCopy = iota
	UNeg
	UAbs
	USign
	UCeil
	UFloor
	USin
	UCos
	UExp
	ULog
	ULog2
	USquare
	USqrt
	UInverse
	UInverseSqrt
	UCube
	UTanh
	USigmoid
	ULog1p
	UExpm1
	USoftplus
)

const (
	// binary: z = f(a, b)
	BAdd = iota
	BSub
	BMul
	BDiv
	BPow
	BLt
	BGt
	BLte
	BGte
	BEq
	BNe
	BPowGradA // b·a^(b−1)
	BPowGradB // a^b·ln a
)

// Reduction op codes.
const (
	RSum = iota
	RMax
	RSumSquares
)

// Solver op codes for the update kernel.
const (
	SSGD = iota
	SMomentum
	SNesterov
	SAdam
	SRMSProp
)

var unaryCodes = map[graph.OpKind]int{
	graph.KindNeg: UNeg, graph.KindAbs: UAbs, graph.KindSign: USign, graph.KindCeil: UCeil,
	graph.KindFloor: UFloor, graph.KindSin: USin, graph.KindCos: UCos, graph.KindExp: UExp,
	graph.KindLog: ULog, graph.KindLog2: ULog2, graph.KindSquare: USquare, graph.KindSqrt: USqrt,
	graph.KindInverse: UInverse, graph.KindInverseSqrt: UInverseSqrt, graph.KindCube: UCube,
	graph.KindTanh: UTanh, graph.KindSigmoid: USigmoid, graph.KindLog1p: ULog1p,
	graph.KindExpm1: UExpm1, graph.KindSoftplus: USoftplus,
}

var binaryCodes = map[graph.OpKind]int{
	graph.KindAdd: BAdd, graph.KindSub: BSub, graph.KindMul: BMul, graph.KindDiv: BDiv, graph.KindPow: BPow,
	graph.KindLt: BLt, graph.KindGt: BGt, graph.KindLte: BLte, graph.KindGte: BGte, graph.KindEq: BEq, graph.KindNe: BNe,
	graph.KindBroadcastAdd: BAdd, graph.KindBroadcastSub: BSub, graph.KindBroadcastMul: BMul,
	graph.KindBroadcastDiv: BDiv, graph.KindBroadcastPow: BPow,
	graph.KindBroadcastLt: BLt, graph.KindBroadcastGt: BGt, graph.KindBroadcastLte: BLte,
	graph.KindBroadcastGte: BGte, graph.KindBroadcastEq: BEq, graph.KindBroadcastNe: BNe,
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
	// conv(b, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw, cout, x, f, y):
	// y (cout, b, oh·ow) = f (cout, c·kh·kw) · patches of x; host devices only
	"conv": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr},
	// conv_filter_grad(b, ..., cout, acc, x, dy, df): df (+)= dy (cout, b,
	// oh·ow) · patchesᵀ; host devices only
	"conv_filter_grad": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr},
	// conv_input_grad(b, ..., cout, acc, dy, f, dx): dx (+)= col2im(dyᵀ·f);
	// host devices only
	"conv_input_grad": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr},
	// bias_relu(n, b, cout, hw, y, bias, mask, out): a = y[co, bi, r] +
	// bias[co]; mask = a >= 0; out = a·mask, both (b, cout, hw); host devices only
	"bias_relu": {ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
	// bias_relu_grad(n, b, cout, hw, hasBias, accBias, dy, mask, dbias, dyc):
	// g = dy·mask; dyc[co, bi, r] = g; dbias[co] (+)= Σ g; host devices only
	"bias_relu_grad": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
	// conv_bias_relu_pool(b, c, h, w, oh, ow, kh, kw, ph, pw, sh, sw, dh, dw,
	// cout, x, f, bias, route, out): the 2×2 max pool of stride 2 of
	// relu(f·patches of x + bias) into out (b, cout, oh/2, ow/2); route is
	// the window's pixel (0-3) its gradient goes to, -1 for none; host
	// devices only
	"conv_bias_relu_pool": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
	// bias_relu_rows(n, cols, x, bias, mask, out): a = x + bias (bias
	// along the cols of rows × cols), mask = a >= 0, out = a·mask; host
	// devices only
	"bias_relu_rows": {ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
	// bias_relu_rows_grad(n, cols, hasBias, accBias, hasX, accX, dy, mask,
	// dbias, dx): g = dy·mask; dx (+)= g; dbias (+)= Σ over rows of g;
	// host devices only
	"bias_relu_rows_grad": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
	// bias_relu_pool_grad(n, b, cout, oh, ow, hasBias, accBias, dy, route,
	// dbias, dyc): dyc (cout, b, oh·ow) gets dy at each window's route and
	// 0 elsewhere; dbias[co] (+)= the sum of what was routed; host devices only
	"bias_relu_pool_grad": {ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgInt, ArgPtr, ArgPtr, ArgPtr, ArgPtr},
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

// KernelSig returns the parameter list of the kernel with base name k.
func KernelSig(k string) ([]ArgType, bool) {
	sig, ok := kernelSigs[k]
	return sig, ok
}

// OpNames lists, by code, the names of the op codes of a kernel family:
// "unary" (also unary_grad), "binary", "reduce" or "update".
func OpNames(family string) []string {
	switch family {
	case "unary":
		return unaryNames[:]
	case "binary":
		return binaryNames[:]
	case "reduce":
		return reduceNames[:]
	case "update":
		return solverNames[:]
	}
	return nil
}

package cuda

import "github.com/rookery-ml/rookery/exec/plan"

// The lowering moved to package plan; the tests here still name its
// types, op codes and helpers as they did.
type (
	Launch = plan.Launch
	Arg    = plan.Arg
	Gemm   = plan.Gemm
	Plan   = plan.Plan
	Buffer = plan.Buffer
)

const (
	bAdd          = plan.BAdd
	bDiv          = plan.BDiv
	bEq           = plan.BEq
	bGt           = plan.BGt
	bGte          = plan.BGte
	bLt           = plan.BLt
	bLte          = plan.BLte
	bMul          = plan.BMul
	bNe           = plan.BNe
	bPow          = plan.BPow
	bPowGradA     = plan.BPowGradA
	bPowGradB     = plan.BPowGradB
	bSub          = plan.BSub
	rMax          = plan.RMax
	rSum          = plan.RSum
	rSumSquares   = plan.RSumSquares
	sAdam         = plan.SAdam
	sMomentum     = plan.SMomentum
	sNesterov     = plan.SNesterov
	sRMSProp      = plan.SRMSProp
	sSGD          = plan.SSGD
	uAbs          = plan.UAbs
	uCeil         = plan.UCeil
	uCopy         = plan.UCopy
	uCos          = plan.UCos
	uCube         = plan.UCube
	uExp          = plan.UExp
	uExpm1        = plan.UExpm1
	uFloor        = plan.UFloor
	uInverse      = plan.UInverse
	uInverseSqrt  = plan.UInverseSqrt
	uLog          = plan.ULog
	uLog1p        = plan.ULog1p
	uLog2         = plan.ULog2
	uNeg          = plan.UNeg
	uSigmoid      = plan.USigmoid
	uSign         = plan.USign
	uSin          = plan.USin
	uSoftplus     = plan.USoftplus
	uSqrt         = plan.USqrt
	uSquare       = plan.USquare
	uTanh         = plan.UTanh
	ArgPtr        = plan.ArgPtr
	ArgInt        = plan.ArgInt
	ArgScalar     = plan.ArgScalar
	BufParam      = plan.BufParam
	BufAccum      = plan.BufAccum
	BufState      = plan.BufState
	BufConst      = plan.BufConst
	BufInput      = plan.BufInput
	BufActivation = plan.BufActivation
	BufGradIn     = plan.BufGradIn
	BufGrad       = plan.BufGrad
)

var (
	Lower       = plan.Lower
	KernelNames = plan.KernelNames
	solverSlots = plan.SolverSlots
	base        = plan.KernelBase
)

// Argument constructors.
func ptr(b int) Arg      { return Arg{Type: ArgPtr, Buf: b} }
func ival(v int) Arg     { return Arg{Type: ArgInt, Int: v} }
func sval(v float64) Arg { return Arg{Type: ArgScalar, Scalar: v} }

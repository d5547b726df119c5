package graph

import (
	"fmt"
	"sort"

	"gorgonia.org/tensor"
)

// OpKind names an operation of the IR. Kinds are stable strings: they are
// what travels on the wire.
type OpKind string

// Sources.
const (
	KindInput    OpKind = "input"    // fed from outside: inputs and learnable parameters
	KindConstant OpKind = "constant" // Node.Value holds the value
)

// Elementwise binary ops. Operands have equal shapes, or one is a scalar.
// Comparisons take the bool attribute "ret_same": true returns 1/0 in the
// operands' dtype, false returns Bool.
const (
	KindAdd OpKind = "add"
	KindSub OpKind = "sub"
	KindMul OpKind = "mul" // Hadamard product
	KindDiv OpKind = "div" // Hadamard division
	KindPow OpKind = "pow"
	KindLt  OpKind = "lt"
	KindGt  OpKind = "gt"
	KindLte OpKind = "lte"
	KindGte OpKind = "gte"
	KindEq  OpKind = "eq"
	KindNe  OpKind = "ne"
)

// Broadcasting binary ops: Gorgonia's Broadcast* family, one IR node each.
// Attributes "left" and "right" (axes) say along which axes the left or the
// right operand is repeated; comparisons also take "ret_same".
const (
	KindBroadcastAdd OpKind = "broadcast_add"
	KindBroadcastSub OpKind = "broadcast_sub"
	KindBroadcastMul OpKind = "broadcast_mul"
	KindBroadcastDiv OpKind = "broadcast_div"
	KindBroadcastPow OpKind = "broadcast_pow"
	KindBroadcastLt  OpKind = "broadcast_lt"
	KindBroadcastGt  OpKind = "broadcast_gt"
	KindBroadcastLte OpKind = "broadcast_lte"
	KindBroadcastGte OpKind = "broadcast_gte"
	KindBroadcastEq  OpKind = "broadcast_eq"
	KindBroadcastNe  OpKind = "broadcast_ne"
)

// Elementwise unary ops.
const (
	KindAbs         OpKind = "abs"
	KindSign        OpKind = "sign"
	KindCeil        OpKind = "ceil"
	KindFloor       OpKind = "floor"
	KindSin         OpKind = "sin"
	KindCos         OpKind = "cos"
	KindExp         OpKind = "exp"
	KindLog         OpKind = "log"
	KindLog2        OpKind = "log2"
	KindNeg         OpKind = "neg"
	KindSquare      OpKind = "square"
	KindSqrt        OpKind = "sqrt"
	KindInverse     OpKind = "inverse"
	KindInverseSqrt OpKind = "inverse_sqrt"
	KindCube        OpKind = "cube"
	KindTanh        OpKind = "tanh"
	KindSigmoid     OpKind = "sigmoid"
	KindLog1p       OpKind = "log1p"
	KindExpm1       OpKind = "expm1"
	KindSoftplus    OpKind = "softplus"
)

// Linear algebra.
const (
	KindMatMul        OpKind = "matmul"         // (m,k)×(k,n); bools "trans_a", "trans_b"
	KindMatVec        OpKind = "matvec"         // (m,n)×(n); bool "trans_a"
	KindVecDot        OpKind = "vecdot"         // (n)·(n) → scalar
	KindOuter         OpKind = "outer"          // (m)⊗(n) → (m,n)
	KindBatchedMatMul OpKind = "batched_matmul" // (b,m,k)×(b,k,n); bools "trans_a", "trans_b"
	KindTensordot     OpKind = "tensordot"      // ints "a_axes", "b_axes"
)

// Reductions and shape ops.
const (
	KindSum       OpKind = "sum"       // axes "axes"
	KindMax       OpKind = "max"       // axes "axes"
	KindReshape   OpKind = "reshape"   // shape "shape"
	KindTranspose OpKind = "transpose" // axes "perm"
	KindSlice     OpKind = "slice"     // ints "axis", "start", "end", "step"; bool "all" (the whole axis)
	KindConcat    OpKind = "concat"    // int "axis"; one or more inputs
	KindAt        OpKind = "at"        // ints "coords"; scalar result
	KindRepeat    OpKind = "repeat"    // int "axis"; inputs: tensor, repeat count (scalar)
	KindSizeOf    OpKind = "size_of"   // int "axis"; the size of axis of the input, as a scalar
)

// Neural-network ops.
const (
	KindSoftmax         OpKind = "softmax"          // int "axis"; bool "log" for log-softmax
	KindIm2Col          OpKind = "im2col"           // shapes "kernel", "pad", "stride", "dilation" (2 each)
	KindMaxPool2D       OpKind = "maxpool2d"        // shapes "kernel", "stride" (2), "pad" (4: north, south, west, east); bool "explicit_pad" (pads given as 4 values)
	KindAvgPool2D       OpKind = "avgpool2d"        // as maxpool2d
	KindGlobalAvgPool2D OpKind = "global_avgpool2d" // (b,c,h,w) → (b,c,1,1)
	KindDropout         OpKind = "dropout"          // float "probability"; bool "training"
	KindBatchNorm       OpKind = "batchnorm"        // floats "momentum", "epsilon"; bool "training"; tensors "running_mean", "running_var"
)

// AttrType is the type of an attribute value.
type AttrType uint8

// Attribute types.
const (
	AttrInvalid AttrType = iota
	AttrInt
	AttrFloat
	AttrBool
	AttrString
	AttrInts   // a list of integers
	AttrFloats // a list of floats
	AttrShape  // a shape (non-negative integers)
	AttrAxes   // a list of axes
	AttrTensor // a tensor value (for instance batch-norm statistics)
)

var attrTypeNames = [...]string{"invalid", "int", "float", "bool", "string", "ints", "floats", "shape", "axes", "tensor"}

func (t AttrType) String() string {
	if int(t) < len(attrTypeNames) {
		return attrTypeNames[t]
	}
	return fmt.Sprintf("attrtype(%d)", uint8(t))
}

// Attr is one named, typed attribute of an op. Exactly the field that
// matches Type is meaningful; Ints carries AttrInts, AttrShape and AttrAxes.
type Attr struct {
	Name   string
	Type   AttrType
	Int    int64
	Float  float64
	Bool   bool
	String string
	Ints   []int
	Floats []float64
	Tensor *tensor.Dense
}

// Op is an op kind with its attributes, sorted by name.
type Op struct {
	Kind  OpKind
	Attrs []Attr
}

// NewOp returns an op of the given kind with the attributes sorted by name.
func NewOp(kind OpKind, attrs ...Attr) Op {
	a := append([]Attr(nil), attrs...)
	sort.Slice(a, func(i, j int) bool { return a[i].Name < a[j].Name })
	return Op{Kind: kind, Attrs: a}
}

// Attribute constructors.
func IntAttr(name string, v int) Attr       { return Attr{Name: name, Type: AttrInt, Int: int64(v)} }
func FloatAttr(name string, v float64) Attr { return Attr{Name: name, Type: AttrFloat, Float: v} }
func BoolAttr(name string, v bool) Attr     { return Attr{Name: name, Type: AttrBool, Bool: v} }
func StringAttr(name, v string) Attr        { return Attr{Name: name, Type: AttrString, String: v} }
func IntsAttr(name string, v ...int) Attr   { return Attr{Name: name, Type: AttrInts, Ints: clone(v)} }
func ShapeAttr(name string, v ...int) Attr  { return Attr{Name: name, Type: AttrShape, Ints: clone(v)} }
func AxesAttr(name string, v ...int) Attr   { return Attr{Name: name, Type: AttrAxes, Ints: clone(v)} }
func FloatsAttr(name string, v ...float64) Attr {
	return Attr{Name: name, Type: AttrFloats, Floats: append([]float64{}, v...)}
}
func TensorAttr(name string, v *tensor.Dense) Attr {
	return Attr{Name: name, Type: AttrTensor, Tensor: v}
}

func clone(v []int) []int { return append([]int{}, v...) }

// Attr returns the attribute with the given name.
func (o Op) Attr(name string) (Attr, bool) {
	i := sort.Search(len(o.Attrs), func(i int) bool { return o.Attrs[i].Name >= name })
	if i < len(o.Attrs) && o.Attrs[i].Name == name {
		return o.Attrs[i], true
	}
	return Attr{}, false
}

// Int returns an int attribute (0 if absent).
func (o Op) Int(name string) int { a, _ := o.Attr(name); return int(a.Int) }

// Float returns a float attribute (0 if absent).
func (o Op) Float(name string) float64 { a, _ := o.Attr(name); return a.Float }

// Bool returns a bool attribute (false if absent).
func (o Op) Bool(name string) bool { a, _ := o.Attr(name); return a.Bool }

// Ints returns an ints, shape or axes attribute (nil if absent).
func (o Op) Ints(name string) []int { a, _ := o.Attr(name); return a.Ints }

// Tensor returns a tensor attribute (nil if absent).
func (o Op) Tensor(name string) *tensor.Dense { a, _ := o.Attr(name); return a.Tensor }

func (o Op) String() string {
	s := string(o.Kind)
	for _, a := range o.Attrs {
		s += " " + a.Name + "=" + a.valueString()
	}
	return s
}

func (a Attr) valueString() string {
	switch a.Type {
	case AttrInt:
		return fmt.Sprint(a.Int)
	case AttrFloat:
		return fmt.Sprint(a.Float)
	case AttrBool:
		return fmt.Sprint(a.Bool)
	case AttrString:
		return fmt.Sprintf("%q", a.String)
	case AttrInts, AttrShape, AttrAxes:
		return fmt.Sprint(a.Ints)
	case AttrFloats:
		return fmt.Sprint(a.Floats)
	case AttrTensor:
		if a.Tensor == nil {
			return "tensor(nil)"
		}
		return fmt.Sprintf("tensor%v", []int(a.Tensor.Shape()))
	}
	return "?"
}

// attrSpec says that an op takes an attribute of a type, and whether it
// must be present.
type attrSpec struct {
	name     string
	typ      AttrType
	required bool
}

// opSpec is what the IR knows about a kind without running it.
type opSpec struct {
	minIn, maxIn int // maxIn < 0: unbounded
	attrs        []attrSpec
	class        opClass
}

type opClass uint8

const (
	classSource opClass = iota
	classUnary
	classBinary
	classBroadcast
	classLinAlg
	classReduce
	classShape
	classNN
	classCustom // kinds registered with registerKind
)

// kindImpl is what a kind registered outside the core tables brings: its
// shape rule and its FLOPs. Gorgonia has no op for such a kind: Lower
// builds it with the LowerFunc it is given.
type kindImpl struct {
	infer func(op Op, in []*Node) (Shape, DType, error)
	flops func(op Op, n *Node, in []*Node) int64
}

var customKinds = map[OpKind]kindImpl{}

// registerKind adds an op kind with its own implementation. It is called
// from init functions of this package only.
func registerKind(k OpKind, spec opSpec, impl kindImpl) {
	if _, dup := specs[k]; dup {
		panic("graph: op kind registered twice: " + string(k))
	}
	spec.class = classCustom
	specs[k] = spec
	customKinds[k] = impl
}

func req(name string, t AttrType) attrSpec { return attrSpec{name, t, true} }
func opt(name string, t AttrType) attrSpec { return attrSpec{name, t, false} }

var specs = map[OpKind]opSpec{}

func init() {
	specs[KindInput] = opSpec{0, 0, nil, classSource}
	specs[KindConstant] = opSpec{0, 0, nil, classSource}
	for _, k := range []OpKind{KindAdd, KindSub, KindMul, KindDiv, KindPow} {
		specs[k] = opSpec{2, 2, nil, classBinary}
	}
	for _, k := range []OpKind{KindLt, KindGt, KindLte, KindGte, KindEq, KindNe} {
		specs[k] = opSpec{2, 2, []attrSpec{req("ret_same", AttrBool)}, classBinary}
	}
	for _, k := range []OpKind{KindBroadcastAdd, KindBroadcastSub, KindBroadcastMul, KindBroadcastDiv, KindBroadcastPow} {
		specs[k] = opSpec{2, 2, []attrSpec{opt("left", AttrAxes), opt("right", AttrAxes)}, classBroadcast}
	}
	for _, k := range []OpKind{KindBroadcastLt, KindBroadcastGt, KindBroadcastLte, KindBroadcastGte, KindBroadcastEq, KindBroadcastNe} {
		specs[k] = opSpec{2, 2, []attrSpec{opt("left", AttrAxes), opt("right", AttrAxes), req("ret_same", AttrBool)}, classBroadcast}
	}
	for _, k := range UnaryKinds() {
		specs[k] = opSpec{1, 1, nil, classUnary}
	}
	specs[KindMatMul] = opSpec{2, 2, []attrSpec{opt("trans_a", AttrBool), opt("trans_b", AttrBool)}, classLinAlg}
	specs[KindMatVec] = opSpec{2, 2, []attrSpec{opt("trans_a", AttrBool)}, classLinAlg}
	specs[KindVecDot] = opSpec{2, 2, nil, classLinAlg}
	specs[KindOuter] = opSpec{2, 2, nil, classLinAlg}
	specs[KindBatchedMatMul] = opSpec{2, 2, []attrSpec{opt("trans_a", AttrBool), opt("trans_b", AttrBool)}, classLinAlg}
	specs[KindTensordot] = opSpec{2, 2, []attrSpec{req("a_axes", AttrInts), req("b_axes", AttrInts)}, classLinAlg}
	specs[KindSum] = opSpec{1, 1, []attrSpec{req("axes", AttrAxes)}, classReduce}
	specs[KindMax] = opSpec{1, 1, []attrSpec{req("axes", AttrAxes)}, classReduce}
	specs[KindReshape] = opSpec{1, 1, []attrSpec{req("shape", AttrShape)}, classShape}
	specs[KindTranspose] = opSpec{1, 1, []attrSpec{req("perm", AttrAxes)}, classShape}
	specs[KindSlice] = opSpec{1, 1, []attrSpec{req("axis", AttrInt), opt("start", AttrInt), opt("end", AttrInt), opt("step", AttrInt), opt("all", AttrBool)}, classShape}
	specs[KindConcat] = opSpec{1, -1, []attrSpec{req("axis", AttrInt)}, classShape}
	specs[KindAt] = opSpec{1, 1, []attrSpec{req("coords", AttrInts)}, classShape}
	specs[KindRepeat] = opSpec{2, 2, []attrSpec{req("axis", AttrInt)}, classShape}
	specs[KindSizeOf] = opSpec{1, 1, []attrSpec{req("axis", AttrInt)}, classShape}
	specs[KindSoftmax] = opSpec{1, 1, []attrSpec{req("axis", AttrInt), opt("log", AttrBool)}, classNN}
	specs[KindIm2Col] = opSpec{1, 1, []attrSpec{req("kernel", AttrShape), req("pad", AttrShape), req("stride", AttrShape), req("dilation", AttrShape)}, classNN}
	pool := []attrSpec{req("kernel", AttrShape), req("pad", AttrShape), req("stride", AttrShape), opt("explicit_pad", AttrBool)}
	specs[KindMaxPool2D] = opSpec{1, 1, pool, classNN}
	specs[KindAvgPool2D] = opSpec{1, 1, pool, classNN}
	specs[KindGlobalAvgPool2D] = opSpec{1, 1, nil, classNN}
	specs[KindDropout] = opSpec{1, 1, []attrSpec{req("probability", AttrFloat), opt("training", AttrBool)}, classNN}
	specs[KindBatchNorm] = opSpec{1, 1, []attrSpec{req("momentum", AttrFloat), req("epsilon", AttrFloat), opt("training", AttrBool), req("running_mean", AttrTensor), req("running_var", AttrTensor)}, classNN}
}

// UnaryKinds lists the elementwise unary kinds.
func UnaryKinds() []OpKind {
	return []OpKind{KindAbs, KindSign, KindCeil, KindFloor, KindSin, KindCos, KindExp, KindLog, KindLog2, KindNeg,
		KindSquare, KindSqrt, KindInverse, KindInverseSqrt, KindCube, KindTanh, KindSigmoid, KindLog1p, KindExpm1, KindSoftplus}
}

// Kinds lists every op kind the IR knows, sorted.
func Kinds() []OpKind {
	ks := make([]OpKind, 0, len(specs))
	for k := range specs {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

// Known reports whether k is an op kind of the IR.
func Known(k OpKind) bool { _, ok := specs[k]; return ok }

func (s opSpec) checkAttrs(o Op) error {
	for i, a := range o.Attrs {
		if i > 0 && o.Attrs[i-1].Name >= a.Name {
			return fmt.Errorf("%w: attributes of %s not sorted or duplicated at %q", ErrInvalid, o.Kind, a.Name)
		}
		var sp *attrSpec
		for j := range s.attrs {
			if s.attrs[j].name == a.Name {
				sp = &s.attrs[j]
			}
		}
		if sp == nil {
			return fmt.Errorf("%w: op %s has no attribute %q", ErrInvalid, o.Kind, a.Name)
		}
		if sp.typ != a.Type {
			return fmt.Errorf("%w: op %s attribute %q is %v, want %v", ErrInvalid, o.Kind, a.Name, a.Type, sp.typ)
		}
		if a.Type == AttrTensor && a.Tensor == nil {
			return fmt.Errorf("%w: op %s attribute %q has no tensor", ErrInvalid, o.Kind, a.Name)
		}
	}
	for _, sp := range s.attrs {
		if _, ok := o.Attr(sp.name); sp.required && !ok {
			return fmt.Errorf("%w: op %s needs attribute %q", ErrInvalid, o.Kind, sp.name)
		}
	}
	return nil
}

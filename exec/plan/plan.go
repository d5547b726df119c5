package plan

import (
	"fmt"
	"slices"
	"strings"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// BufClass says what a buffer of a plan holds and how long it lives.
type BufClass uint8

// Buffer classes. Params, accumulators, solver state, constants and the
// backward pass's gradients and temporaries are one per session;
// inputs and activations are one per micro-batch index.
const (
	BufParam      BufClass = iota + 1 // a learnable parameter's value
	BufAccum                          // a parameter's accumulated gradient, zeroed by Step
	BufState                          // a solver state slot
	BufConst                          // a constant, uploaded at Open
	BufInput                          // an input fed by Forward (per micro-batch)
	BufActivation                     // an op's value (per micro-batch)
	BufGradIn                         // a gradient handed to Backward
	BufGrad                           // gradients and temporaries of the backward pass, reused
)

var bufClassNames = [...]string{"invalid", "param", "accum", "state", "const", "input", "activation", "grad_in", "grad"}

func (c BufClass) String() string {
	if int(c) < len(bufClassNames) {
		return bufClassNames[c]
	}
	return fmt.Sprintf("bufclass(%d)", uint8(c))
}

// PerMicroBatch reports whether each micro-batch index has its own copy.
func (c BufClass) PerMicroBatch() bool { return c == BufInput || c == BufActivation }

// Buffer is one device allocation of a plan.
type Buffer struct {
	Class BufClass
	Node  int64 // the node it belongs to; -1 for a pooled gradient buffer
	Elems int   // number of elements of the plan's dtype
	Slot  string
}

// Dim3 is a CUDA grid or block size.
type Dim3 struct{ X, Y, Z int }

func (d Dim3) String() string { return fmt.Sprintf("(%d,%d,%d)", d.X, d.Y, d.Z) }

// Arg is one kernel argument: a buffer (with an element offset), an int,
// or a scalar of the plan's dtype.
type Arg struct {
	Type   ArgType
	Buf    int
	Off    int
	Int    int
	Scalar float64
}

func (a Arg) String() string {
	switch a.Type {
	case ArgPtr:
		if a.Off != 0 {
			return fmt.Sprintf("b%d+%d", a.Buf, a.Off)
		}
		return fmt.Sprintf("b%d", a.Buf)
	case ArgInt:
		return fmt.Sprint(a.Int)
	case ArgScalar:
		return fmt.Sprint(a.Scalar)
	}
	return "?"
}

// Gemm is a cuBLAS gemm call in cuBLAS's own, column-major terms:
// C = Alpha·op(A)·op(B) + Beta·C with op(A) M×K, op(B) K×N, C M×N. The
// lowering turns the IR's row-major products into such calls.
type Gemm struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float64
	A, B, C        int // buffers
	Lda, Ldb, Ldc  int
}

// Launch is one step of a plan: a kernel launch or a cuBLAS gemm.
type Launch struct {
	Node   int64  // the IR node it computes, or whose gradient it computes
	Kernel string // PTX entry name, or "sgemm"/"dgemm"
	Grid   Dim3
	Block  Dim3
	Args   []Arg
	Gemm   *Gemm
}

func (l Launch) String() string {
	if l.Gemm != nil {
		g := l.Gemm
		t := func(b bool) string {
			if b {
				return "T"
			}
			return "N"
		}
		return fmt.Sprintf("%s %s%s m=%d n=%d k=%d alpha=%v A=b%d lda=%d B=b%d ldb=%d beta=%v C=b%d ldc=%d",
			l.Kernel, t(g.TransA), t(g.TransB), g.M, g.N, g.K, g.Alpha, g.A, g.Lda, g.B, g.Ldb, g.Beta, g.C, g.Ldc)
	}
	args := make([]string, len(l.Args))
	for i, a := range l.Args {
		args[i] = a.String()
	}
	name := l.Kernel
	if op, ok := l.opName(); ok {
		name += "[" + op + "]"
	}
	return fmt.Sprintf("%s grid=%d block=%d (%s)", name, l.Grid.X, l.Block.X, strings.Join(args, ", "))
}

// opName names the op code of an elementwise, reduction or update launch.
func (l Launch) opName() (string, bool) {
	if len(l.Args) == 0 || l.Args[0].Type != ArgInt {
		return "", false
	}
	code := l.Args[0].Int
	var names []string
	switch KernelBase(l.Kernel) {
	case "unary", "unary_grad":
		names = unaryNames[:]
	case "binary":
		names = binaryNames[:]
	case "reduce":
		names = reduceNames[:]
	case "update":
		names = solverNames[:]
	default:
		return "", false
	}
	if code < 0 || code >= len(names) {
		return "", false
	}
	return names[code], true
}

// base strips the dtype suffix from a kernel name.
func KernelBase(kernel string) string {
	return strings.TrimSuffix(strings.TrimSuffix(kernel, "_f32"), "_f64")
}

// Plan is the lowering of one part: the buffers it needs and the launches
// of its forward and backward passes. It is computed without a device and
// executed by a device, real or the reference one.
type Plan struct {
	DType   graph.DType
	Buffers []Buffer
	// Forward computes the activations, outputs and the loss of one
	// micro-batch from its inputs and the parameters.
	Forward []Launch
	// Backward computes, from the activations of the same micro-batch
	// and the gradients handed in, the gradients of the part's inputs and
	// adds those of the parameters to their accumulators.
	Backward []Launch
	// BackwardFirst is Backward for accumulators that hold nothing yet:
	// each one's first contribution is written rather than added, so
	// that Step need not clear them (see firstWrites).
	BackwardFirst []Launch
	// Fold lists the weight-gradient products of BackwardFirst that a
	// plain SGD step can fold into itself, W ← W − η·scale·(product),
	// where the product is the weight's whole gradient and the part
	// trains one micro-batch per step; BackwardFold is BackwardFirst
	// without them (see folds).
	Fold         []Fold
	BackwardFold []Launch

	// Value is where the value of a node lives after Forward (inputs,
	// parameters, constants, activations; a reshape shares its input's).
	Value map[int64]int
	// Params, Accums list the buffers of the learnables, in graph order
	// (graph.Learnables()); States[i] those of parameter i's solver slots.
	Learn  []int64
	Params []int
	Accums []int
	States [][]int
	// Consts holds the values uploaded at Open, by buffer.
	Consts map[int]*tensor.Dense
	// GradIn is the buffer that receives the gradient of each output (and
	// of the loss, filled by the plan itself).
	GradIn map[int64]int
	// GradOut is the buffer that holds the gradient of each active input
	// after Backward; inputs absent here get zeros.
	GradOut map[int64]int
}

// Bytes is the memory the plan allocates for the given number of
// micro-batch indexes.
func (p *Plan) Bytes(microBatches int) int64 {
	var n int64
	for _, b := range p.Buffers {
		sz := int64(b.Elems) * int64(p.DType.Size())
		if b.Class.PerMicroBatch() {
			sz *= int64(microBatches)
		}
		n += sz
	}
	return n
}

// String lists the buffers and launches, one a line.
func (p *Plan) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "plan %v: %d buffers, %d forward and %d backward launches\n", p.DType, len(p.Buffers), len(p.Forward), len(p.Backward))
	for i, b := range p.Buffers {
		node := ""
		if b.Node >= 0 {
			node = fmt.Sprintf(" node %d", b.Node)
		}
		slot := ""
		if b.Slot != "" {
			slot = " " + b.Slot
		}
		fmt.Fprintf(&sb, "  b%d %v%s%s: %d elems\n", i, b.Class, node, slot, b.Elems)
	}
	sb.WriteString("forward:\n")
	for _, l := range p.Forward {
		fmt.Fprintf(&sb, "  %d: %v\n", l.Node, l)
	}
	sb.WriteString("backward:\n")
	for _, l := range p.Backward {
		fmt.Fprintf(&sb, "  %d: %v\n", l.Node, l)
	}
	return sb.String()
}

// accArgs gives, by kernel base name, the argument that is the buffer a
// launch writes whole and the argument that says whether it adds to it;
// the kernels missing here (scatter) write part of their output, or
// (fill) do not add.
var accArgs = map[string][2]int{
	"unary": {11, 2}, "binary": {16, 2}, "reduce": {16, 2}, "unary_grad": {6, 2}, "softmax_grad": {6, 3},
	"col2im": {16, 1}, "maxpool_grad": {16, 1}, "conv_filter_grad": {18, 15}, "conv_input_grad": {18, 15},
	"bias_relu_grad": {8, 5}, "bias_relu_pool_grad": {9, 6}, "bias_relu_rows_grad": {8, 3},
}

// firstWrites returns Backward rewritten for accumulators that hold
// nothing: the first launch that adds to a parameter's accumulator
// writes it instead (its add flag, or a gemm's beta, set to 0), and where
// that launch writes only part of it (a scatter), a fill clears the
// accumulator first.
func firstWrites(p *Plan) []Launch {
	accum := map[int]bool{}
	for _, b := range p.Accums {
		accum[b] = true
	}
	written := map[int]bool{}
	out := make([]Launch, 0, len(p.Backward))
	for _, l := range p.Backward {
		if g := l.Gemm; g != nil {
			if accum[g.C] && !written[g.C] {
				written[g.C] = true
				ng := *g
				ng.Beta = 0
				l.Gemm = &ng
			}
			out = append(out, l)
			continue
		}
		base := KernelBase(l.Kernel)
		if ai, ok := accArgs[base]; ok {
			b := l.Args[ai[0]]
			if b.Type == ArgPtr && b.Off == 0 && accum[b.Buf] && !written[b.Buf] {
				written[b.Buf] = true
				l.Args = slices.Clone(l.Args)
				l.Args[ai[1]].Int = 0
			}
			out = append(out, l)
			continue
		}
		for _, a := range l.Args {
			if a.Type == ArgPtr && accum[a.Buf] && !written[a.Buf] {
				// a partial or plain write into an accumulator: clear it
				// first, as Step used to
				written[a.Buf] = true
				fl := &lowerer{dt: p.DType}
				n := p.Buffers[a.Buf].Elems
				fl.emit(l.Node, "fill", n, ival(n), sval(0), ptr(a.Buf))
				out = append(out, fl.cur...)
			}
		}
		out = append(out, l)
	}
	return out
}

// Fold is a weight-gradient product of BackwardFirst that Step may run
// in place of the weight's update: Gemm writes parameter Param's whole
// accumulated gradient (beta 0), from operands that nothing in the rest
// of the backward pass overwrites.
type Fold struct {
	Param int
	Gemm  Launch
}

// folds finds the products of BackwardFirst that can be folded: a gemm
// whose C is an accumulator, the only launch that touches it, with alpha
// 1 and beta 0, whose operands are neither parameters nor written by a
// later launch. It returns them and BackwardFirst without them.
func folds(p *Plan) ([]Fold, []Launch) {
	param := map[int]int{}
	for i, b := range p.Accums {
		param[b] = i
	}
	isParam := map[int]bool{}
	for _, b := range p.Params {
		isParam[b] = true
	}
	touches := map[int]int{} // accumulator → launches that name it
	for _, l := range p.BackwardFirst {
		for _, b := range bufsOf(l) {
			if _, ok := param[b]; ok {
				touches[b]++
			}
		}
	}
	var fs []Fold
	var rest []Launch
	for i, l := range p.BackwardFirst {
		g := l.Gemm
		pi, isAcc := -1, false
		if g != nil {
			pi, isAcc = param[g.C]
		}
		if g == nil || !isAcc || touches[g.C] != 1 || g.Alpha != 1 || g.Beta != 0 || isParam[g.A] || isParam[g.B] ||
			writtenAfter(p.BackwardFirst[i+1:], g.A) || writtenAfter(p.BackwardFirst[i+1:], g.B) {
			rest = append(rest, l)
			continue
		}
		fs = append(fs, Fold{Param: pi, Gemm: l})
	}
	return fs, rest
}

// bufsOf lists the buffers a launch names.
func bufsOf(l Launch) []int {
	if g := l.Gemm; g != nil {
		return []int{g.A, g.B, g.C}
	}
	var bs []int
	for _, a := range l.Args {
		if a.Type == ArgPtr {
			bs = append(bs, a.Buf)
		}
	}
	return bs
}

// writtenAfter reports whether a launch of ls may write buffer b: a gemm
// writing C = b, or a kernel naming b (kernels read and write through the
// same pointers, so naming counts).
func writtenAfter(ls []Launch, b int) bool {
	for _, l := range ls {
		if g := l.Gemm; g != nil {
			if g.C == b {
				return true
			}
			continue
		}
		if slices.Contains(bufsOf(l), b) {
			return true
		}
	}
	return false
}

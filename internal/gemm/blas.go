package gemm

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Implementation is gonum's pure-Go BLAS with Sgemm and Dgemm replaced by
// this package's. It satisfies blas.Float32, blas.Float64, blas.Complex64
// and blas.Complex128, so it can be handed to gorgonia.Use, blas32.Use and
// blas64.Use.
type Implementation struct {
	gonum.Implementation
}

// Name names the implementation and its micro-kernel, as in
// "rookery gemm (AVX2+FMA)"; "rookery gemm (pure Go)" means gonum's gemm
// runs, there being no vector kernel for this CPU.
func (Implementation) Name() string { return "rookery gemm (" + KernelName() + ")" }

// Panic messages, the same as gonum's BLAS uses for the same mistakes.
const (
	badTranspose = "blas: illegal transpose"
	mLT0         = "blas: m < 0"
	nLT0         = "blas: n < 0"
	kLT0         = "blas: k < 0"
	badLdA       = "blas: bad leading dimension of A"
	badLdB       = "blas: bad leading dimension of B"
	badLdC       = "blas: bad leading dimension of C"
	shortA       = "blas: insufficient length of a"
	shortB       = "blas: insufficient length of b"
	shortC       = "blas: insufficient length of c"
)

// Sgemm performs one of the matrix-matrix operations
//
//	C = alpha * A * B + beta * C
//	C = alpha * Aᵀ * B + beta * C
//	C = alpha * A * Bᵀ + beta * C
//	C = alpha * Aᵀ * Bᵀ + beta * C
//
// where A is an m×k or k×m dense matrix, B is an n×k or k×n dense matrix, C
// is an m×n matrix, and alpha and beta are scalars. tA and tB specify
// whether A or B are transposed. It panics, as gonum's does, on invalid
// arguments.
func (impl Implementation) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !simd {
		impl.Implementation.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	p := args[float32]{m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	p.aTrans, p.bTrans = check(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	gemm(&kern32, pools32, &p)
}

// Dgemm performs one of the matrix-matrix operations
//
//	C = alpha * A * B + beta * C
//	C = alpha * Aᵀ * B + beta * C
//	C = alpha * A * Bᵀ + beta * C
//	C = alpha * Aᵀ * Bᵀ + beta * C
//
// where A is an m×k or k×m dense matrix, B is an n×k or k×n dense matrix, C
// is an m×n matrix, and alpha and beta are scalars. tA and tB specify
// whether A or B are transposed. It panics, as gonum's does, on invalid
// arguments.
func (impl Implementation) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if !simd {
		impl.Implementation.Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	p := args[float64]{m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	p.aTrans, p.bTrans = check(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	gemm(&kern64, pools64, &p)
}

// check validates gemm's arguments in gonum's order, panicking with
// gonum's messages, and reports whether A and B are transposed.
func check(tA, tB blas.Transpose, m, n, k, la, lda, lb, ldb, lc, ldc int) (aTrans, bTrans bool) {
	switch tA {
	default:
		panic(badTranspose)
	case blas.NoTrans, blas.Trans, blas.ConjTrans:
	}
	switch tB {
	default:
		panic(badTranspose)
	case blas.NoTrans, blas.Trans, blas.ConjTrans:
	}
	if m < 0 {
		panic(mLT0)
	}
	if n < 0 {
		panic(nLT0)
	}
	if k < 0 {
		panic(kLT0)
	}
	aTrans = tA == blas.Trans || tA == blas.ConjTrans
	if aTrans {
		if lda < max(1, m) {
			panic(badLdA)
		}
	} else if lda < max(1, k) {
		panic(badLdA)
	}
	bTrans = tB == blas.Trans || tB == blas.ConjTrans
	if bTrans {
		if ldb < max(1, k) {
			panic(badLdB)
		}
	} else if ldb < max(1, n) {
		panic(badLdB)
	}
	if ldc < max(1, n) {
		panic(badLdC)
	}
	if m == 0 || n == 0 {
		return aTrans, bTrans
	}
	if aTrans {
		if la < (k-1)*lda+m {
			panic(shortA)
		}
	} else if la < (m-1)*lda+k {
		panic(shortA)
	}
	if bTrans {
		if lb < (n-1)*ldb+k {
			panic(shortB)
		}
	} else if lb < (k-1)*ldb+n {
		panic(shortB)
	}
	if lc < (m-1)*ldc+n {
		panic(shortC)
	}
	return aTrans, bTrans
}

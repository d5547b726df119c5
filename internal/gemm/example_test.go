package gemm_test

import (
	"fmt"

	"gonum.org/v1/gonum/blas"

	"github.com/rookery-ml/rookery/internal/gemm"
)

// C = A·Bᵀ with A 2×3 and B 2×3, row-major.
func ExampleImplementation_Dgemm() {
	a := []float64{
		1, 2, 3,
		4, 5, 6,
	}
	b := []float64{
		1, 0, 1,
		0, 1, 0,
	}
	c := make([]float64, 4)
	gemm.Implementation{}.Dgemm(blas.NoTrans, blas.Trans, 2, 2, 3, 1, a, 3, b, 3, 0, c, 2)
	fmt.Println(c)
	// Output: [4 2 10 5]
}

package kernels_test

import (
	"fmt"

	"github.com/rookery-ml/rookery/exec/kernels"
	"github.com/rookery-ml/rookery/internal/gemm"
)

// The two smallest products of a query (a row) with three points (the
// columns): q·p = [2 -2 1], so the values -2 and 1, then their columns.
func ExampleMatMulTopK() {
	q := []float64{1, -1}            // 1×2
	p := []float64{3, 0, 1, 1, 2, 0} // 2×3: points (3,1), (0,2), (1,0)
	out := make([]float64, 2*2)
	kernels.MatMulTopK(gemm.Implementation{}, q, p, 1, 2, 3, 2, out)
	fmt.Println(out)
	// Output: [-2 1 1 2]
}

func ExampleTopK() {
	x := []float64{
		4, 1, 3, 1,
		0, -1, 2, -5,
	}
	out := make([]float64, 2*2)
	kernels.TopK(x, 2, 4, 2, true, out)
	fmt.Println(out)
	// Output: [1 3 3 1]
}

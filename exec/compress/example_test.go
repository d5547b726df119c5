package compress_test

import (
	"fmt"

	"github.com/rookery-ml/rookery/exec/compress"
)

func Example() {
	delta := []float64{0.5, -0.25, 1.0 / 3, 0.001}
	for _, c := range []compress.Codec{compress.Float64, compress.Float16, compress.Int8} {
		p, err := compress.Encode(c, delta)
		if err != nil {
			panic(err)
		}
		got, err := compress.Decode(p, len(delta))
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-7v %2d bytes %.6f\n", c, len(p), got)
	}
	// Output:
	// float64 40 bytes [0.500000 -0.250000 0.333333 0.001000]
	// float16 16 bytes [0.500000 -0.250000 0.333252 0.001000]
	// int8    16 bytes [0.500000 -0.251969 0.334646 0.000000]
}

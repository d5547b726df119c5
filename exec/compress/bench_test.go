package compress_test

import (
	"math/rand/v2"
	"testing"

	"github.com/rookery-ml/rookery/exec/compress"
)

const benchN = 1 << 20

func benchDelta() []float64 {
	rng := rand.New(rand.NewPCG(1, 1))
	v := make([]float64, benchN)
	for i := range v {
		v[i] = rng.NormFloat64() * 1e-3
	}
	return v
}

// The benchmarks count bytes of float64 values (8 per value), so MB/s
// compares the codecs on the same delta.

func benchEncode(b *testing.B, c compress.Codec) {
	v := benchDelta()
	b.SetBytes(8 * benchN)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := compress.Encode(c, v); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, c compress.Codec) {
	p, err := compress.Encode(c, benchDelta())
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float64, benchN)
	b.SetBytes(8 * benchN)
	b.ReportAllocs()
	for b.Loop() {
		if err := compress.DecodeInto(p, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeInt8(b *testing.B)    { benchEncode(b, compress.Int8) }
func BenchmarkDecodeInt8(b *testing.B)    { benchDecode(b, compress.Int8) }
func BenchmarkEncodeFloat16(b *testing.B) { benchEncode(b, compress.Float16) }
func BenchmarkDecodeFloat16(b *testing.B) { benchDecode(b, compress.Float16) }

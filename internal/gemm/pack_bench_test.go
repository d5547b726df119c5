package gemm

import "testing"

// BenchmarkPack measures packing the 64×784 batch of the MLP's first
// layer (A, not transposed) and the 784×256 weights transposed (B).
func BenchmarkPack(b *testing.B) {
	const m, k, n = 64, 784, 256
	a := make([]float32, m*k)
	bt := make([]float32, n*k)
	kn := kern32
	dst := make([]float32, roundUp(max(m, n), 32)*k)
	b.Run("A", func(b *testing.B) {
		for b.Loop() {
			packA(false, a, k, 0, 0, m, k, kn.mr, dst)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(m*k), "ns/elem")
	})
	b.Run("Bt", func(b *testing.B) {
		for b.Loop() {
			packB(true, bt, k, 0, 0, k, n, kn.nr, dst)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n*k), "ns/elem")
	})
}

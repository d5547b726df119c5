//go:build !purego

package gemm

// axpbyS sets dst[j] = a·in[j] + w·dst[j] for j < n (axpby_amd64.s);
// n is a positive multiple of 32.
//
//go:noescape
func axpbyS(n int, dst, in *float32, a, w float32)

// axpbyD is axpbyS for float64; n is a positive multiple of 16.
//
//go:noescape
func axpbyD(n int, dst, in *float64, a, w float64)

// axpbyOK reports whether this CPU runs axpbyS and axpbyD.
var axpbyOK = avx2

// momentumS is Momentum32's loop over n elements (momentum_amd64.s), n a
// positive multiple of 16; tiny is the bits of a float32 >= 0, or
// 0xffffffff to keep every velocity.
//
//go:noescape
func momentumS(n int, p, grad, vel *float32, lr, mu, scale float32, tiny uint32)

// adamS is Adam32's loop over n elements (adam_amd64.s), n a positive
// multiple of 8.
//
//go:noescape
func adamS(n int, p, grad, m, v *float32, k *adamK)

// momentumWDS is MomentumWD32's loop over n elements (momentum_amd64.s),
// n a positive multiple of 16.
//
//go:noescape
func momentumWDS(n int, p, grad, vel *float32, lr, mu, scale, wd float32)

// nesterovS is Nesterov32's loop over n elements (momentum_amd64.s), n a
// positive multiple of 8.
//
//go:noescape
func nesterovS(n int, p, grad, vel *float32, lr, mu, scale float32)

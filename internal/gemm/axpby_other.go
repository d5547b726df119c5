//go:build !amd64 || purego

package gemm

// axpbyOK reports whether axpbyS and axpbyD run: never here.
var axpbyOK = false

func axpbyS(n int, dst, in *float32, a, w float32) {
	panic("gemm: no vector axpby on this architecture")
}

func axpbyD(n int, dst, in *float64, a, w float64) {
	panic("gemm: no vector axpby on this architecture")
}

func momentumS(n int, p, grad, vel *float32, lr, mu, scale float32, tiny uint32) {
	panic("gemm: no vector momentum on this architecture")
}

func adamS(n int, p, grad, m, v *float32, k *adamK) {
	panic("gemm: no vector Adam on this architecture")
}

func momentumWDS(n int, p, grad, vel *float32, lr, mu, scale, wd float32) {
	panic("gemm: no vector momentum on this architecture")
}

func nesterovS(n int, p, grad, vel *float32, lr, mu, scale float32) {
	panic("gemm: no vector Nesterov on this architecture")
}

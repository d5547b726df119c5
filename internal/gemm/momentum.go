package gemm

import "math"

// Momentum32 applies one step of SGD with momentum to p: for every i,
// v = mu·s[i] + scale·g[i], set to 0 where |v| <= tiny (never when tiny
// is negative), then s[i] = v and p[i] -= lr·v. len(g) and len(s) are at
// least len(p). Each product and sum is rounded in float32 as Go rounds
// the expression (no fused multiply-add), so every machine gets the same
// bits, with or without the vector kernel.
func Momentum32(p, g, s []float32, lr, mu, scale, tiny float32) {
	g, s = g[:len(p)], s[:len(p)]
	flush := tiny >= 0
	t := math.Float32bits(tiny) &^ (1 << 31) // −0 as +0
	i := 0
	if axpbyOK {
		if i = len(p) &^ 15; i > 0 {
			tb := t
			if !flush {
				// As an int32, -1: every magnitude's bits are above it.
				tb = math.MaxUint32
			}
			momentumS(i, &p[0], &g[0], &s[0], lr, mu, scale, tb)
		}
	}
	for ; i < len(p); i++ {
		// The conversions round each product (no fused multiply-add).
		v := float32(mu*s[i]) + float32(g[i]*scale)
		if flush && math.Float32bits(v)&0x7fffffff <= t {
			v = 0
		}
		s[i] = v
		p[i] -= float32(lr * v)
	}
}

// MomentumWD32 is one step of SGD with momentum and weight decay wd on
// float32: for every i, v = mu·s[i] + (scale·g[i] + wd·p[i]), s[i] = v,
// p[i] -= lr·v (no velocity is flushed). len(g) and len(s) are at least
// len(p). Rounded as Go rounds the expression, with or without the
// vector kernel.
func MomentumWD32(p, g, s []float32, lr, mu, scale, wd float32) {
	g, s = g[:len(p)], s[:len(p)]
	i := 0
	if axpbyOK {
		if i = len(p) &^ 15; i > 0 {
			momentumWDS(i, &p[0], &g[0], &s[0], lr, mu, scale, wd)
		}
	}
	for ; i < len(p); i++ {
		// The conversions round each product (no fused multiply-add).
		gi := float32(g[i]*scale) + float32(wd*p[i])
		v := float32(mu*s[i]) + gi
		s[i] = v
		p[i] -= float32(lr * v)
	}
}

// Nesterov32 is one step of SGD with Nesterov momentum on float32: for
// every i, gi = scale·g[i], v = mu·s[i] + gi, s[i] = v, p[i] -=
// lr·(gi + mu·v). len(g) and len(s) are at least len(p). Rounded as Go
// rounds the expression, with or without the vector kernel.
func Nesterov32(p, g, s []float32, lr, mu, scale float32) {
	g, s = g[:len(p)], s[:len(p)]
	i := 0
	if axpbyOK {
		if i = len(p) &^ 7; i > 0 {
			nesterovS(i, &p[0], &g[0], &s[0], lr, mu, scale)
		}
	}
	for ; i < len(p); i++ {
		// The conversions round each product (no fused multiply-add).
		gi := float32(g[i] * scale)
		v := float32(mu*s[i]) + gi
		s[i] = v
		p[i] -= float32(lr * (gi + float32(mu*v)))
	}
}

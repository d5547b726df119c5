package gemm

import "math"

// AdamConsts are the per-step constants of an Adam update (see Adam32).
type AdamConsts struct {
	Scale, Decay, B1, B2, C1, C2, LR, Eps float32
}

// adamK is AdamConsts as the vector kernel reads them: 1−B1 and 1−B2
// rounded in float32, as the Go expression rounds them.
type adamK struct {
	scale, decay, b1, om1, b2, om2, c1, c2, lr, eps float32
}

// Adam32 applies one Adam step to p with first moments m and second
// moments v: for every i, with gi = Scale·g[i],
//
//	p[i] *= Decay
//	m[i] = B1·m[i] + (1−B1)·gi
//	v[i] = B2·v[i] + (1−B2)·gi·gi
//	p[i] -= LR·(m[i]/C1) / (√(v[i]/C2) + Eps)
//
// len(g), len(m) and len(v) are at least len(p). Each operation is
// rounded in float32 as Go rounds the expression (the square root
// correctly rounded, no fused multiply-add), so every machine gets the
// same bits, with or without the vector kernel.
func Adam32(p, g, m, v []float32, c AdamConsts) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	k := adamK{scale: c.Scale, decay: c.Decay, b1: c.B1, om1: 1 - c.B1, b2: c.B2, om2: 1 - c.B2,
		c1: c.C1, c2: c.C2, lr: c.LR, eps: c.Eps}
	i := 0
	if axpbyOK {
		if i = len(p) &^ 7; i > 0 {
			adamS(i, &p[0], &g[0], &m[0], &v[0], &k)
		}
	}
	for ; i < len(p); i++ {
		// The conversions round each product (no fused multiply-add,
		// which Go may form across statements).
		gi := float32(g[i] * k.scale)
		p[i] = float32(p[i] * k.decay)
		m[i] = float32(k.b1*m[i]) + float32(k.om1*gi)
		v[i] = float32(k.b2*v[i]) + float32(float32(k.om2*gi)*gi)
		mh := m[i] / k.c1
		vh := v[i] / k.c2
		p[i] -= float32(k.lr*mh) / (float32(math.Sqrt(float64(vh))) + k.eps)
	}
}

package ravml

import "math"

// lbfgs minimises f from x0 by limited-memory BFGS with m correction
// pairs and a backtracking line search on the Armijo condition. f returns
// the value at x and writes the gradient into g. It stops when the largest
// gradient component is at most gtol, when the value stops changing, or
// after maxIter iterations, and returns the point and the iterations run.
func lbfgs(f func(x, g []float64) float64, x0 []float64, maxIter int, gtol float64, m int) ([]float64, int) {
	n := len(x0)
	x := append([]float64(nil), x0...)
	g := make([]float64, n)
	fx := f(x, g)
	s := make([][]float64, 0, m)
	y := make([][]float64, 0, m)
	rho := make([]float64, 0, m)
	alpha := make([]float64, m)
	dir := make([]float64, n)
	xn := make([]float64, n)
	gn := make([]float64, n)
	it := 0
	for ; it < maxIter; it++ {
		if maxAbs(g) <= gtol {
			break
		}
		// two-loop recursion: dir = −H·g
		copy(dir, g)
		for i := len(s) - 1; i >= 0; i-- {
			alpha[i] = rho[i] * dot(s[i], dir)
			axpy(-alpha[i], y[i], dir)
		}
		if k := len(s) - 1; k >= 0 {
			scale(dot(s[k], y[k])/dot(y[k], y[k]), dir)
		} else {
			scale(1/math.Max(1, norm(g)), dir)
		}
		for i := range s {
			b := rho[i] * dot(y[i], dir)
			axpy(alpha[i]-b, s[i], dir)
		}
		scale(-1, dir)
		slope := dot(g, dir)
		if slope >= 0 { // not a descent direction: restart along −g
			s, y, rho = s[:0], y[:0], rho[:0]
			copy(dir, g)
			scale(-1/math.Max(1, norm(g)), dir)
			slope = dot(g, dir)
		}
		step := 1.0
		var fn float64
		ok := false
		for ls := 0; ls < 40; ls++ {
			for i := range xn {
				xn[i] = x[i] + step*dir[i]
			}
			fn = f(xn, gn)
			if fn <= fx+1e-4*step*slope {
				ok = true
				break
			}
			step /= 2
		}
		if !ok {
			break
		}
		sv, yv := make([]float64, n), make([]float64, n)
		for i := range sv {
			sv[i] = xn[i] - x[i]
			yv[i] = gn[i] - g[i]
		}
		if sy := dot(sv, yv); sy > 1e-12*dot(yv, yv) {
			if len(s) == m {
				s, y, rho = s[1:], y[1:], rho[1:]
			}
			s, y, rho = append(s, sv), append(y, yv), append(rho, 1/sy)
		}
		done := math.Abs(fx-fn) <= 1e-15*math.Max(1, math.Abs(fx))
		copy(x, xn)
		copy(g, gn)
		fx = fn
		if done {
			it++
			break
		}
	}
	return x, it
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

func axpy(a float64, x, y []float64) {
	for i, v := range x {
		y[i] += a * v
	}
}

func scale(a float64, x []float64) {
	for i := range x {
		x[i] *= a
	}
}

func norm(x []float64) float64 { return math.Sqrt(dot(x, x)) }

func maxAbs(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

package gemm

// AddScaled sets dst[j] = a·in[j] + w·dst[j] for every j < len(dst);
// len(in) >= len(dst). Each product and the sum are rounded in T, as Go
// rounds the expression (no fused multiply-add), so every machine gets
// the same bits, with or without the vector kernel.
func AddScaled[T float](dst, in []T, a, w T) {
	in = in[:len(dst)]
	j := 0
	if axpbyOK {
		switch d := any(dst).(type) {
		case []float32:
			if j = len(d) &^ 31; j > 0 {
				axpbyS(j, &d[0], &any(in).([]float32)[0], float32(a), float32(w))
			}
		case []float64:
			if j = len(d) &^ 15; j > 0 {
				axpbyD(j, &d[0], &any(in).([]float64)[0], float64(a), float64(w))
			}
		}
	}
	for ; j+4 <= len(dst); j += 4 {
		d, x := dst[j:j+4:j+4], in[j:j+4:j+4]
		// The conversions round each product (no fused multiply-add).
		d[0] = T(a*x[0]) + T(w*d[0])
		d[1] = T(a*x[1]) + T(w*d[1])
		d[2] = T(a*x[2]) + T(w*d[2])
		d[3] = T(a*x[3]) + T(w*d[3])
	}
	for ; j < len(dst); j++ {
		dst[j] = T(a*in[j]) + T(w*dst[j])
	}
}

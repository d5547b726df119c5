package compress

import "math"

// toHalf returns the IEEE 754 binary16 bits nearest to x (round to
// nearest, ties to even), saturating at ±65504. x is finite.
func toHalf(x float64) uint16 {
	b := math.Float64bits(x)
	sign := uint16(b>>48) & 0x8000
	a := math.Abs(x)
	if a >= maxHalf {
		return sign | 0x7bff
	}
	exp := int(b>>52) & 0x7ff
	if exp == 0 {
		// Zero or a float64 subnormal: far below half of float16's
		// smallest subnormal, 2⁻²⁴.
		return sign
	}
	e := exp - 1023             // a = mant × 2^(e-52)
	mant := b&(1<<52-1) | 1<<52 // 53 significant bits
	shift := 42                 // a normal float16 keeps 11 of them
	if e < -14 {
		shift = 28 - e // subnormal: units of 2⁻²⁴
	}
	if shift > 63 {
		return sign // below 2⁻²⁵ (a quarter of the smallest subnormal)
	}
	q := mant >> shift
	rem := mant & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	if e < -14 {
		// q ≤ 1024 units of 2⁻²⁴; 1024 is the smallest normal's bits.
		return sign | uint16(q)
	}
	// q in [1024, 2048]: the implicit bit adds one to the exponent
	// field, and a carry to 2048 moves into it as the next exponent.
	return sign | uint16(e+14)<<10 + uint16(q)
}

// fromHalf returns the value of the finite binary16 bits h.
func fromHalf(h uint16) float64 {
	sign := uint64(h&0x8000) << 48
	exp := uint64(h>>10) & 0x1f
	frac := uint64(h & 0x3ff)
	if exp == 0 {
		// Subnormal or zero: frac units of 2⁻²⁴, exact.
		return math.Float64frombits(sign | math.Float64bits(float64(frac)*0x1p-24))
	}
	return math.Float64frombits(sign | (exp+1023-15)<<52 | frac<<42)
}

package compress_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/rookery-ml/rookery/exec/compress"
)

var codecs = []compress.Codec{compress.Float64, compress.Float32, compress.Float16, compress.Int8}

func TestCodecString(t *testing.T) {
	for _, tc := range []struct {
		c    compress.Codec
		want string
	}{
		{compress.Float64, "float64"},
		{compress.Float32, "float32"},
		{compress.Float16, "float16"},
		{compress.Int8, "int8"},
		{0, "codec(0)"},
		{9, "codec(9)"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("Codec(%d).String() = %q, want %q", uint8(tc.c), got, tc.want)
		}
	}
}

func TestParseCodec(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want compress.Codec
	}{
		{"float64", compress.Float64}, {"f64", compress.Float64},
		{"float32", compress.Float32}, {"f32", compress.Float32},
		{"float16", compress.Float16}, {"f16", compress.Float16},
		{"int8", compress.Int8}, {"i8", compress.Int8}, {"INT8", compress.Int8},
	} {
		got, err := compress.ParseCodec(tc.s)
		if err != nil || got != tc.want {
			t.Errorf("ParseCodec(%q) = %v, %v, want %v", tc.s, got, err, tc.want)
		}
	}
	for _, c := range codecs {
		if got, err := compress.ParseCodec(c.String()); err != nil || got != c {
			t.Errorf("ParseCodec(%v.String()) = %v, %v", c, got, err)
		}
	}
	for _, s := range []string{"", "bf16", "int4", "float", "codec(1)"} {
		_, err := compress.ParseCodec(s)
		if !errors.Is(err, compress.ErrUnknownCodec) {
			t.Errorf("ParseCodec(%q) error %v, want ErrUnknownCodec", s, err)
			continue
		}
		msg := err.Error()
		for _, part := range []string{`"` + s + `"`, "float64", "float32", "float16", "int8"} {
			if !strings.Contains(msg, part) {
				t.Errorf("ParseCodec(%q) error %q does not name %s", s, msg, part)
			}
		}
	}
}

func TestSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range codecs {
		for _, n := range []int{0, 1, 2, 255, 256, 257, 511, 512, 513, 1000} {
			v := make([]float64, n)
			for i := range v {
				v[i] = rng.NormFloat64()
			}
			p, err := compress.Encode(c, v)
			if err != nil {
				t.Fatalf("Encode(%v, %d values): %v", c, n, err)
			}
			if got := compress.Size(c, n); got != len(p) {
				t.Errorf("Size(%v, %d) = %d, Encode gave %d bytes", c, n, got, len(p))
			}
		}
	}
	for _, tc := range []struct {
		c    compress.Codec
		n    int
		want int
	}{
		{compress.Float64, 10, 88},
		{compress.Float32, 10, 48},
		{compress.Float16, 10, 28},
		{compress.Int8, 10, 22},
		{compress.Int8, 256, 268},
		{compress.Int8, 257, 273},
		{compress.Int8, 1 << 20, 8 + 1<<20 + 4<<12},
		{0, 10, -1},
		{5, 10, -1},
		{compress.Float64, -1, -1},
	} {
		if got := compress.Size(tc.c, tc.n); got != tc.want {
			t.Errorf("Size(%v, %d) = %d, want %d", tc.c, tc.n, got, tc.want)
		}
	}
}

func TestHeader(t *testing.T) {
	p, err := compress.Encode(compress.Float16, []float64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{'R', 'D', 1, 3, 3, 0, 0, 0, 0x00, 0x3c, 0x00, 0x40, 0x00, 0x42}
	if !bytes.Equal(p, want) {
		t.Errorf("Encode(Float16, [1 2 3]) = % x, want % x", p, want)
	}
}

// roundTrip encodes v with c and decodes it with Decode and DecodeInto,
// checking that both agree.
func roundTrip(t *testing.T, c compress.Codec, v []float64) []float64 {
	t.Helper()
	p, err := compress.Encode(c, v)
	if err != nil {
		t.Fatalf("Encode(%v): %v", c, err)
	}
	got, err := compress.Decode(p, len(v))
	if err != nil {
		t.Fatalf("Decode(Encode(%v)): %v", c, err)
	}
	into := make([]float64, len(v))
	if err := compress.DecodeInto(p, into); err != nil {
		t.Fatalf("DecodeInto(Encode(%v)): %v", c, err)
	}
	for i := range got {
		if math.Float64bits(got[i]) != math.Float64bits(into[i]) {
			t.Fatalf("%v value %d: Decode gave %v, DecodeInto %v", c, i, got[i], into[i])
		}
	}
	return got
}

func sample(rng *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(13)-8))
	}
	return v
}

func TestRoundTripFloat64(t *testing.T) {
	v := append(sample(rand.New(rand.NewPCG(3, 4)), 1000),
		0, math.Copysign(0, -1), math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 1e-310, math.Pi)
	got := roundTrip(t, compress.Float64, v)
	for i := range v {
		if math.Float64bits(got[i]) != math.Float64bits(v[i]) {
			t.Errorf("value %d: got %v, want %v", i, got[i], v[i])
		}
	}
}

func TestRoundTripFloat32(t *testing.T) {
	v := append(sample(rand.New(rand.NewPCG(5, 6)), 1000),
		0, math.Copysign(0, -1), 1e-40, -1e-46, math.Pi, math.MaxFloat32, -math.MaxFloat32)
	got := roundTrip(t, compress.Float32, v)
	for i := range v {
		if want := float64(float32(v[i])); math.Float64bits(got[i]) != math.Float64bits(want) {
			t.Errorf("value %d (%v): got %v, want %v", i, v[i], got[i], want)
		}
	}
	// Beyond float32's range: saturate, never inf.
	got = roundTrip(t, compress.Float32, []float64{1e39, -1e300, math.MaxFloat64})
	for i, want := range []float64{math.MaxFloat32, -math.MaxFloat32, math.MaxFloat32} {
		if got[i] != want {
			t.Errorf("saturated value %d: got %v, want %v", i, got[i], want)
		}
	}
}

func TestFloat16Table(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{
		{0, 0},
		{1, 1},
		{-2, -2},
		{0.5, 0.5},
		{1.0 / 3, 0.333251953125},
		{-1.0 / 3, -0.333251953125},
		{0.1, 0.0999755859375},
		{math.Pi, 3.140625},
		{65504, 65504},
		{65519.99, 65504},
		{65520, 65504}, // would round to inf: saturates
		{1e9, 65504},
		{-1e300, -65504},
		{math.MaxFloat64, 65504},
		{5.960464477539063e-08, 5.960464477539063e-08}, // 2⁻²⁴, smallest subnormal
		{5.96e-8, 5.960464477539063e-08},
		{6.097555160522461e-05, 6.097555160522461e-05}, // largest subnormal
		{6.103515625e-05, 6.103515625e-05},             // smallest normal
		{0x1p-25, 0},                                   // tie between 0 and 2⁻²⁴: even is 0
		{0x1p-25 * 1.0000001, 0x1p-24},                 // just above the tie
		{0x3p-25, 0x2p-24},                             // tie between 1 and 2 units: 2
		{0x5p-25, 0x2p-24},                             // tie between 2 and 3 units: 2
		{0x1p-26, 0},                                   // below the tie
		{1e-300, 0},                                    // far below
		{5e-324, 0},                                    // float64 subnormal
		{2049, 2048},                                   // tie (ulp 2): even mantissa
		{2051, 2052},                                   // tie: even is up
		{1 + 0x1p-11, 1},                               // tie at 1: down to even
		{1 + 0x3p-11, 1 + 0x1p-9},                      // tie: up to even
		{1 + 0x1p-11 + 0x1p-30, 1 + 0x1p-10},           // just above the tie
		{2047.5, 2048},                                 // carry into the exponent
		{0x3ffp-24 + 0x1p-25, 0x1p-14},                 // tie at the largest subnormal: up to the smallest normal
	} {
		got := roundTrip(t, compress.Float16, []float64{tc.in})[0]
		if got != tc.want {
			t.Errorf("float16(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	neg := roundTrip(t, compress.Float16, []float64{math.Copysign(0, -1), -1e-30})
	for i, x := range neg {
		if x != 0 || !math.Signbit(x) {
			t.Errorf("value %d: got %v, want -0", i, x)
		}
	}
}

// halves returns the values of every finite non-negative binary16, in
// increasing order, with their bits.
func halves(t *testing.T) ([]float64, []uint16) {
	t.Helper()
	var bits []uint16
	for h := 0; h < 0x7c00; h++ {
		bits = append(bits, uint16(h))
	}
	p := make([]byte, 8+2*len(bits))
	copy(p, []byte{'R', 'D', 1, byte(compress.Float16)})
	binary.LittleEndian.PutUint32(p[4:], uint32(len(bits)))
	for i, h := range bits {
		binary.LittleEndian.PutUint16(p[8+2*i:], h)
	}
	vals, err := compress.Decode(p, len(bits))
	if err != nil {
		t.Fatal(err)
	}
	return vals, bits
}

func TestFloat16Exhaustive(t *testing.T) {
	vals, bits := halves(t)
	for i := 1; i < len(vals); i++ {
		if !(vals[i] > vals[i-1]) {
			t.Fatalf("float16 %#04x = %v is not above %#04x = %v", bits[i], vals[i], bits[i-1], vals[i-1])
		}
	}
	if vals[1] != 0x1p-24 || vals[len(vals)-1] != 65504 {
		t.Fatalf("smallest subnormal %v, largest %v", vals[1], vals[len(vals)-1])
	}
	// Every finite value re-encodes to its bits, with either sign.
	var in []float64
	var want []uint16
	for i, x := range vals {
		in = append(in, x, -x)
		want = append(want, bits[i], bits[i]|0x8000)
	}
	// Every midpoint rounds to the even neighbour, and just off it to
	// the nearer one.
	for i := 1; i < len(vals); i++ {
		lo, hi := vals[i-1], vals[i]
		mid := (lo + hi) / 2 // exact: both have few bits
		even := bits[i-1]
		if even&1 == 1 {
			even = bits[i]
		}
		in = append(in, mid, math.Nextafter(mid, 0), math.Nextafter(mid, 1e6))
		want = append(want, even, bits[i-1], bits[i])
	}
	p, err := compress.Encode(compress.Float16, in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if got := binary.LittleEndian.Uint16(p[8+2*i:]); got != want[i] {
			t.Errorf("float16(%v) = %#04x, want %#04x", in[i], got, want[i])
		}
	}
}

// TestFloat16Nearest compares Encode with a search of the table of every
// float16 for random values across float16's range.
func TestFloat16Nearest(t *testing.T) {
	vals, _ := halves(t)
	rng := rand.New(rand.NewPCG(7, 8))
	v := make([]float64, 20000)
	for i := range v {
		v[i] = math.Ldexp(rng.Float64(), rng.IntN(45)-28)
		if rng.IntN(2) == 0 {
			v[i] = -v[i]
		}
	}
	got := roundTrip(t, compress.Float16, v)
	for i, x := range v {
		a := math.Abs(x)
		j := sort.SearchFloat64s(vals, a) // vals[j-1] < a <= vals[j]
		var want float64
		switch {
		case j == len(vals):
			want = 65504
		case vals[j] == a || j == 0:
			want = vals[j]
		default:
			lo, hi := vals[j-1], vals[j]
			switch d := (a - lo) - (hi - a); {
			case d < 0:
				want = lo
			case d > 0:
				want = hi
			case math.Float64bits(lo)>>42&1 == 0 && lo >= 0x1p-14 || lo < 0x1p-14 && int(lo*0x1p24)%2 == 0:
				want = lo
			default:
				want = hi
			}
		}
		want = math.Copysign(want, x)
		if got[i] != want {
			t.Errorf("float16(%v) = %v, want %v", x, got[i], want)
		}
	}
}

// blockScale is the scale Encode stores for an Int8 block.
func blockScale(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return float64(float32(m / 127))
}

func TestRoundTripInt8(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 7, 256, 257, 1000, 3 * 256} {
		v := sample(rng, n)
		// One block of zeros and one of tiny values among normal ones.
		if n >= 3*256 {
			clear(v[256:512])
		}
		got := roundTrip(t, compress.Int8, v)
		for b := 0; b < n; b += compress.BlockSize {
			e := min(n, b+compress.BlockSize)
			scale := blockScale(v[b:e])
			for i := b; i < e; i++ {
				if d := math.Abs(got[i] - v[i]); d > scale/2 {
					t.Errorf("n=%d value %d: got %v, want %v within %v", n, i, got[i], v[i], scale/2)
				}
				// Decoded values are scale × an integer in [-127, 127].
				if q := got[i] / scale; scale != 0 && (q != math.Round(q) || math.Abs(q) > 127) {
					t.Errorf("n=%d value %d: %v is %v × scale %v", n, i, got[i], q, scale)
				}
			}
		}
	}
}

func TestInt8Layout(t *testing.T) {
	v := []float64{1.27, -0.635, 0.01, 0}
	p, err := compress.Encode(compress.Int8, v)
	if err != nil {
		t.Fatal(err)
	}
	scale := float32(1.27 / 127)
	want := []byte{'R', 'D', 1, 4, 4, 0, 0, 0}
	want = binary.LittleEndian.AppendUint32(want, math.Float32bits(scale))
	want = append(want, 127, byte(0x100-64), 1, 0) // -0.635/0.01 = -63.5 rounds away from zero
	if !bytes.Equal(p, want) {
		t.Errorf("Encode(Int8, %v) = % x, want % x", v, p, want)
	}
}

func TestInt8Extremes(t *testing.T) {
	// All zeros: scale 0, values zero.
	p, err := compress.Encode(compress.Int8, make([]float64, 300))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p[8:], make([]byte, len(p)-8)) {
		t.Errorf("zeros encode to % x", p[8:])
	}
	// Below 127×2⁻¹²⁶ a block is zeros; far beyond float32 the scale
	// saturates.
	in := []float64{1e-37, -1e-38, 1e-300}
	got := roundTrip(t, compress.Int8, in)
	for i, x := range got {
		if x != 0 {
			t.Errorf("tiny value %d (%v) decodes to %v, want 0", i, in[i], x)
		}
	}
	big := []float64{1e300, -1e300, 1e41, 1}
	got = roundTrip(t, compress.Int8, big)
	top := float64(math.MaxFloat32) * 127
	for i, want := range []float64{top, -top, top, 0} {
		if got[i] != want {
			t.Errorf("huge value %d (%v) decodes to %v, want %v", i, big[i], got[i], want)
		}
	}
	// Just above the flush threshold the scale is normal.
	small := []float64{0x1p-126 * 127, 0x1p-127 * 127}
	got = roundTrip(t, compress.Int8, small)
	if got[0] != small[0] {
		t.Errorf("smallest kept block: got %v, want %v", got, small)
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, c := range codecs {
		for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			v := []float64{1, 2, bad, 4}
			_, err := compress.Encode(c, v)
			if !errors.Is(err, compress.ErrInvalid) {
				t.Errorf("Encode(%v, %v): error %v, want ErrInvalid", c, v, err)
			} else if !strings.Contains(err.Error(), "value 2 ") {
				t.Errorf("Encode(%v, %v): error %q does not name index 2", c, v, err)
			}
		}
	}
	for _, c := range []compress.Codec{0, 5, 255} {
		_, err := compress.Encode(c, []float64{1})
		if !errors.Is(err, compress.ErrInvalid) || !errors.Is(err, compress.ErrUnknownCodec) {
			t.Errorf("Encode(%v): error %v, want ErrInvalid and ErrUnknownCodec", c, err)
		}
	}
}

// valid returns an encoding of n values with codec c.
func valid(t *testing.T, c compress.Codec, n int) []byte {
	t.Helper()
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(i%17) - 8
	}
	p, err := compress.Encode(c, v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func put32(p []byte, off int, x uint32) []byte {
	binary.LittleEndian.PutUint32(p[off:], x)
	return p
}

// int8Block returns an Int8 encoding of one block with the given scale
// and values (with the count of the values).
func int8Block(scale float32, q ...byte) []byte {
	p := []byte{'R', 'D', 1, byte(compress.Int8), byte(len(q)), 0, 0, 0}
	p = binary.LittleEndian.AppendUint32(p, math.Float32bits(scale))
	return append(p, q...)
}

func TestDecodeMalformed(t *testing.T) {
	f64 := func() []byte { return valid(t, compress.Float64, 3) }
	f32 := func() []byte { return valid(t, compress.Float32, 3) }
	f16 := func() []byte { return valid(t, compress.Float16, 3) }
	i8 := func() []byte { return valid(t, compress.Int8, 300) } // two blocks: 8+4+256, then 4+44
	set := func(p []byte, off int, b ...byte) []byte { copy(p[off:], b); return p }
	f16bits := func(p []byte, off int, h uint16) []byte { binary.LittleEndian.PutUint16(p[off:], h); return p }
	f64bits := func(p []byte, off int, x float64) []byte {
		binary.LittleEndian.PutUint64(p[off:], math.Float64bits(x))
		return p
	}
	for _, tc := range []struct {
		name   string
		p      []byte
		want   int
		offset int
	}{
		{"empty", nil, 0, 0},
		{"short header", []byte{'R', 'D', 1, 1, 0, 0, 0}, 0, 7},
		{"magic", set(f64(), 0, 'R', 'E'), 3, 0},
		{"magic order", set(f64(), 0, 'D', 'R'), 3, 0},
		{"version 0", set(f64(), 2, 0), 3, 2},
		{"version 2", set(f64(), 2, 2), 3, 2},
		{"codec 0", set(f64(), 3, 0), 3, 3},
		{"codec 5", set(f64(), 3, 5), 3, 3},
		{"codec 255", set(f64(), 3, 255), 3, 3},
		{"count above want", f64(), 2, 4},
		{"count below want", f64(), 4, 4},
		{"want negative", f64(), -1, 4},
		{"huge count", put32(f64(), 4, math.MaxUint32), math.MaxUint32, 32},
		{"float64 short payload", f64()[:31], 3, 31},
		{"float64 trailing byte", append(f64(), 0), 3, 32},
		{"float32 short payload", f32()[:19], 3, 19},
		{"float32 trailing bytes", append(f32(), 0, 0, 0, 0), 3, 20},
		{"float16 short payload", f16()[:13], 3, 13},
		{"float16 trailing byte", append(f16(), 0), 3, 14},
		{"int8 short payload", i8()[:len(i8())-1], 300, 315},
		{"int8 missing last block", i8()[:268], 300, 268},
		{"int8 trailing byte", append(i8(), 0), 300, 316},
		{"float64 NaN", f64bits(f64(), 16, math.NaN()), 3, 16},
		{"float64 +inf", f64bits(f64(), 24, math.Inf(1)), 3, 24},
		{"float64 -inf", f64bits(f64(), 8, math.Inf(-1)), 3, 8},
		{"float32 NaN", put32(f32(), 12, 0x7fc00000), 3, 12},
		{"float32 +inf", put32(f32(), 16, 0x7f800000), 3, 16},
		{"float32 -inf", put32(f32(), 8, 0xff800000), 3, 8},
		{"float16 +inf", f16bits(f16(), 10, 0x7c00), 3, 10},
		{"float16 -inf", f16bits(f16(), 8, 0xfc00), 3, 8},
		{"float16 NaN", f16bits(f16(), 12, 0x7e01), 3, 12},
		{"int8 scale +inf", put32(i8(), 8, 0x7f800000), 300, 8},
		{"int8 scale NaN", put32(i8(), 268, 0x7fc00000), 300, 268},
		{"int8 scale negative", put32(i8(), 268, math.Float32bits(-0.1)), 300, 268},
		{"int8 scale -0", put32(i8(), 8, 0x80000000), 300, 8},
		{"int8 scale -inf", put32(i8(), 8, 0xff800000), 300, 8},
		{"int8 scale subnormal", put32(i8(), 8, 1), 300, 8},
		{"int8 value -128", set(i8(), 12+5, 0x80), 300, 17},
		{"int8 value -128 in last block", set(i8(), 272+2, 0x80), 300, 274},
		{"int8 largest magnitude 126", int8Block(1, 126, 0x100-5), 2, 8},
		{"int8 largest magnitude 1", int8Block(0.5, 1, 0), 2, 8},
		{"int8 zero scale with values", int8Block(0, 0, 1), 2, 8},
		{"int8 scale with zero values", int8Block(1, 0, 0), 2, 8},
		{"int8 second block zero scale with values", put32(i8(), 268, 0), 300, 268},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := compress.Decode(tc.p, tc.want)
			check := func(fn string, err error) {
				t.Helper()
				if !errors.Is(err, compress.ErrMalformed) {
					t.Fatalf("%s: error %v, want ErrMalformed", fn, err)
				}
				var fe *compress.FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("%s: error %T, want *FormatError", fn, err)
				}
				if fe.Offset != tc.offset {
					t.Errorf("%s: %v: offset %d, want %d", fn, err, fe.Offset, tc.offset)
				}
				if prefix := "compress: malformed delta at byte "; !strings.HasPrefix(err.Error(), prefix) || fe.Reason == "" {
					t.Errorf("%s: error %q", fn, err)
				}
			}
			check("Decode", err)
			if got != nil {
				t.Errorf("Decode returned %d values with its error", len(got))
			}
			if tc.want >= 0 && tc.want <= 1<<16 {
				check("DecodeInto", compress.DecodeInto(tc.p, make([]float64, tc.want)))
			}
		})
	}
}

func TestDecodeIntoAllocs(t *testing.T) {
	for _, c := range codecs {
		p := valid(t, c, 1000)
		dst := make([]float64, 1000)
		allocs := testing.AllocsPerRun(10, func() {
			if err := compress.DecodeInto(p, dst); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("DecodeInto(%v) allocates %v times", c, allocs)
		}
	}
}

// TestCanonical checks that what Decode accepts re-encodes to the same
// bytes, for encodings of random values of every codec.
func TestCanonical(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range codecs {
		for range 20 {
			v := sample(rng, rng.IntN(1000))
			p, err := compress.Encode(c, v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := compress.Decode(p, len(v))
			if err != nil {
				t.Fatal(err)
			}
			q, err := compress.Encode(c, got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, q) {
				t.Fatalf("%v: re-encoding %d decoded values changes the bytes", c, len(v))
			}
		}
	}
}

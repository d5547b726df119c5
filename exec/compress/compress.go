package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Codec names how a delta's values travel.
type Codec uint8

const (
	// Float64 sends 8 bytes per value, lossless.
	Float64 Codec = iota + 1
	// Float32 sends 4 bytes per value, rounded to the nearest float32;
	// values beyond ±math.MaxFloat32 saturate to it.
	Float32
	// Float16 sends 2 bytes per value, IEEE 754 binary16 rounded to
	// nearest even; values beyond ±65504 saturate to ±65504 (never inf).
	Float16
	// Int8 sends, per block of BlockSize values, one float32 scale
	// (max|v|/127) then one int8 per value (round to nearest, ties away
	// from zero): about 1.016 bytes per value.
	Int8
)

// BlockSize is the number of values that share one Int8 scale.
const BlockSize = 256

const (
	headerSize = 8
	version    = 1
	maxCount   = math.MaxUint32
	maxHalf    = 65504
	// minScale is the smallest Int8 block scale other than zero: the
	// smallest normal float32, 2⁻¹²⁶.
	minScale = 0x1p-126
)

var (
	// ErrMalformed is wrapped by every *FormatError: bytes that are not
	// a valid encoding of the delta wanted.
	ErrMalformed = errors.New("compress: malformed delta")
	// ErrInvalid is wrapped by Encode's errors: a delta or codec that
	// cannot be encoded.
	ErrInvalid = errors.New("compress: invalid delta")
	// ErrUnknownCodec is wrapped by ParseCodec's errors and by Encode's
	// for a codec outside the four.
	ErrUnknownCodec = errors.New("compress: unknown codec")
)

// FormatError says where and why Decode rejected its input.
type FormatError struct {
	Offset int    // byte of the input where the defect is
	Reason string // what is wrong there
}

func (e *FormatError) Error() string {
	return "compress: malformed delta at byte " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

// Unwrap returns ErrMalformed.
func (e *FormatError) Unwrap() error { return ErrMalformed }

func malformed(offset int, format string, args ...any) error {
	return &FormatError{Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

// String returns the codec's name: "float64", "float32", "float16",
// "int8", or "codec(N)" for any other value.
func (c Codec) String() string {
	switch c {
	case Float64:
		return "float64"
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case Int8:
		return "int8"
	}
	return "codec(" + strconv.Itoa(int(c)) + ")"
}

func (c Codec) valid() bool { return c >= Float64 && c <= Int8 }

const codecNames = "float64, float32, float16, int8 (or f64, f32, f16, i8)"

// ParseCodec returns the codec named s: one of the names String returns,
// or their short forms "f64", "f32", "f16" and "i8", in any case. Any
// other name is an error wrapping ErrUnknownCodec.
func ParseCodec(s string) (Codec, error) {
	switch strings.ToLower(s) {
	case "float64", "f64":
		return Float64, nil
	case "float32", "f32":
		return Float32, nil
	case "float16", "f16":
		return Float16, nil
	case "int8", "i8":
		return Int8, nil
	}
	return 0, fmt.Errorf("%w %q: want one of %s", ErrUnknownCodec, s, codecNames)
}

// Size returns the exact length in bytes of Encode's output for n values
// with codec c, or -1 for an unknown codec or a negative n.
func Size(c Codec, n int) int {
	if n < 0 {
		return -1
	}
	switch c {
	case Float64:
		return headerSize + 8*n
	case Float32:
		return headerSize + 4*n
	case Float16:
		return headerSize + 2*n
	case Int8:
		return headerSize + n + 4*((n+BlockSize-1)/BlockSize)
	}
	return -1
}

// Encode encodes v with codec c. It returns an error wrapping ErrInvalid
// for an unknown codec, a NaN or infinite value (naming its index), or
// more than 2³²-1 values.
func Encode(c Codec, v []float64) ([]byte, error) {
	if !c.valid() {
		return nil, fmt.Errorf("%w: %w %s", ErrInvalid, ErrUnknownCodec, c)
	}
	if len(v) > maxCount {
		return nil, fmt.Errorf("%w: %d values, at most %d", ErrInvalid, len(v), maxCount)
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%w: value %d is %v", ErrInvalid, i, x)
		}
	}
	p := make([]byte, Size(c, len(v)))
	p[0], p[1], p[2], p[3] = 'R', 'D', version, byte(c)
	binary.LittleEndian.PutUint32(p[4:], uint32(len(v)))
	q := p[headerSize:]
	switch c {
	case Float64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(q[8*i:], math.Float64bits(x))
		}
	case Float32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(q[4*i:], math.Float32bits(toFloat32(x)))
		}
	case Float16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(q[2*i:], toHalf(x))
		}
	case Int8:
		for len(v) > 0 {
			n := min(len(v), BlockSize)
			encodeBlock(q[:4+n], v[:n])
			q, v = q[4+n:], v[n:]
		}
	}
	return p, nil
}

// toFloat32 rounds x to the nearest float32, saturating at ±MaxFloat32.
func toFloat32(x float64) float32 {
	if math.Abs(x) > math.MaxFloat32 {
		return float32(math.Copysign(math.MaxFloat32, x))
	}
	return float32(x)
}

// encodeBlock writes the scale and values of one Int8 block of len(v)
// values into q, which holds 4+len(v) bytes.
func encodeBlock(q []byte, v []float64) {
	var maxAbs float64
	for _, x := range v {
		maxAbs = max(maxAbs, math.Abs(x))
	}
	scale := toFloat32(maxAbs / 127)
	if scale < minScale {
		// A subnormal scale would keep too few bits for decoding to
		// give back max|v| = 127×scale; values this small are zeros.
		clear(q)
		return
	}
	binary.LittleEndian.PutUint32(q, math.Float32bits(scale))
	q = q[4:]
	// Quantize with the scale as stored, so that decoding gives
	// float64(scale)*q with no second rounding of the scale.
	s := float64(scale)
	for i, x := range v {
		r := math.Round(x / s)
		r = max(-127, min(127, r))
		q[i] = byte(int8(r))
	}
}

// header checks p's header and length against want and returns its codec.
func header(p []byte, want int) (Codec, error) {
	if len(p) < headerSize {
		return 0, malformed(len(p), "input ends after %d bytes, inside the %d-byte header", len(p), headerSize)
	}
	if p[0] != 'R' || p[1] != 'D' {
		return 0, malformed(0, "magic %q, want \"RD\"", p[:2])
	}
	if p[2] != version {
		return 0, malformed(2, "version %d, want %d", p[2], version)
	}
	c := Codec(p[3])
	if !c.valid() {
		return 0, malformed(3, "unknown codec %d", p[3])
	}
	count := binary.LittleEndian.Uint32(p[4:])
	if want < 0 || uint64(count) != uint64(want) {
		return 0, malformed(4, "count %d, want %d", count, want)
	}
	// count == want, and want is an int: Size cannot overflow on a
	// 64-bit int, and on a 32-bit one a count this large cannot match a
	// slice that fits in memory.
	size := Size(c, want)
	if size < headerSize || len(p) < size {
		return 0, malformed(len(p), "input ends after %d bytes, %d values of %s take %d", len(p), want, c, size)
	}
	if len(p) > size {
		return 0, malformed(size, "%d trailing bytes after %d values of %s", len(p)-size, want, c)
	}
	return c, nil
}

// Decode decodes want values from p, which must be an encoding of
// exactly want values. Any defect is a *FormatError (wrapping
// ErrMalformed); p's length is checked against want before anything is
// allocated.
func Decode(p []byte, want int) ([]float64, error) {
	if _, err := header(p, want); err != nil {
		return nil, err
	}
	dst := make([]float64, want)
	if err := DecodeInto(p, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// DecodeInto decodes len(dst) values from p into dst, as Decode does,
// without allocating (except for an error). On error, dst holds
// unspecified values.
func DecodeInto(p []byte, dst []float64) error {
	c, err := header(p, len(dst))
	if err != nil {
		return err
	}
	q := p[headerSize:]
	switch c {
	case Float64:
		for i := range dst {
			x := math.Float64frombits(binary.LittleEndian.Uint64(q[8*i:]))
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return malformed(headerSize+8*i, "value %d is %v", i, x)
			}
			dst[i] = x
		}
	case Float32:
		for i := range dst {
			x := math.Float32frombits(binary.LittleEndian.Uint32(q[4*i:]))
			if x != x || x > math.MaxFloat32 || x < -math.MaxFloat32 {
				return malformed(headerSize+4*i, "value %d is %v", i, x)
			}
			dst[i] = float64(x)
		}
	case Float16:
		for i := range dst {
			h := binary.LittleEndian.Uint16(q[2*i:])
			if h&0x7c00 == 0x7c00 {
				return malformed(headerSize+2*i, "value %d is a float16 infinity or NaN (%#04x)", i, h)
			}
			dst[i] = fromHalf(h)
		}
	case Int8:
		off := headerSize
		for i := 0; i < len(dst); i += BlockSize {
			n := min(len(dst)-i, BlockSize)
			if err := decodeBlock(q[:4+n], dst[i:i+n], off, i); err != nil {
				return err
			}
			q = q[4+n:]
			off += 4 + n
		}
	}
	return nil
}

// decodeBlock decodes one Int8 block: q holds its scale and len(dst)
// values, off is q's offset in the input and first its first value's
// index, for errors.
//
// A block is canonical, as Encode writes it: its scale is zero and its
// values are all zero, or its scale is a normal float32 and its largest
// magnitude is 127, so that re-encoding the decoded values (largest
// magnitude 127×scale, exact) computes the same scale and values.
func decodeBlock(q []byte, dst []float64, off, first int) error {
	bits := binary.LittleEndian.Uint32(q)
	scale := math.Float32frombits(bits)
	switch {
	case bits&0x7f800000 == 0x7f800000:
		return malformed(off, "block scale of values %d.. is %v", first, scale)
	case bits>>31 != 0:
		return malformed(off, "block scale of values %d.. is negative (%v)", first, scale)
	case bits != 0 && scale < minScale:
		return malformed(off, "block scale of values %d.. is subnormal (%v)", first, scale)
	}
	q = q[4:]
	s := float64(scale)
	var m int
	for i, b := range q {
		v := int(int8(b))
		if v == -128 {
			return malformed(off+4+i, "int8 value %d is -128, outside [-127, 127]", first+i)
		}
		m = max(m, v, -v)
		dst[i] = s * float64(v)
	}
	if bits == 0 && m != 0 {
		return malformed(off, "block of values %d.. has scale 0 but values other than zero", first)
	}
	if bits != 0 && m != 127 {
		return malformed(off, "block of values %d.. has scale %v but largest magnitude %d, not 127", first, scale, m)
	}
	return nil
}

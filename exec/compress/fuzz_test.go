package compress_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/rookery-ml/rookery/exec/compress"
)

// FuzzDecode checks that Decode never panics, and that whatever it
// accepts is finite and re-encodes with its codec to the same bytes (every
// codec is canonical), with DecodeInto agreeing.
func FuzzDecode(f *testing.F) {
	v := []float64{0, 1, -1, 1.0 / 3, 1e-6, -65504, 70000, 1e-8, math.Copysign(0, -1)}
	long := make([]float64, 300)
	for i := range long {
		long[i] = math.Sin(float64(i)) * float64(i%7)
	}
	long[7] = 0
	for _, c := range []compress.Codec{compress.Float64, compress.Float32, compress.Float16, compress.Int8} {
		for _, in := range [][]float64{nil, v, long, make([]float64, 260)} {
			p, err := compress.Encode(c, in)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(p)
			if len(p) > 9 {
				f.Add(p[:len(p)-1]) // short
				f.Add(append(p, 0)) // trailing
				b := bytes.Clone(p) // flipped bits in the payload
				b[len(b)-2] ^= 0xff
				f.Add(b)
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte{'R', 'D', 1})
	f.Add([]byte{'R', 'D', 2, 1, 0, 0, 0, 0})
	f.Add([]byte{'R', 'D', 1, 9, 0, 0, 0, 0})
	f.Add([]byte{'R', 'D', 1, 3, 1, 0, 0, 0, 0x00, 0x7c})                   // float16 inf
	f.Add([]byte{'R', 'D', 1, 4, 1, 0, 0, 0, 0, 0, 0x80, 0x3f, 0x80})       // int8 -128
	f.Add([]byte{'R', 'D', 1, 4, 1, 0, 0, 0, 0, 0, 0x80, 0x3f, 0x05})       // int8 not canonical
	f.Add([]byte{'R', 'D', 1, 4, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x80, 0x3f}) // huge count
	f.Fuzz(func(t *testing.T, p []byte) {
		want := 0
		if len(p) >= 8 {
			want = int(binary.LittleEndian.Uint32(p[4:]))
		}
		// A count other than the header's is always refused.
		if _, err := compress.Decode(p, want+1); err == nil {
			t.Fatalf("Decode accepted %d bytes with count %d as %d values", len(p), want, want+1)
		}
		got, err := compress.Decode(p, want)
		if err != nil {
			if _, ok := err.(*compress.FormatError); !ok {
				t.Fatalf("Decode error %T %v, want *FormatError", err, err)
			}
			if got != nil {
				t.Fatalf("Decode returned values with its error %v", err)
			}
			return
		}
		if len(got) != want {
			t.Fatalf("Decode returned %d values, want %d", len(got), want)
		}
		c := compress.Codec(p[3])
		if compress.Size(c, want) != len(p) {
			t.Fatalf("accepted %d bytes, Size(%v, %d) = %d", len(p), c, want, compress.Size(c, want))
		}
		q, err := compress.Encode(c, got)
		if err != nil {
			t.Fatalf("re-encoding accepted values: %v", err)
		}
		if !bytes.Equal(p, q) {
			t.Fatalf("%v: re-encoding the decoded values gives\n% x\nnot\n% x", c, q, p)
		}
		dst := make([]float64, want)
		if err := compress.DecodeInto(p, dst); err != nil {
			t.Fatalf("DecodeInto refuses what Decode accepts: %v", err)
		}
		for i := range dst {
			if math.Float64bits(dst[i]) != math.Float64bits(got[i]) {
				t.Fatalf("value %d: Decode %v, DecodeInto %v", i, got[i], dst[i])
			}
		}
	})
}

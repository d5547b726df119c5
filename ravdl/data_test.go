package ravdl

import (
	"bytes"
	"compress/gzip"
	"errors"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

func TestLoaderCoversEverySampleOnce(t *testing.T) {
	x := tensor.New(tensor.WithShape(10, 2), tensor.WithBacking([]uint8{0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9}))
	y := tensor.New(tensor.WithShape(10), tensor.WithBacking([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}))
	order := func(opts ...LoaderOption) [][]float32 {
		l, err := NewLoader(x, y, 3, 42, opts...)
		if err != nil {
			t.Fatal(err)
		}
		var epochs [][]float32
		for e := 0; e < 2; e++ {
			var seen []float32
			for {
				xb, yb, ok := l.Next()
				if !ok {
					break
				}
				for i := 0; i < xb.Shape()[0]; i++ {
					if xb.Float32s()[2*i] != yb.Float32s()[i] || xb.Float32s()[2*i+1] != yb.Float32s()[i] {
						t.Fatalf("batch row %d: x %v does not belong to y %v", i, xb.Float32s(), yb.Float32s())
					}
					seen = append(seen, yb.Float32s()[i])
				}
			}
			epochs = append(epochs, seen)
			l.Reset()
		}
		return epochs
	}
	a, b := order(), order()
	if len(a[0]) != 9 {
		t.Fatalf("an epoch of batch 3 over 10 samples gave %d samples, want 9 (last batch dropped)", len(a[0]))
	}
	for e := range a {
		for i := range a[e] {
			if a[e][i] != b[e][i] {
				t.Fatalf("same seed, different order: %v and %v", a[e], b[e])
			}
		}
	}
	if equalF32(a[0], a[1]) {
		t.Fatalf("two epochs in the same order %v", a[0])
	}
	full := order(KeepLast())
	seen := map[float32]int{}
	for _, v := range full[0] {
		seen[v]++
	}
	if len(full[0]) != 10 || len(seen) != 10 {
		t.Fatalf("KeepLast epoch %v, want each of 10 samples once", full[0])
	}
}

func equalF32(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func idxBytes(gz bool) []byte {
	raw := []byte{0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255}
	if !gz {
		return raw
	}
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write(raw)
	z.Close()
	return b.Bytes()
}

func TestReadIDX(t *testing.T) {
	for _, gz := range []bool{false, true} {
		got, err := ReadIDX(bytes.NewReader(idxBytes(gz)))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Shape().Eq(tensor.Shape{2, 3}) || !equalF32(got.Float32s(), []float32{1, 2, 3, 4, 5, 255}) {
			t.Fatalf("gzip %v: got %v %v", gz, got.Shape(), got.Float32s())
		}
	}
	bad := idxBytes(false)
	if _, err := ReadIDX(bytes.NewReader(bad[:14])); !errors.Is(err, ErrFormat) {
		t.Errorf("truncated file: got %v, want ErrFormat", err)
	}
	huge := append([]byte{0, 0, 0x08, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1)
	if _, err := ReadIDX(bytes.NewReader(huge)); !errors.Is(err, ErrFormat) {
		t.Errorf("header claiming 2^64 values: got %v, want ErrFormat", err)
	}
}

func TestReadCSV(t *testing.T) {
	x, y, err := LoadCSV("testdata/iris.csv", "label")
	if err != nil {
		t.Fatal(err)
	}
	if !x.Shape().Eq(tensor.Shape{150, 4}) || !y.Shape().Eq(tensor.Shape{150}) {
		t.Fatalf("iris: x %v, y %v; want (150, 4), (150)", x.Shape(), y.Shape())
	}
	if x.Float64s()[0] != 5.1 || y.Float64s()[149] != 2 {
		t.Fatalf("iris: first value %v, last label %v", x.Float64s()[0], y.Float64s()[149])
	}
	xt, yt, xs, ys, err := Split(x, y, func(i int) bool { return i%5 == 4 })
	if err != nil {
		t.Fatal(err)
	}
	if xt.Shape()[0] != 120 || yt.Shape()[0] != 120 || xs.Shape()[0] != 30 || ys.Shape()[0] != 30 {
		t.Fatalf("split sizes %v %v %v %v", xt.Shape(), yt.Shape(), xs.Shape(), ys.Shape())
	}
	if xs.Float64s()[0] != x.Float64s()[4*4] {
		t.Fatalf("first test row is not row 4")
	}
	if _, _, err := ReadCSV(strings.NewReader("a,b\n1,x\n"), ""); !errors.Is(err, ErrFormat) {
		t.Errorf("non-numeric cell: got %v, want ErrFormat", err)
	}
	if _, _, err := ReadCSV(strings.NewReader("a,b\n1,2\n"), "label"); !errors.Is(err, ErrFormat) {
		t.Errorf("missing label column: got %v, want ErrFormat", err)
	}
}

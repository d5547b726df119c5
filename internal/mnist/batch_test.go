package mnist

import (
	"testing"

	"gorgonia.org/tensor"
)

func TestBatch(t *testing.T) {
	s := &Set{Pixels: make([]float32, 3*Pixels), Labels: []uint8{4, 7, 1}}
	for i := range s.Pixels {
		s.Pixels[i] = float32(i / Pixels)
	}
	xs := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(2, Pixels))
	ys := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(2, Classes))
	ys.Float32s()[0] = 9 // stale values are cleared
	s.Batch(1, xs, ys)
	if x := xs.Float32s(); x[0] != 1 || x[Pixels] != 2 {
		t.Errorf("images %v and %v, want 1 and 2", x[0], x[Pixels])
	}
	for i, v := range ys.Float32s() {
		want := float32(0)
		if i == 7 || i == Classes+1 {
			want = 1
		}
		if v != want {
			t.Errorf("ys[%d] = %v, want %v", i, v, want)
		}
	}
}

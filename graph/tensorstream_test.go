package graph_test

import (
	"bytes"
	"errors"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

func TestTensorSize(t *testing.T) {
	f32 := rookeryv1.DType_DTYPE_FLOAT32
	for _, tc := range []struct {
		name      string
		pb        *rookeryv1.Tensor
		lim       graph.Limits
		wantDT    graph.DType
		wantN     int64
		malformed bool
		limit     string
	}{
		{name: "matrix", pb: &rookeryv1.Tensor{Dtype: f32, Shape: []int64{3, 4}}, wantDT: graph.Float32, wantN: 12},
		{name: "scalar", pb: &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_BOOL}, wantDT: graph.Bool, wantN: 1},
		{name: "data not checked", pb: &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_INT64, Shape: []int64{5}, Data: []byte{1}}, wantDT: graph.Int, wantN: 5},
		{name: "nil", pb: nil, malformed: true},
		{name: "unspecified dtype", pb: &rookeryv1.Tensor{Shape: []int64{2}}, malformed: true},
		{name: "unknown dtype", pb: &rookeryv1.Tensor{Dtype: 99, Shape: []int64{2}}, malformed: true},
		{name: "zero dimension", pb: &rookeryv1.Tensor{Dtype: f32, Shape: []int64{2, 0}}, malformed: true},
		{name: "negative dimension", pb: &rookeryv1.Tensor{Dtype: f32, Shape: []int64{-1}}, malformed: true},
		{name: "rank", pb: &rookeryv1.Tensor{Dtype: f32, Shape: make([]int64, 9)}, limit: "rank"},
		{name: "elements", pb: &rookeryv1.Tensor{Dtype: f32, Shape: []int64{1 << 20, 1 << 20}}, lim: graph.Limits{MaxElements: 1 << 30}, limit: "elements"},
		{name: "overflow", pb: &rookeryv1.Tensor{Dtype: f32, Shape: []int64{1 << 62, 1 << 62}}, lim: graph.Limits{MaxElements: 1 << 62}, limit: "elements"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dt, n, err := graph.TensorSize(tc.pb, tc.lim)
			var le *graph.LimitError
			switch {
			case tc.malformed:
				if !errors.Is(err, graph.ErrMalformed) {
					t.Errorf("got %v, want ErrMalformed", err)
				}
			case tc.limit != "":
				if !errors.As(err, &le) || le.What != tc.limit {
					t.Errorf("got %v, want a *LimitError on %s", err, tc.limit)
				}
			case err != nil || dt != tc.wantDT || n != tc.wantN:
				t.Errorf("got %v, %d, %v; want %v, %d", dt, n, err, tc.wantDT, tc.wantN)
			}
		})
	}
}

func TestTensorMemory(t *testing.T) {
	for _, v := range []*tensor.Dense{
		tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float32{1, -2, 3, 4.5, 5, 6})),
		tensor.New(tensor.WithShape(4), tensor.WithBacking([]float64{1, 2, 3, -4})),
		tensor.New(tensor.WithShape(3), tensor.WithBacking([]int{7, -8, 1 << 40})),
		tensor.New(tensor.WithShape(2), tensor.WithBacking([]int64{-1, 2})),
	} {
		b, ok := graph.TensorMemory(v)
		if !ok {
			t.Fatalf("%v %v: not its wire form", v.Dtype(), v.Shape())
		}
		pb, err := graph.EncodeTensor(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, pb.Data) {
			t.Errorf("%v %v: memory %v, wire form %v", v.Dtype(), v.Shape(), b, pb.Data)
		}
		b[0] ^= 0xff // shared: the tensor changes
		if again, _ := graph.EncodeTensor(v); bytes.Equal(again.Data, pb.Data) {
			t.Errorf("%v %v: the bytes are a copy", v.Dtype(), v.Shape())
		}
	}
	m := tensor.New(tensor.WithShape(3, 3), tensor.WithBacking(make([]float32, 9)))
	view, err := m.Slice(nil, tensor.S(0, 2))
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]*tensor.Dense{
		"bool":   tensor.New(tensor.WithShape(2), tensor.WithBacking([]bool{true, false})),
		"scalar": tensor.New(tensor.FromScalar(float32(1))),
		"view":   view.(*tensor.Dense),
		"nil":    nil,
	} {
		if b, ok := graph.TensorMemory(v); ok {
			t.Errorf("%s: got %d bytes of memory, want none", name, len(b))
		}
	}
}

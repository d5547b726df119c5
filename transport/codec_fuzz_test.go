package transport

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// FuzzFrameCodec feeds bytes from the network, cut into gRPC buffers at
// an arbitrary point, to the frame codec's fast decoder. It must never
// panic, and whenever protobuf accepts the bytes it must read the same
// frame.
func FuzzFrameCodec(f *testing.F) {
	c := newFrameCodec()
	for _, fr := range []*rookeryv1.TensorFrame{
		{Session: "s", MicroBatch: 3, Tensor: &rookeryv1.Tensor{Dtype: 2, Shape: []int64{2, 3}, Data: bytes.Repeat([]byte{1}, 24)}},
		{Name: "param/1", Data: []byte{1, 2, 3, 4}},
		{Id: -1, Tensor: &rookeryv1.Tensor{Dtype: 1}},
	} {
		b, err := proto.Marshal(fr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		k := int(cut) % (len(b) + 1)
		data := mem.BufferSlice{mem.SliceBuffer(b[:k]), mem.SliceBuffer(b[k:])}
		var r rawFrame
		cur := &cursor{s: data}
		err := cur.frame(&r)
		var want rookeryv1.TensorFrame
		werr := proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, &want)
		if werr != nil || err != nil {
			return // protobuf and the fast path may disagree on what is malformed, not on what is read
		}
		r.buf = data
		got := proto.Clone(&r.F).(*rookeryv1.TensorFrame)
		if r.data.n > 0 {
			got.Data = make([]byte, r.data.n)
			r.copyData(got.Data)
		}
		if r.tdata.n > 0 {
			got.Tensor.Data = make([]byte, r.tdata.n)
			r.copyTensorData(got.Tensor.Data)
		}
		r.buf = nil
		if !proto.Equal(got, &want) {
			t.Fatalf("fast path read %v, protobuf %v", got, &want)
		}
		// The codec's round trip through its own Marshal.
		enc, err := c.Marshal(&want)
		if err != nil {
			t.Fatal(err)
		}
		var back rookeryv1.TensorFrame
		if err := proto.Unmarshal(enc.Materialize(), &back); err != nil || !proto.Equal(&back, &want) {
			t.Fatalf("marshal round trip: %v, %v", &back, err)
		}
	})
}

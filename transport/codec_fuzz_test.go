package transport

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// FuzzFrameCodec feeds bytes from the network, cut into gRPC buffers at
// an arbitrary point, to the frame codec's Unmarshal as the frame reader
// calls it (into a *rawFrame), with the fast path taken whatever the
// size. It must never panic, and whenever protobuf accepts the bytes it
// must read the same frame. The frame then goes back through the codec's
// Marshal, which must write the bytes protobuf writes.
func FuzzFrameCodec(f *testing.F) {
	c := frameCodec{std: encoding.GetCodecV2("proto"), min: 0}
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
		err := c.Unmarshal(data, &r)
		defer r.free()
		var want rookeryv1.TensorFrame
		werr := proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, &want)
		if werr != nil || err != nil {
			return // protobuf and the fast path may disagree on what is malformed, not on what is read
		}
		if r.buf == nil {
			t.Fatal("the fast path was not taken")
		}
		got := proto.Clone(&r.F).(*rookeryv1.TensorFrame)
		if n := r.dataLen(); n > 0 {
			got.Data = make([]byte, n)
			if m := r.copyData(got.Data); m != n {
				t.Fatalf("copied %d of %d data bytes", m, n)
			}
		}
		if n := r.tensorDataLen(); n > 0 {
			got.Tensor.Data = make([]byte, n)
			if m := r.copyTensorData(got.Tensor.Data); m != n {
				t.Fatalf("copied %d of %d tensor bytes", m, n)
			}
		}
		if !proto.Equal(got, &want) {
			t.Fatalf("fast path read %v, protobuf %v", got, &want)
		}
		enc, err := c.Marshal(&want)
		if err != nil {
			t.Fatal(err)
		}
		std, err := proto.Marshal(&want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc.Materialize(), std) {
			t.Fatalf("marshal wrote %x, protobuf %x", enc.Materialize(), std)
		}
	})
}

package transport

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// BenchmarkFrameCodec compares the hand-written frame codec with the
// generated protobuf code on the same TensorFrame messages: a tensor's
// first frame (session, name, dtype, shape and data) of each size, up to
// the default chunk. Figures and the command: RESULTS.md.
//
// encode turns the message into what gRPC writes; decode turns what gRPC
// received (the message in 16 KiB buffers, as HTTP/2 data frames deliver
// it) into the tensor's data in place, which is what the frame reader
// needs. The codecs:
//
//	proto  proto.Marshal, and proto.Unmarshal from one contiguous slice
//	       (its best case: nothing to join first), then a copy of the data
//	       into place;
//	grpc   gRPC's standard codec, what a connection without ours uses
//	       (pooled buffers; Unmarshal joins the buffers first);
//	hand   frameCodec with its fast path at every size: Marshal hands over
//	       the data without copying it, Unmarshal records where the data
//	       lie and the reader copies them once into place.
//
// The frame codec in use (newFrameCodec) is hand from aliasMin (64 KiB)
// of data on and grpc below it.
func BenchmarkFrameCodec(b *testing.B) {
	std := encoding.GetCodecV2("proto")
	hand := frameCodec{std: std, min: 0}
	for _, size := range []int{256, 4 << 10, 16 << 10, 64 << 10, 1 << 20, DefaultChunkBytes} {
		f := benchFrame(size)
		wire, err := proto.Marshal(f)
		if err != nil {
			b.Fatal(err)
		}
		recv := splitBuffers(wire, 16<<10)
		dst := make([]byte, size)
		label := fmt.Sprintf("size=%s", byteSize(size))

		b.Run("op=encode/"+label+"/codec=proto", func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(f); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, c := range []struct {
			name  string
			codec encoding.CodecV2
		}{{"grpc", std}, {"hand", hand}} {
			b.Run("op=encode/"+label+"/codec="+c.name, func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					out, err := c.codec.Marshal(f)
					if err != nil {
						b.Fatal(err)
					}
					out.Free()
				}
			})
		}

		b.Run("op=decode/"+label+"/codec=proto", func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				var g rookeryv1.TensorFrame
				if err := proto.Unmarshal(wire, &g); err != nil {
					b.Fatal(err)
				}
				if copy(dst, g.Tensor.Data) != size {
					b.Fatal("short data")
				}
			}
		})
		b.Run("op=decode/"+label+"/codec=grpc", func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				var g rookeryv1.TensorFrame
				if err := std.Unmarshal(recv, &g); err != nil {
					b.Fatal(err)
				}
				if copy(dst, g.Tensor.Data) != size {
					b.Fatal("short data")
				}
			}
		})
		b.Run("op=decode/"+label+"/codec=hand", func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				var r rawFrame
				if err := hand.Unmarshal(recv, &r); err != nil {
					b.Fatal(err)
				}
				if r.copyTensorData(dst) != size {
					b.Fatal("short data")
				}
				r.free()
			}
		})
	}
}

// benchFrame is the first frame of a float32 tensor with size bytes of
// data.
func benchFrame(size int) *rookeryv1.TensorFrame {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	return &rookeryv1.TensorFrame{Session: "0123456789abcdef0123456789abcdef", Name: "input/7",
		Tensor: &rookeryv1.Tensor{Dtype: rookeryv1.DType_DTYPE_FLOAT32, Shape: []int64{int64(size / 4)}, Data: data}}
}

// splitBuffers cuts b into buffers of at most n bytes, as gRPC receives
// a message.
func splitBuffers(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		s = append(s, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return s
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

package transport

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec that frameCodec falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// frameCodec is gRPC's protobuf codec with a faster path for the
// TensorFrame messages that carry tensor bytes; the bytes on the wire are
// the same. Marshal hands gRPC the frame's header and its data as
// separate buffers, the data being the tensor's own memory, so the bytes
// are not first copied into a message buffer. Unmarshal reads the message
// once into one buffer and lets the frame's data alias it instead of
// copying it again into a field. Every other message goes to the standard
// codec. It is installed per server and per connection (never globally).
type frameCodec struct{ std encoding.CodecV2 }

// aliasMin is the data size from which frames take the fast path.
const aliasMin = 64 << 10

func newFrameCodec() frameCodec { return frameCodec{std: encoding.GetCodecV2("proto")} }

// Name is "proto": the wire format is standard protobuf, so peers that use
// the standard codec read and write these messages too.
func (c frameCodec) Name() string { return "proto" }

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*rookeryv1.TensorFrame)
	if !ok || (len(f.Data) < aliasMin && len(f.GetTensor().GetData()) < aliasMin) {
		return c.std.Marshal(v)
	}
	var b []byte
	if f.Session != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, f.Session)
	}
	if f.MicroBatch != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.MicroBatch))
	}
	if f.Name != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, f.Name)
	}
	if f.Id != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.Id))
	}
	out := mem.BufferSlice{}
	if t := f.Tensor; t != nil {
		var inner []byte
		if t.Dtype != 0 {
			inner = protowire.AppendTag(inner, 1, protowire.VarintType)
			inner = protowire.AppendVarint(inner, uint64(t.Dtype))
		}
		if len(t.Shape) > 0 {
			var packed []byte
			for _, d := range t.Shape {
				packed = protowire.AppendVarint(packed, uint64(d))
			}
			inner = protowire.AppendTag(inner, 2, protowire.BytesType)
			inner = protowire.AppendBytes(inner, packed)
		}
		n := len(inner)
		if len(t.Data) > 0 {
			n += protowire.SizeTag(3) + protowire.SizeBytes(len(t.Data))
		}
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = append(b, inner...)
		if len(t.Data) > 0 {
			b = protowire.AppendTag(b, 3, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(len(t.Data)))
			out = append(out, mem.SliceBuffer(b), mem.SliceBuffer(t.Data))
			b = nil
		}
	}
	if len(f.Data) > 0 {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(f.Data)))
		out = append(out, mem.SliceBuffer(b), mem.SliceBuffer(f.Data))
		b = nil
	}
	if len(b) > 0 {
		out = append(out, mem.SliceBuffer(b))
	}
	return out, nil
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*rookeryv1.TensorFrame)
	if !ok || data.Len() < aliasMin {
		return c.std.Unmarshal(data, v)
	}
	b := data.Materialize()
	f.Reset()
	if err := parseFrame(b, f); err != nil {
		return fmt.Errorf("transport: decoding a tensor frame: %w", err)
	}
	return nil
}

// parseFrame decodes a TensorFrame from b; its bytes fields alias b.
// Unknown fields are skipped, as protobuf does.
func parseFrame(b []byte, f *rookeryv1.TensorFrame) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f.Session, b = string(v), b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f.MicroBatch, b = int64(v), b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f.Name, b = string(v), b[n:]
		case num == 4 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f.Id, b = int64(v), b[n:]
		case num == 5 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if f.Tensor == nil {
				f.Tensor = &rookeryv1.Tensor{}
			}
			if err := parseTensor(v, f.Tensor); err != nil {
				return err
			}
			b = b[n:]
		case num == 6 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f.Data, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}

func parseTensor(b []byte, t *rookeryv1.Tensor) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			t.Dtype, b = rookeryv1.DType(int32(v)), b[n:]
		case num == 2 && typ == protowire.BytesType: // packed
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			for len(v) > 0 {
				d, m := protowire.ConsumeVarint(v)
				if m < 0 {
					return protowire.ParseError(m)
				}
				if len(t.Shape) >= maxWireRank {
					return fmt.Errorf("tensor of rank above %d", maxWireRank)
				}
				t.Shape, v = append(t.Shape, int64(d)), v[m:]
			}
			b = b[n:]
		case num == 2 && typ == protowire.VarintType: // unpacked
			d, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if len(t.Shape) >= maxWireRank {
				return fmt.Errorf("tensor of rank above %d", maxWireRank)
			}
			t.Shape, b = append(t.Shape, int64(d)), b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			t.Data, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}

// maxWireRank bounds the shapes the fast path reads; checkHeader applies
// the real limit.
const maxWireRank = 64

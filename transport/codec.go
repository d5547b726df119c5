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
// are not first copied into a message buffer. Unmarshal, for the frame
// reader (a *rawFrame), keeps gRPC's receive buffers and records where
// the frame's data lie in them, so that the reader copies the data once,
// straight into the tensor they belong to. Every other message, and every
// frame with less data than min, goes to the standard codec. It is
// installed per server and per connection (never globally).
type frameCodec struct {
	std encoding.CodecV2
	min int // data size from which frames take the fast path
}

// aliasMin is the data size from which frames take the fast path.
const aliasMin = 64 << 10

func newFrameCodec() frameCodec { return frameCodec{std: encoding.GetCodecV2("proto"), min: aliasMin} }

// Name is "proto": the wire format is standard protobuf, so peers that use
// the standard codec read and write these messages too.
func (c frameCodec) Name() string { return "proto" }

// Marshal encodes a TensorFrame that carries at least min bytes of data
// as its header and its data in separate buffers; every other message
// goes to the standard codec.
func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*rookeryv1.TensorFrame)
	if !ok || (len(f.Data) < c.min && len(f.GetTensor().GetData()) < c.min) {
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

// Unmarshal decodes a *rawFrame, the frame reader's receive buffer, on
// the fast path when it is large; every other message, and a small frame,
// goes to the standard codec.
func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawFrame); ok {
		return r.unmarshal(c, data)
	}
	return c.std.Unmarshal(data, v)
}

// rawFrame is a TensorFrame as the frame reader receives it. A large
// frame keeps gRPC's receive buffers (referenced until free) and records
// where its tensor bytes lie in them, so that they are copied once,
// straight into the tensor they belong to; a small one is decoded as
// usual into F.
type rawFrame struct {
	F           rookeryv1.TensorFrame // every field; Data and Tensor.Data only when buf is nil
	buf         mem.BufferSlice
	tdata, data span // Tensor.data and data within buf
}

type span struct{ off, n int }

func (r *rawFrame) unmarshal(c frameCodec, data mem.BufferSlice) error {
	r.free()
	r.F.Reset()
	r.tdata, r.data = span{}, span{}
	if data.Len() < c.min {
		return c.std.Unmarshal(data, &r.F)
	}
	cur := &cursor{s: data}
	if err := cur.frame(r); err != nil {
		return fmt.Errorf("transport: decoding a tensor frame: %w", err)
	}
	data.Ref()
	r.buf = data
	return nil
}

// free releases the receive buffers; the frame's data is gone after it.
func (r *rawFrame) free() {
	if r.buf != nil {
		r.buf.Free()
		r.buf = nil
	}
}

func (r *rawFrame) tensorDataLen() int {
	if r.buf != nil {
		return r.tdata.n
	}
	return len(r.F.GetTensor().GetData())
}

func (r *rawFrame) dataLen() int {
	if r.buf != nil {
		return r.data.n
	}
	return len(r.F.Data)
}

func (r *rawFrame) copyTensorData(dst []byte) int {
	if r.buf != nil {
		return copySpan(dst, r.buf, r.tdata)
	}
	return copy(dst, r.F.GetTensor().GetData())
}

func (r *rawFrame) copyData(dst []byte) int {
	if r.buf != nil {
		return copySpan(dst, r.buf, r.data)
	}
	return copy(dst, r.F.Data)
}

// copySpan copies the bytes of sp within s to dst.
func copySpan(dst []byte, s mem.BufferSlice, sp span) int {
	dst = dst[:min(len(dst), sp.n)]
	off, n := sp.off, 0
	for _, b := range s {
		d := b.ReadOnlyData()
		if off >= len(d) {
			off -= len(d)
			continue
		}
		n += copy(dst[n:], d[off:])
		off = 0
		if n == len(dst) {
			break
		}
	}
	return n
}

// cursor reads protobuf fields from a BufferSlice without joining its
// buffers.
type cursor struct {
	s   mem.BufferSlice
	i   int // buffer
	j   int // byte within it
	off int // bytes consumed
}

var errTruncated = fmt.Errorf("truncated message")

func (c *cursor) more() bool {
	for c.i < len(c.s) && c.j >= len(c.s[c.i].ReadOnlyData()) {
		c.i, c.j = c.i+1, 0
	}
	return c.i < len(c.s)
}

func (c *cursor) byte() (byte, error) {
	if !c.more() {
		return 0, errTruncated
	}
	b := c.s[c.i].ReadOnlyData()[c.j]
	c.j++
	c.off++
	return b, nil
}

func (c *cursor) varint() (uint64, error) {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		b, err := c.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("varint overflow")
}

// skip passes n bytes and returns where they started.
func (c *cursor) skip(n int) (int, error) {
	start := c.off
	for n > 0 {
		if !c.more() {
			return 0, errTruncated
		}
		k := min(n, len(c.s[c.i].ReadOnlyData())-c.j)
		c.j += k
		c.off += k
		n -= k
	}
	return start, nil
}

// bytes reads n bytes into a new slice (for short fields).
func (c *cursor) bytes(n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		if !c.more() {
			return nil, errTruncated
		}
		d := c.s[c.i].ReadOnlyData()[c.j:]
		k := min(n-len(out), len(d))
		out = append(out, d[:k]...)
		c.j += k
		c.off += k
	}
	return out, nil
}

func (c *cursor) length(limit int) (int, error) {
	v, err := c.varint()
	if err != nil {
		return 0, err
	}
	if v > uint64(limit) {
		return 0, errTruncated
	}
	return int(v), nil
}

// skipField passes the value of a field of wire type typ.
func (c *cursor) skipField(typ protowire.Type) error {
	switch typ {
	case protowire.VarintType:
		_, err := c.varint()
		return err
	case protowire.Fixed32Type:
		_, err := c.skip(4)
		return err
	case protowire.Fixed64Type:
		_, err := c.skip(8)
		return err
	case protowire.BytesType:
		n, err := c.length(c.s.Len() - c.off)
		if err != nil {
			return err
		}
		_, err = c.skip(n)
		return err
	}
	return fmt.Errorf("unsupported wire type %d", typ)
}

func (c *cursor) tag() (protowire.Number, protowire.Type, error) {
	v, err := c.varint()
	if err != nil {
		return 0, 0, err
	}
	return protowire.Number(v >> 3), protowire.Type(v & 7), nil
}

// frame reads a TensorFrame; the two data fields become spans.
func (c *cursor) frame(r *rawFrame) error {
	total := c.s.Len()
	for c.more() {
		num, typ, err := c.tag()
		if err != nil {
			return err
		}
		switch {
		case (num == 1 || num == 3) && typ == protowire.BytesType:
			n, err := c.length(min(total-c.off, 1<<16))
			if err != nil {
				return err
			}
			b, err := c.bytes(n)
			if err != nil {
				return err
			}
			if num == 1 {
				r.F.Session = string(b)
			} else {
				r.F.Name = string(b)
			}
		case (num == 2 || num == 4) && typ == protowire.VarintType:
			v, err := c.varint()
			if err != nil {
				return err
			}
			if num == 2 {
				r.F.MicroBatch = int64(v)
			} else {
				r.F.Id = int64(v)
			}
		case num == 5 && typ == protowire.BytesType:
			n, err := c.length(total - c.off)
			if err != nil {
				return err
			}
			if r.F.Tensor == nil {
				r.F.Tensor = &rookeryv1.Tensor{}
			}
			if err := c.tensor(r, c.off+n); err != nil {
				return err
			}
		case num == 6 && typ == protowire.BytesType:
			n, err := c.length(total - c.off)
			if err != nil {
				return err
			}
			start, err := c.skip(n)
			if err != nil {
				return err
			}
			r.data = span{start, n}
		default:
			if err := c.skipField(typ); err != nil {
				return err
			}
		}
	}
	return nil
}

// tensor reads a Tensor message that ends at offset end.
func (c *cursor) tensor(r *rawFrame, end int) error {
	t := r.F.Tensor
	for c.off < end {
		num, typ, err := c.tag()
		if err != nil {
			return err
		}
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, err := c.varint()
			if err != nil {
				return err
			}
			t.Dtype = rookeryv1.DType(int32(v))
		case num == 2 && typ == protowire.BytesType:
			n, err := c.length(end - c.off)
			if err != nil {
				return err
			}
			stop := c.off + n
			for c.off < stop {
				d, err := c.varint()
				if err != nil {
					return err
				}
				if len(t.Shape) >= maxWireRank {
					return fmt.Errorf("tensor of rank above %d", maxWireRank)
				}
				t.Shape = append(t.Shape, int64(d))
			}
		case num == 2 && typ == protowire.VarintType:
			d, err := c.varint()
			if err != nil {
				return err
			}
			if len(t.Shape) >= maxWireRank {
				return fmt.Errorf("tensor of rank above %d", maxWireRank)
			}
			t.Shape = append(t.Shape, int64(d))
		case num == 3 && typ == protowire.BytesType:
			n, err := c.length(end - c.off)
			if err != nil {
				return err
			}
			start, err := c.skip(n)
			if err != nil {
				return err
			}
			r.tdata = span{start, n}
		default:
			if err := c.skipField(typ); err != nil {
				return err
			}
		}
	}
	if c.off != end {
		return errTruncated
	}
	return nil
}

// maxWireRank bounds the shapes the fast path reads; checkHeader applies
// the real limit (graph.TensorSize).
const maxWireRank = 64

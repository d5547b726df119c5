package transport

import (
	"io"
	"math"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Tensors on the wire.
//
// A tensor travels as a header frame (a rookery.v1 Tensor with dtype,
// shape and the first bytes of data) followed by continuation frames that
// carry only data, each at most the chunk size, until all
// product(shape)·size(dtype) bytes have arrived. A tensor whose memory is
// its wire form (graph.TensorMemory: float and int tensors on a
// little-endian machine) is sent straight from that memory; other tensors
// go through graph.EncodeTensor. A header is checked (graph.TensorSize and
// the limit on tensor bytes) before anything is allocated. A tensor that
// spans several frames, or arrives in a frame of 64 KiB and more, is
// received straight into the memory of a tensor allocated once its size
// has passed the limits; a small one, and bools, go through
// graph.DecodeTensor.

// sendTensor sends t as frames; head is the first frame, with its session,
// name or id already set. It returns the bytes of tensor data sent.
func sendTensor(send func(*rookeryv1.TensorFrame) error, head *rookeryv1.TensorFrame, t *tensor.Dense, chunk int) (int64, error) {
	var data []byte
	var hdr *rookeryv1.Tensor
	if b, ok := graph.TensorMemory(t); ok {
		dt, _ := graph.DTypeOf(t.Dtype())
		shape := t.Shape()
		hdr = &rookeryv1.Tensor{Dtype: rookeryv1.DType(dt), Shape: make([]int64, len(shape))}
		for i, d := range shape {
			hdr.Shape[i] = int64(d)
		}
		data = b
	} else {
		pb, err := graph.EncodeTensor(t)
		if err != nil {
			return 0, err
		}
		hdr, data = pb, pb.Data
	}
	n := min(chunk, len(data))
	hdr.Data = data[:n]
	head.Tensor = hdr
	if err := send(head); err != nil {
		return 0, err
	}
	for off := n; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if err := send(&rookeryv1.TensorFrame{Data: data[off:end]}); err != nil {
			return int64(off), err
		}
	}
	return int64(len(data)), nil
}

// frameReader reads tensors from a stream of frames.
type frameReader struct {
	stream  interface{ RecvMsg(any) error }
	lim     Limits
	pending *rawFrame
	// reserve is called with the byte size of each tensor before it is
	// allocated; it may refuse. nil accepts everything within lim.
	reserve func(n int64) error
	// bytes counts the tensor data received.
	bytes int64
	// alloc, when set, gives the tensor a tensor of several frames is
	// received into (nil: a new one), of the header's dtype and shape.
	alloc func(dt tensor.Dtype, shape []int) *tensor.Dense
}

func (r *frameReader) recv() (*rawFrame, error) {
	f := new(rawFrame)
	if err := r.stream.RecvMsg(f); err != nil {
		return nil, err
	}
	return f, nil
}

// first reads the first frame of a call, which names the session; if it
// also starts a tensor, that tensor is read by the next call to next.
func (r *frameReader) first() (*rookeryv1.TensorFrame, error) {
	f, err := r.recv()
	if err != nil {
		if err == io.EOF {
			return nil, protocolError("call ended before its first frame")
		}
		return nil, err
	}
	if f.F.Tensor != nil {
		r.pending = f
	} else if f.dataLen() > 0 {
		f.free()
		return nil, protocolError("tensor data before a tensor header")
	}
	return &f.F, nil
}

// next reads the next tensor; it returns io.EOF at the end of the stream.
// The frame it returns carries the tensor's name or id.
func (r *frameReader) next() (*rookeryv1.TensorFrame, *tensor.Dense, error) {
	h := r.pending
	r.pending = nil
	if h == nil {
		var err error
		if h, err = r.recv(); err != nil {
			return nil, nil, err
		}
	}
	defer h.free()
	if h.F.Tensor == nil {
		return nil, nil, protocolError("frame without a tensor header where a tensor starts")
	}
	pb := h.F.Tensor
	dt, size, err := r.checkHeader(pb)
	if err != nil {
		return nil, nil, err
	}
	if r.reserve != nil {
		if err := r.reserve(size); err != nil {
			return nil, nil, err
		}
	}
	firstLen := int64(h.tensorDataLen())
	if firstLen > size {
		return nil, nil, protocolError("tensor of %d bytes carries %d", size, firstLen)
	}
	if firstLen == size && h.buf == nil {
		r.bytes += size
		t, err := graph.DecodeTensor(pb, r.graphLimits())
		return &h.F, t, err
	}
	// Allocate once, then copy each chunk into place: into the tensor's
	// own memory where it has the wire layout.
	var dst []byte
	var t *tensor.Dense
	if tdt, err := dt.Tensor(); err == nil && dt != graph.Bool && len(pb.Shape) > 0 { // bools: DecodeTensor checks each byte
		shape := make([]int, len(pb.Shape))
		for i, d := range pb.Shape {
			shape[i] = int(d)
		}
		if r.alloc != nil {
			t = r.alloc(tdt, shape)
		}
		if t == nil {
			t = tensor.New(tensor.Of(tdt), tensor.WithShape(shape...))
		}
		var ok bool
		if dst, ok = graph.TensorMemory(t); !ok {
			t = nil
		}
	}
	if t == nil {
		dst = make([]byte, size)
	}
	off := h.copyTensorData(dst)
	for off < len(dst) {
		f, err := r.recv()
		if err == io.EOF {
			return nil, nil, protocolError("stream ended %d bytes into a tensor of %d", off, size)
		}
		if err != nil {
			return nil, nil, err
		}
		n := f.dataLen()
		switch {
		case f.F.Tensor != nil || f.F.Name != "" || f.F.Session != "":
			err = protocolError("new header %d bytes into a tensor of %d", off, size)
		case n > len(dst)-off:
			err = protocolError("tensor of %d bytes carries more", size)
		case n == 0:
			err = protocolError("empty continuation frame")
		default:
			off += f.copyData(dst[off:])
		}
		f.free()
		if err != nil {
			return nil, nil, err
		}
	}
	r.bytes += size
	if t != nil {
		return &h.F, t, nil
	}
	full := &rookeryv1.Tensor{Dtype: pb.Dtype, Shape: pb.Shape, Data: dst}
	t, err = graph.DecodeTensor(full, r.graphLimits())
	return &h.F, t, err
}

func (r *frameReader) graphLimits() graph.Limits {
	l := graph.Limits{}
	if r.lim.MaxTensorBytes > 0 {
		l.MaxElements = r.lim.MaxTensorBytes
	}
	return l
}

// checkHeader checks a tensor header against graph's checks and the
// limit on tensor bytes, and returns its dtype and size in bytes.
func (r *frameReader) checkHeader(pb *rookeryv1.Tensor) (graph.DType, int64, error) {
	dt, n, err := graph.TensorSize(pb, graph.Limits{MaxElements: maxWireElements})
	if err != nil {
		return 0, 0, err
	}
	size := n * int64(dt.Size())
	if exceeds(size, r.lim.MaxTensorBytes) {
		return 0, 0, &LimitError{What: "tensor bytes", Limit: r.lim.MaxTensorBytes, Got: size}
	}
	return dt, size, nil
}

// maxWireElements bounds the elements of one tensor header so that its
// size in bytes is an int64; the limit on tensor bytes is the real bound.
const maxWireElements = math.MaxInt64 / 8

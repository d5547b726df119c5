package graph

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Scanning the wire format before parsing it.
//
// proto.Unmarshal allocates as it parses: a node of two bytes on the wire
// becomes a struct of some hundred bytes, a packed list of one-byte varints
// becomes eight bytes per element. scanWire walks the bytes first, without
// allocating, and checks every list's length and every string's size
// against the limits, so that what Unmarshal then allocates is bounded by
// them. It follows the schema through the message descriptors; a field that
// the schema does not know is skipped (Unmarshal discards it). It rejects,
// as malformed, a singular message field that appears more than once
// (which protobuf would merge, and which no writer of this format emits),
// so that every list is counted exactly.

// limitKind names the limit that applies to a field.
type limitKind uint8

const (
	limNone limitKind = iota
	limNodes
	limAttrs
	limRank
	limInputs
	limAttrElements
	limName
	limTensorBytes
)

// wireLimits says which limit applies to each list, string and bytes field
// of the schema (TestWireLimitsCoverSchema checks that none is missing).
var wireLimits = map[protoreflect.FullName]limitKind{
	"rookery.v1.Graph.nodes":       limNodes,
	"rookery.v1.Node.kind":         limName,
	"rookery.v1.Node.attrs":        limAttrs,
	"rookery.v1.Node.shape":        limRank,
	"rookery.v1.Node.inputs":       limInputs,
	"rookery.v1.Node.name":         limName,
	"rookery.v1.Attr.name":         limName,
	"rookery.v1.Attr.string_value": limAttrElements,
	"rookery.v1.Ints.values":       limAttrElements,
	"rookery.v1.Floats.values":     limAttrElements,
	"rookery.v1.Tensor.shape":      limRank,
	"rookery.v1.Tensor.data":       limTensorBytes,
}

func (l Limits) of(k limitKind) (what string, max int64) {
	switch k {
	case limNodes:
		return "nodes", int64(l.MaxNodes)
	case limAttrs:
		return "attributes", int64(l.MaxAttrs)
	case limRank:
		return "rank", int64(l.MaxRank)
	case limInputs:
		return "inputs", int64(l.MaxInputs)
	case limAttrElements:
		return "attribute elements", int64(l.MaxAttrElements)
	case limName:
		return "name bytes", int64(l.MaxNameLen)
	case limTensorBytes:
		if l.MaxElements > math.MaxInt64/8 {
			return "tensor bytes", math.MaxInt64
		}
		return "tensor bytes", l.MaxElements * 8
	}
	return "", math.MaxInt64
}

// maxWireField bounds the field numbers of the schema, so that per-message
// counters fit in fixed arrays.
const maxWireField = 16

// wireMsg is the part of a message descriptor that scanWire needs.
type wireMsg struct {
	name   protoreflect.FullName
	fields [maxWireField]*wireField
}

type wireField struct {
	desc  protoreflect.FieldDescriptor
	limit limitKind
	msg   *wireMsg // for message fields
}

var wireGraph = buildWire((&rookeryv1.Graph{}).ProtoReflect().Descriptor(), map[protoreflect.FullName]*wireMsg{})

func buildWire(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*wireMsg) *wireMsg {
	if m, ok := seen[md.FullName()]; ok {
		return m
	}
	m := &wireMsg{name: md.FullName()}
	seen[md.FullName()] = m
	fds := md.Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if fd.Number() >= maxWireField {
			panic(fmt.Sprintf("graph: field %s has number %d; raise maxWireField", fd.FullName(), fd.Number()))
		}
		f := &wireField{desc: fd, limit: wireLimits[fd.FullName()]}
		if fd.Kind() == protoreflect.MessageKind {
			f.msg = buildWire(fd.Message(), seen)
		}
		m.fields[fd.Number()] = f
	}
	return m
}

// scanWire checks the encoded message b of type m against lim.
func scanWire(m *wireMsg, b []byte, lim Limits) error {
	var counts [maxWireField]int64
	var seen uint32 // singular message fields already met
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, m.name, protowire.ParseError(n))
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("%w: %s field %d: %w", ErrMalformed, m.name, num, protowire.ParseError(n))
		}
		val := b[:n]
		b = b[n:]
		if num >= maxWireField || m.fields[num] == nil {
			continue // unknown to the schema: discarded by Unmarshal
		}
		f := m.fields[num]
		fd := f.desc
		var content []byte
		if typ == protowire.BytesType {
			content, _ = protowire.ConsumeBytes(val)
		}
		switch {
		case fd.IsList():
			var k int64
			switch {
			case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
				if typ != protowire.BytesType {
					continue
				}
				k = 1
			case typ == protowire.BytesType: // a packed list of scalars
				k = packedCount(fd.Kind(), content)
			default:
				k = 1
			}
			counts[num] += k
			if what, max := lim.of(f.limit); counts[num] > max {
				return &LimitError{What: what, Limit: max, Got: counts[num]}
			}
			if f.msg != nil {
				if err := scanWire(f.msg, content, lim); err != nil {
					return err
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if typ != protowire.BytesType {
				continue
			}
			if seen&(1<<num) != 0 {
				return fmt.Errorf("%w: %s appears more than once", ErrMalformed, fd.FullName())
			}
			seen |= 1 << num
			if err := scanWire(f.msg, content, lim); err != nil {
				return err
			}
		case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
			if typ != protowire.BytesType {
				continue
			}
			if what, max := lim.of(f.limit); int64(len(content)) > max {
				return &LimitError{What: what, Limit: max, Got: int64(len(content))}
			}
		}
	}
	return nil
}

// packedCount is the number of elements in a packed list of scalars of
// kind k (an upper bound if the list is malformed, which Unmarshal then
// reports).
func packedCount(k protoreflect.Kind, b []byte) int64 {
	switch k {
	case protoreflect.DoubleKind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return int64(len(b)+7) / 8
	case protoreflect.FloatKind, protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return int64(len(b)+3) / 4
	}
	var c int64 // varints: one per byte without the continuation bit
	for _, x := range b {
		if x < 0x80 {
			c++
		}
	}
	if len(b) > 0 && b[len(b)-1] >= 0x80 {
		c++
	}
	return c
}

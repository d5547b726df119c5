package graph

import (
	"bytes"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// TestDecodeLimitsBeforeParsing checks that lists are counted on the wire,
// before proto.Unmarshal would allocate them.
func TestDecodeLimitsBeforeParsing(t *testing.T) {
	lim := Limits{MaxNodes: 10, MaxInputs: 10, MaxAttrElements: 10, MaxRank: 3, MaxNameLen: 10, MaxAttrs: 2, MaxElements: 100}
	node := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	tag := protowire.AppendTag
	bytesField := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(tag(nil, num, protowire.BytesType), v)
	}
	graphOf := func(nodes ...[]byte) []byte {
		b := []byte{0x08, 0x01}
		for _, n := range nodes {
			b = append(b, bytesField(2, n)...)
		}
		return b
	}
	packed := func(n int) []byte { return bytes.Repeat([]byte{0x01}, n) }
	var unpackedInputs []byte
	for range 11 {
		unpackedInputs = protowire.AppendVarint(tag(unpackedInputs, 6, protowire.VarintType), 1)
	}
	ints := func(n int) []byte { return bytesField(1, packed(n)) }
	attr := func(num protowire.Number, v []byte) []byte { return bytesField(3, bytesField(num, v)) }
	tensorOf := func(shape []byte, data int) []byte {
		return node(bytesField(2, shape), bytesField(3, make([]byte, data)))
	}

	tests := []struct {
		name string
		b    []byte
		what string
	}{
		{"empty nodes", graphOf(slices.Repeat([][]byte{nil}, 11)...), "nodes"},
		{"packed inputs", graphOf(bytesField(6, packed(11))), "inputs"},
		{"unpacked inputs", graphOf(unpackedInputs), "inputs"},
		{"inputs split over two packed runs", graphOf(node(bytesField(6, packed(6)), bytesField(6, packed(5)))), "inputs"},
		{"node rank", graphOf(bytesField(5, packed(4))), "rank"},
		{"attributes", graphOf(node(bytesField(3, nil), bytesField(3, nil), bytesField(3, nil))), "attributes"},
		{"attribute ints", graphOf(attr(6, ints(11))), "attribute elements"},
		{"attribute shape", graphOf(attr(8, ints(11))), "attribute elements"},
		{"attribute axes", graphOf(attr(9, ints(11))), "attribute elements"},
		{"attribute floats", graphOf(attr(7, bytesField(1, make([]byte, 88)))), "attribute elements"},
		{"attribute string", graphOf(attr(5, make([]byte, 11))), "attribute elements"},
		{"attribute name", graphOf(attr(1, make([]byte, 11))), "name bytes"},
		{"node name", graphOf(bytesField(7, make([]byte, 11))), "name bytes"},
		{"kind", graphOf(bytesField(2, make([]byte, 11))), "name bytes"},
		{"value rank", graphOf(bytesField(9, tensorOf(packed(4), 8))), "rank"},
		{"value data", graphOf(bytesField(9, tensorOf(packed(1), 801))), "tensor bytes"},
		{"attribute tensor rank", graphOf(attr(10, tensorOf(packed(4), 8))), "rank"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := scanWire(wireGraph, tt.b, lim.orDefault())
			wantLimit(tt.what)(t, err)
			_, err = Decode(tt.b, lim)
			wantLimit(tt.what)(t, err)
		})
	}
}

// TestWireLimitsCoverSchema keeps wireLimits in step with the .proto file:
// every list, string and bytes field has a limit, and every limit names a
// field.
func TestWireLimitsCoverSchema(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		fds := md.Fields()
		for i := 0; i < fds.Len(); i++ {
			fd := fds.Get(i)
			if seen[fd.FullName()] {
				continue
			}
			seen[fd.FullName()] = true
			k := fd.Kind()
			if fd.IsList() || k == protoreflect.StringKind || k == protoreflect.BytesKind {
				require.NotEqualf(t, limNone, wireLimits[fd.FullName()], "field %s has no limit in wireLimits", fd.FullName())
			}
			if k == protoreflect.MessageKind {
				walk(fd.Message())
			}
		}
	}
	walk((&rookeryv1.Graph{}).ProtoReflect().Descriptor())
	for name := range wireLimits {
		require.Truef(t, seen[name], "wireLimits names %s, which is not in the schema", name)
	}
}

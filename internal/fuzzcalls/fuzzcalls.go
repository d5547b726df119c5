// Package fuzzcalls encodes sequences of gRPC calls as the bytes a fuzz
// target reads, so that the provider's and the seed node's handler fuzz
// targets share one format: for each call an op byte, a message count
// byte, then each message as a little-endian uint16 length and its bytes.
// It is for tests only.
package fuzzcalls

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Decode reads at most maxCalls calls from data: each call's op and its
// messages' bytes. Trailing bytes that do not make a call are ignored.
func Decode(data []byte, maxCalls int) (ops []byte, msgs [][][]byte) {
	for len(data) >= 2 && len(ops) < maxCalls {
		op, k := data[0], int(data[1]%8)
		data = data[2:]
		var ms [][]byte
		for i := 0; i < k && len(data) >= 2; i++ {
			n := min(int(binary.LittleEndian.Uint16(data)), len(data)-2)
			ms = append(ms, data[2:2+n])
			data = data[2+n:]
		}
		ops, msgs = append(ops, op), append(msgs, ms)
	}
	return ops, msgs
}

// Encode is the inverse of Decode, for a fuzz target's seed corpus: each
// call is its op byte followed by its messages.
func Encode(calls ...[]any) []byte {
	var out []byte
	for _, c := range calls {
		out = append(out, c[0].(byte), byte(len(c)-1))
		for _, m := range c[1:] {
			b, err := proto.Marshal(m.(proto.Message))
			if err != nil {
				panic(err)
			}
			out = binary.LittleEndian.AppendUint16(out, uint16(len(b)))
			out = append(out, b...)
		}
	}
	return out
}

// CheckStatus fails t unless err is nil, io.EOF, or a gRPC status with a
// code a handler means (never Unknown, which a raw error would give).
func CheckStatus(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil || errors.Is(err, io.EOF) {
		return
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.Unknown || st.Code() == codes.OK {
		t.Fatalf("%s returned %v (%T), not a gRPC status", what, err, err)
	}
}

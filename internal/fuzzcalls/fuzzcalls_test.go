package fuzzcalls

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestRoundTrip(t *testing.T) {
	a, b := wrapperspb.String("alpha"), wrapperspb.Int64(-7)
	data := Encode([]any{byte(3), a, b}, []any{byte(9)}, []any{byte(1), a})
	ops, msgs := Decode(data, 10)
	if !bytes.Equal(ops, []byte{3, 9, 1}) {
		t.Fatalf("ops %v, want [3 9 1]", ops)
	}
	if len(msgs[0]) != 2 || len(msgs[1]) != 0 || len(msgs[2]) != 1 {
		t.Fatalf("message counts %d %d %d, want 2 0 1", len(msgs[0]), len(msgs[1]), len(msgs[2]))
	}
	var got wrapperspb.Int64Value
	if err := proto.Unmarshal(msgs[0][1], &got); err != nil || got.Value != -7 {
		t.Fatalf("second message: %v, %v", got.Value, err)
	}
	if ops, _ := Decode(data, 2); len(ops) != 2 {
		t.Fatalf("maxCalls 2 gave %d calls", len(ops))
	}
	// A length beyond the data takes what is there.
	if _, msgs := Decode([]byte{1, 1, 0xff, 0xff, 'x'}, 1); len(msgs[0]) != 1 || string(msgs[0][0]) != "x" {
		t.Fatalf("short message: %q", msgs)
	}
}

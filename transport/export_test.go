package transport

import "google.golang.org/grpc/mem"

// DecodeMessage decodes b into v as the provider's gRPC codec does,
// including the frame reader's zero-copy frames, for the handler fuzz
// targets' fake streams.
func DecodeMessage(b []byte, v any) error {
	return newFrameCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, v)
}

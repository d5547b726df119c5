package transport

import "google.golang.org/grpc/mem"

// DecodeMessage decodes b into v as the provider's gRPC codec does,
// including the frame reader's zero-copy frames, for the handler fuzz
// targets' fake streams.
func DecodeMessage(b []byte, v any) error {
	return newFrameCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, v)
}

// WaitingStreams is the number of calls that wait on their requesters'
// next frame, for tests that move a fake clock past a stall.
func WaitingStreams(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for w := range s.streams {
		if w.waiting {
			n++
		}
	}
	return n
}

package transport

import (
	"context"

	"google.golang.org/grpc/mem"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

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

// Overclaim makes s's receipts claim flops more FLOPs than its sessions
// metered.
func Overclaim(s *Server, flops int64) { s.overclaim = func(w *work) { w.flops += flops } }

// HangReceipts makes s's Receipt calls wait until they are cancelled.
func HangReceipts(s *Server) {
	s.receiptHook = func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
}

// ProviderClient returns c's gRPC client, for tests that make raw calls.
func ProviderClient(c *Client) rookeryv1.ProviderClient { return c.pc }

// BreakRingWires closes the ring wire connections that the ring members
// on s send on, as a network that drops them would, and reports how many
// it closed; the members find out at their next round.
func BreakRingWires(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ss := range s.sessions {
		if m := ss.ring; m != nil {
			m.mu.Lock()
			if m.wire != nil {
				m.wire.conn.Close()
				n++
			}
			m.mu.Unlock()
		}
	}
	return n
}

package transport

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
)

// wireFrames encodes ring wire frames for the fuzzer's seeds: a round of
// the given segment sizes, then its end with count segments.
func wireFrames(round uint64, dt byte, sizes []int, count uint32) []byte {
	var b []byte
	b = append(b, wireBegin)
	b = binary.LittleEndian.AppendUint64(b, round)
	for _, n := range sizes {
		b = append(b, wireSegment, dt)
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		size := 4
		if dt == wireFloat64 {
			size = 8
		}
		b = append(b, bytes.Repeat([]byte{0x3f}, n*size)...)
	}
	b = append(b, wireEnd)
	return binary.LittleEndian.AppendUint32(b, count)
}

// FuzzRingWire feeds bytes from the network to a provider's ring wire,
// as the previous member of a ring: after a valid magic and hello (when
// the first input byte is even) or from the first byte on. The session's
// rounds 1 to 3 take what arrives. No input may panic the provider, take
// a segment of more than ringSegment elements, or keep the connection's
// reader running once the member has left its ring.
func FuzzRingWire(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	f.Add([]byte{0}, wireFrames(1, wireFloat32, []int{3, 5}, 2))
	f.Add([]byte{0}, append(wireFrames(1, wireFloat64, []int{4}, 1), wireFrames(2, wireFloat32, []int{1, 1, 1}, 3)...))
	f.Add([]byte{0}, wireFrames(2, wireFloat32, []int{2}, 7))
	f.Add([]byte{0}, wireFrames(1, 9, []int{2}, 1))
	f.Add([]byte{0}, []byte{wireSegment, wireFloat32, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0}, append(wireFrames(3, wireFloat32, []int{1}, 1), wireFrames(1, wireFloat32, []int{1}, 1)...))
	f.Add([]byte{1}, append([]byte(ringWireMagic), 3, 0, 's', 'i', 'd', 2, 0, 1, 2))
	f.Add([]byte{1}, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))

	// No janitor: the fuzzer's session has no executor session to close.
	srv := NewServer(exec.NewCPU(), WithBenchmark(0), WithLimits(Limits{IdleTimeout: -1, UnusedTimeout: -1, StreamIdleTimeout: -1}))
	if srv.reapEvery() != 0 {
		f.Fatal("the provider runs a janitor")
	}
	srv.ringWait = 20 * time.Millisecond // a hello with the wrong key waits no longer
	f.Cleanup(srv.Stop)
	hello := []byte(ringWireMagic)
	hello = binary.LittleEndian.AppendUint16(hello, 3)
	hello = append(hello, "sid"...)
	hello = binary.LittleEndian.AppendUint16(hello, uint16(len(key)))
	hello = append(hello, key...)

	f.Fuzz(func(t *testing.T, mode []byte, data []byte) {
		m := &ringMember{rank: 1, weights: []float64{0.5, 0.5}, key: key, changed: make(chan struct{}), bufs: newSegmentBuffers()}
		ss := &serverSession{id: "sid", ring: m}
		srv.mu.Lock()
		srv.sessions["sid"] = ss
		srv.mu.Unlock()
		defer func() {
			srv.mu.Lock()
			delete(srv.sessions, "sid")
			srv.mu.Unlock()
		}()
		in := data
		if len(mode) == 0 || mode[0]%2 == 0 {
			in = append(append([]byte{}, hello...), data...)
		}
		client, server := net.Pipe()
		served := make(chan struct{})
		go func() {
			defer close(served)
			srv.serveRingWire(server)
		}()
		go io.Copy(io.Discard, client) // the hello's reply and the rounds' acknowledgements
		go func() {
			client.Write(in)
			client.Close()
		}()
		// Rounds 1 to 3 take what arrives, each until nothing has come
		// for a moment.
		for round := uint64(1); round <= 3; round++ {
			inbox, end, err := m.begin(round)
			if err != nil {
				t.Fatal(err)
			}
		take:
			for {
				select {
				case seg := <-inbox:
					if n := seg.Shape().TotalSize(); n <= 0 || n > ringSegment || (seg.Dtype() != tensor.Float32 && seg.Dtype() != tensor.Float64) {
						t.Fatalf("a segment of %v × %d reached the round", seg.Dtype(), n)
					}
					m.bufs.put(seg)
				case <-served:
					break take
				case <-time.After(5 * time.Millisecond):
					break take
				}
			}
			end()
		}
		m.close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("the ring wire's reader still runs after its member left the ring")
		}
	})
}

// TestSegmentBuffersReuse: a segment's buffer comes back to the free list
// whatever the segment's length, and a buffer the list did not lend is
// left alone.
func TestSegmentBuffersReuse(t *testing.T) {
	b := newSegmentBuffers()
	for _, n := range []int{ringSegment, 1000, 1} {
		seg := b.get(tensor.Float32, []int{n})
		first := &seg.Data().([]float32)[0]
		b.put(seg)
		again := b.get(tensor.Float32, []int{7})
		if &again.Data().([]float32)[0] != first {
			t.Errorf("a segment of %d elements: its buffer was not used again", n)
		}
		b.put(again)
	}
	b.put(tensor.New(tensor.WithShape(3), tensor.WithBacking([]float32{1, 2, 3})))
	if got := len(b.f32.free); got != 1 {
		t.Errorf("%d free buffers after a foreign tensor was put, want 1", got)
	}
}

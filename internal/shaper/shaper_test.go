package shaper

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rookery-ml/rookery/internal/fakeclock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseLink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Link
	}{
		{"20mbit:50ms", Link{Rate: 20e6 / 8, Delay: 25 * time.Millisecond}},
		{"1gbit:1ms", Link{Rate: 1e9 / 8, Delay: 500 * time.Microsecond}},
		{"512kbit:0s", Link{Rate: 512e3 / 8}},
		{"8bit:2s", Link{Rate: 1, Delay: time.Second}},
	} {
		got, err := ParseLink(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLink(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "20mbit", "fast:1ms", "20mbps:1ms", "0mbit:1ms", "-1gbit:1ms", "1gbit:-1ms", "1gbit:soon"} {
		if _, err := ParseLink(in); !errors.Is(err, ErrLink) {
			t.Errorf("ParseLink(%q) error = %v, want ErrLink", in, err)
		}
	}
}

func TestScheduleRateAndDelay(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := schedule{link: Link{Rate: 1000, Delay: 100 * time.Millisecond}}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for i, tc := range []struct {
		arrive time.Time
		n      int
		want   time.Time
	}{
		{ms(0), 100, ms(200)},    // 100 ms to send, 100 ms to travel
		{ms(0), 100, ms(300)},    // queued behind the first
		{ms(50), 500, ms(800)},   // the link is free at 200 ms
		{ms(1000), 10, ms(1110)}, // idle link: sent at once
	} {
		if got := s.deliver(tc.arrive, tc.n); !got.Equal(tc.want) {
			t.Errorf("chunk %d: delivered at %v, want %v", i, got.Sub(t0), tc.want.Sub(t0))
		}
	}
	fast := schedule{link: Link{Delay: time.Millisecond}}
	if got := fast.deliver(t0, 1<<20); !got.Equal(ms(1)) {
		t.Errorf("unlimited rate: delivered at %v, want 1ms", got.Sub(t0))
	}
}

// stepReader hands the reader one slice at a time, and tells the test
// each time the reader asks for more.
type stepReader struct {
	reading chan struct{}
	in      chan []byte
}

func (r *stepReader) give(b []byte) {
	<-r.reading
	r.in <- b
}

func (r *stepReader) Read(b []byte) (int, error) {
	r.reading <- struct{}{}
	c, ok := <-r.in
	if !ok {
		return 0, io.EOF
	}
	return copy(b, c), nil
}

// recorder hands every write to the test.
type recorder chan []byte

func (r recorder) Write(b []byte) (int, error) {
	r <- append([]byte(nil), b...)
	return len(b), nil
}

func TestCopyWaitsForTheLink(t *testing.T) {
	clk := fakeclock.New(time.Unix(0, 0))
	src := &stepReader{reading: make(chan struct{}), in: make(chan []byte)}
	out := make(recorder, 4)
	var count atomic.Int64
	done := make(chan error, 1)
	go func() { done <- Copy(out, src, Link{Rate: 1000, Delay: 100 * time.Millisecond}, clk, &count) }()

	first, second := bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 100)
	src.give(first)
	src.give(second)
	<-src.reading // both are stamped at time 0 and queued
	clk.BlockUntil(1)
	clk.Advance(199 * time.Millisecond)
	if len(out) != 0 || count.Load() != 0 {
		t.Fatalf("%d bytes delivered before 200 ms", count.Load())
	}
	clk.Advance(time.Millisecond)
	if got := <-out; !bytes.Equal(got, first) {
		t.Fatalf("first delivery = %v, want the first chunk", got)
	}
	clk.BlockUntil(1) // the second waits for the link: 100 ms more
	clk.Advance(99 * time.Millisecond)
	if len(out) != 0 {
		t.Fatal("second chunk delivered before 300 ms")
	}
	clk.Advance(time.Millisecond)
	if got := <-out; !bytes.Equal(got, second) {
		t.Fatalf("second delivery = %v, want the second chunk", got)
	}
	close(src.in)
	if err := <-done; err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if got := count.Load(); got != 200 {
		t.Errorf("counted %d bytes, want 200", got)
	}
}

func TestCopyStopsOnWriteError(t *testing.T) {
	src, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Copy(failWriter{}, src, Link{}, nil, nil) }()
	w.Write([]byte("x"))
	go io.Copy(w, bytes.NewReader(make([]byte, 1<<20))) // more than the queue: the reader must stop
	if err := <-done; !errors.Is(err, errBroken) {
		t.Errorf("Copy error = %v, want errBroken", err)
	}
	w.Close()
}

var errBroken = errors.New("broken")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errBroken }

// TestProxyForwards sends bytes both ways through a proxy on loopback and
// checks they arrive whole, in order and counted.
func TestProxyForwards(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // echo one connection
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	p, err := Listen("127.0.0.1:0", ln.Addr().String(), Link{Rate: 1e9 / 8})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 1<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	go func() { c.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	c.Close()
	p.Close() // waits for the proxy's goroutines, which count
	if !bytes.Equal(got, msg) {
		t.Fatal("echoed bytes differ")
	}
	if up, down := p.Bytes(); up != int64(len(msg)) || down != int64(len(msg)) {
		t.Errorf("Bytes() = %d up, %d down; want %d each", up, down, len(msg))
	}
}

func TestProxyCloseEndsConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	p, err := Listen("127.0.0.1:0", ln.Addr().String(), Link{Delay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted // the proxy has dialled the target
	defer s.Close()
	p.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("read from a closed proxy succeeded")
	}
}

// TestCopyReturnsWhileReaderWaits: when a write fails after the reader
// has queued all that src had and waits on src for more, Copy returns
// the write's error rather than waiting for a reader that waits for
// input (it did, and a test run hung on a loaded machine).
func TestCopyReturnsWhileReaderWaits(t *testing.T) {
	src, w := io.Pipe()
	defer w.Close()
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Copy(gateWriter{release}, src, Link{}, nil, nil) }()
	// The pipe's write returns once the reader has read it all into the
	// queue, while the first chunk's write waits.
	if _, err := w.Write(make([]byte, 4*chunkBytes)); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case err := <-done:
		if !errors.Is(err, errBroken) {
			t.Errorf("Copy error = %v, want errBroken", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Copy still waits a minute after its write failed")
	}
}

// gateWriter's writes wait until release is closed, then fail.
type gateWriter struct{ release chan struct{} }

func (g gateWriter) Write([]byte) (int, error) {
	<-g.release
	return 0, errBroken
}

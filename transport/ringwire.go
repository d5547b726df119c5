package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/graph"
)

// The ring wire: rings' data plane without gRPC.
//
// Where both providers allow it, a ring member sends its rounds' segments
// on one long-lived connection to the next member's provider rather than
// on a RingPass stream per round. The connection comes to the provider's
// own listening address and is told apart from gRPC by its first byte
// (the 'R' of the eight-byte ringWireMagic begins neither HTTP/2's
// preface nor a TLS record). It is then secured with the provider's credentials
// (WithCredentials; clear text without them, as the gRPC service is) and
// admitted by a hello that names the session and carries the ring key,
// checked like RingPass's header. After the hello every segment is a
// six-byte header and the tensor's own bytes, written from the gradients'
// memory and read straight into a segment buffer: no HTTP/2 frames, no
// protobuf, no flow-control window, and less of the provider's CPU per
// byte than a RingPass stream (bench/scale/RESULTS.md, "the ring wire").
//
// After the magic and the credentials' handshake, client to server:
//
//	hello    u16 n, session id (n ≤ 128); u16 n, key (16 ≤ n ≤ 64)
//
// server to client: one byte, 0 when admitted, else 1 followed by u16 n
// and a reason of n bytes (the server then closes). Then, client to
// server, frames:
//
//	'B' u64 round                a round begins: the segments that follow are its
//	'S' u8 dtype u32 n, data     a segment of n ≤ ringSegment elements; dtype 1 is
//	                             float32, 2 float64; n·size bytes of data
//	'E' u32 count                the round's segments are all sent; count of them
//
// and after each 'E' the server answers one byte, 0, once every segment
// of the round has been taken by the round. Integers are little-endian;
// data is the tensors' memory, as on the gRPC path (little-endian hosts
// only: graph.TensorMemory). Any malformed frame, a segment the round did
// not expect, or a count that does not match closes the connection; the
// member then sends its next rounds on RingPass streams.

// ringWireMagic begins every ring wire connection.
const ringWireMagic = "RKRWIRE1"

// Frame kinds on the ring wire.
const (
	wireBegin   = 'B'
	wireSegment = 'S'
	wireEnd     = 'E'
)

// Data types on the ring wire.
const (
	wireFloat32 = 1
	wireFloat64 = 2
)

// bounds of the ring wire
const (
	maxWireSession = 128
	maxWireReason  = 256
	// maxWirePending bounds the connections waiting to be admitted.
	maxWirePending = 64
	// sniffWait bounds how long the listener waits for a connection's
	// first bytes before it hands it to gRPC, which applies its own
	// handshake timeout.
	sniffWait = 10 * time.Second
)

// WireError is what a ring wire connection failed on: the hello was
// refused, or a frame was malformed.
type WireError struct {
	Reason string
}

func (e *WireError) Error() string { return "transport: ring wire: " + e.Reason }

// Is makes a WireError match ErrProtocol.
func (e *WireError) Is(target error) bool { return target == ErrProtocol }

func wireErrorf(format string, a ...any) error { return &WireError{Reason: fmt.Sprintf(format, a...)} }

// WithCredentials serves the Provider service, and the ring wire, with
// creds (TLS, mTLS): use it rather than WithServerOptions(grpc.Creds(…)),
// which the ring wire cannot see (a server given credentials only that
// way serves rings on RingPass streams alone).
func WithCredentials(creds credentials.TransportCredentials) ServerOption {
	return func(c *serverConfig) { c.creds = creds }
}

// WithoutRingWire makes the server neither accept nor dial ring wire
// connections: its rings pass their segments on RingPass streams.
func WithoutRingWire() ServerOption { return func(c *serverConfig) { c.noRingWire = true } }

// ringWireServed reports whether s accepts ring wire connections: not
// with WithoutRingWire, nor where gRPC options the wire cannot see may
// secure the gRPC service.
func (s *Server) ringWireServed() bool {
	return !s.cfg.noRingWire && (s.cfg.creds != nil || len(s.cfg.grpcOpts) == 0)
}

// wireMux is a listener that hands ring wire connections to serve and
// every other connection to gRPC, its caller.
type wireMux struct {
	net.Listener
	serve func(net.Conn)
	conns chan net.Conn
	done  chan struct{}
	err   error // why Accept failed; set before done closes

	mu      sync.Mutex
	pending map[net.Conn]struct{} // connections being sniffed
}

func newWireMux(l net.Listener, serve func(net.Conn)) *wireMux {
	m := &wireMux{Listener: l, serve: serve, conns: make(chan net.Conn), done: make(chan struct{}), pending: make(map[net.Conn]struct{})}
	go m.run()
	return m
}

// run accepts connections until the listener fails for good, retrying a
// temporary failure (too many open files) after a growing pause, as
// gRPC's own Serve does.
func (m *wireMux) run() {
	var pause time.Duration
	for {
		c, err := m.Listener.Accept()
		if err != nil {
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(pause):
					continue
				case <-m.done:
				}
			}
			m.err = err
			m.mu.Lock()
			close(m.done)
			for c := range m.pending {
				c.Close()
			}
			m.mu.Unlock()
			return
		}
		pause = 0
		m.mu.Lock()
		m.pending[c] = struct{}{}
		m.mu.Unlock()
		go m.sniff(c)
	}
}

// sniff reads (or peeks at) a connection's first bytes and hands it on.
func (m *wireMux) sniff(raw net.Conn) {
	ring, c, err := sniffRingWire(raw)
	m.mu.Lock()
	delete(m.pending, raw)
	m.mu.Unlock()
	switch {
	case err != nil:
		c.Close()
	case ring:
		m.serve(c)
	default:
		select {
		case m.conns <- c:
		case <-m.done:
			c.Close()
		}
	}
}

// Accept returns the next connection that is not a ring wire one.
func (m *wireMux) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, m.err
	}
}

// sniffRingWire tells whether c may be a ring wire connection: whether
// its first byte is the magic's ('R', which begins neither HTTP/2's
// preface nor a TLS record; serveRingWire checks the rest). A TCP
// connection is peeked at, so that gRPC gets it untouched; any other
// comes back wrapped so that the byte read is read again. A connection
// that sends nothing within sniffWait goes to gRPC, which applies its
// own handshake timeout.
func sniffRingWire(c net.Conn) (bool, net.Conn, error) {
	c.SetReadDeadline(time.Now().Add(sniffWait))
	defer c.SetReadDeadline(time.Time{})
	first, err := peekFirst(c)
	if errors.Is(err, errPeekUnsupported) {
		var b [1]byte
		if _, err = io.ReadFull(c, b[:]); err == nil {
			first, c = b[0], &prefixConn{Conn: c, prefix: b[:]}
		}
	}
	switch {
	case err == nil:
		return first == ringWireMagic[0], c, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, c, nil
	}
	return false, c, err
}

// errPeekUnsupported: the connection is not a socket that can be peeked at.
var errPeekUnsupported = errors.New("peek unsupported")

// peekFirst returns the first byte of a TCP connection without taking it
// from the connection, waiting for it until the read deadline.
func peekFirst(c net.Conn) (byte, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, errPeekUnsupported
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, errPeekUnsupported
	}
	var b [1]byte
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		k, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		switch {
		case e == syscall.EAGAIN:
			return false
		case e != nil:
			rerr = e
		case k == 0:
			rerr = io.EOF
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return b[0], err
}

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// serveRingWire serves one ring wire connection, from its magic on.
func (s *Server) serveRingWire(raw net.Conn) {
	defer raw.Close()
	if !s.trackWire(raw) {
		return
	}
	defer s.untrackWire(raw)
	select {
	case s.wirePending <- struct{}{}:
	default:
		return
	}
	admitted := sync.OnceFunc(func() { <-s.wirePending }) // frees the slot, once
	defer admitted()
	raw.SetDeadline(time.Now().Add(2 * s.ringWait))
	var magic [len(ringWireMagic)]byte
	if _, err := io.ReadFull(raw, magic[:]); err != nil || string(magic[:]) != ringWireMagic {
		return
	}
	conn := raw
	if creds := s.cfg.creds; creds != nil {
		c, _, err := creds.ServerHandshake(raw)
		if err != nil {
			s.log.Debug("ring wire handshake", "remote", raw.RemoteAddr().String(), "err", err)
			return
		}
		// Closing raw (closeAll does) ends conn too.
		conn = c
		defer conn.Close()
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	session, key, err := readWireHello(br)
	if err != nil {
		writeWireRefusal(conn, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(s.stopCtx)
	defer cancel()
	ss, m := s.memberFor(ctx, session, key, true)
	if m == nil {
		writeWireRefusal(conn, "no ring of this provider has that session and key")
		return
	}
	if !m.addInbound(conn, cancel) {
		writeWireRefusal(conn, "the session left its ring")
		return
	}
	admitted()
	conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte{0}); err != nil {
		return
	}
	if err := s.readRingWire(ctx, ss, m, br, conn); err != nil && ctx.Err() == nil {
		s.log.Debug("ring wire closed", "session", ss.id, "err", err)
	}
}

// readWireHello reads a hello.
func readWireHello(r io.Reader) (session string, key []byte, err error) {
	field := func(what string, lo, hi int) ([]byte, error) {
		var n [2]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, err
		}
		k := int(binary.LittleEndian.Uint16(n[:]))
		if k < lo || k > hi {
			return nil, wireErrorf("%s of %d bytes (%d to %d)", what, k, lo, hi)
		}
		b := make([]byte, k)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	sid, err := field("session id", 1, maxWireSession)
	if err != nil {
		return "", nil, err
	}
	key, err = field("key", 16, maxRingKey)
	if err != nil {
		return "", nil, err
	}
	return string(sid), key, nil
}

// writeWireRefusal tells a client why it is refused; the caller closes.
func writeWireRefusal(w io.Writer, reason string) {
	if len(reason) > maxWireReason {
		reason = reason[:maxWireReason]
	}
	b := make([]byte, 3, 3+len(reason))
	b[0] = 1
	binary.LittleEndian.PutUint16(b[1:], uint16(len(reason)))
	w.Write(append(b, reason...))
}

// readRingWire feeds the frames of an admitted connection to m's rounds
// until the connection ends or fails.
func (s *Server) readRingWire(ctx context.Context, ss *serverSession, m *ringMember, br *bufio.Reader, w io.Writer) error {
	var inbox chan<- *tensor.Dense
	var ended <-chan struct{}
	var round uint64
	var count uint32
	var hdr [8]byte
	for {
		kind, err := br.ReadByte()
		if err != nil {
			return err
		}
		switch kind {
		case wireBegin:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return err
			}
			if inbox != nil {
				return wireErrorf("round %d began before round %d ended", binary.LittleEndian.Uint64(hdr[:]), round)
			}
			round, count = binary.LittleEndian.Uint64(hdr[:]), 0
			if inbox, ended, err = m.attach(ctx, round); err != nil {
				return err
			}
		case wireSegment:
			if _, err := io.ReadFull(br, hdr[:5]); err != nil {
				return err
			}
			if inbox == nil {
				return wireErrorf("a segment outside a round")
			}
			var dt tensor.Dtype
			switch hdr[0] {
			case wireFloat32:
				dt = tensor.Float32
			case wireFloat64:
				dt = tensor.Float64
			default:
				return wireErrorf("segment of data type %d", hdr[0])
			}
			n := binary.LittleEndian.Uint32(hdr[1:5])
			if n == 0 || n > ringSegment {
				return &LimitError{What: "ring segment elements", Limit: ringSegment, Got: int64(n)}
			}
			t := m.bufs.get(dt, []int{int(n)})
			b, ok := graph.TensorMemory(t)
			if !ok {
				return wireErrorf("a segment this host cannot receive")
			}
			if _, err := io.ReadFull(br, b); err != nil {
				return err
			}
			s.metrics.bytesIn.Add(float64(len(b)))
			s.count(ss, func(w *work) { w.bytesIn += int64(len(b)) })
			select {
			case inbox <- t:
				count++
			case <-ended:
				return wireErrorf("round %d ended before its segments did", round)
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		case wireEnd:
			if _, err := io.ReadFull(br, hdr[:4]); err != nil {
				return err
			}
			if inbox == nil {
				return wireErrorf("the end of a round that did not begin")
			}
			if got := binary.LittleEndian.Uint32(hdr[:4]); got != count {
				return wireErrorf("round %d: %d segments sent, %d received", round, got, count)
			}
			inbox, ended = nil, nil
			if _, err := w.Write([]byte{0}); err != nil {
				return err
			}
		default:
			return wireErrorf("frame of kind %d", kind)
		}
	}
}

// ringWire is a member's connection to the next member's provider.
type ringWire struct {
	mu   sync.Mutex // held by the round sending on it
	conn net.Conn
	hdr  [9]byte
}

// dialRingWire connects to the ring wire of the provider at addr, with
// cfg's dialer and credentials, and presents session and key.
func dialRingWire(ctx context.Context, cfg dialConfig, addr, session string, key []byte) (*ringWire, error) {
	if _, ok := graph.TensorMemory(tensor.New(tensor.WithShape(1), tensor.WithBacking([]float32{0}))); !ok {
		return nil, wireErrorf("this host's tensors are not in the wire's byte order")
	}
	if len(session) > maxWireSession || len(key) > maxRingKey {
		return nil, wireErrorf("a session id or key too long")
	}
	if cfg.dialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.dialTimeout)
		defer cancel()
	}
	dial := cfg.dialer
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	raw, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*ringWire, error) {
		raw.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	if _, err := io.WriteString(raw, ringWireMagic); err != nil {
		return fail(err)
	}
	conn, _, err := cfg.creds.ClientHandshake(ctx, addr, raw)
	if err != nil {
		return fail(err)
	}
	hello := make([]byte, 0, 4+len(session)+len(key))
	hello = binary.LittleEndian.AppendUint16(hello, uint16(len(session)))
	hello = append(hello, session...)
	hello = binary.LittleEndian.AppendUint16(hello, uint16(len(key)))
	hello = append(hello, key...)
	if _, err := conn.Write(hello); err != nil {
		conn.Close()
		return fail(err)
	}
	var reply [3]byte
	if _, err := io.ReadFull(conn, reply[:1]); err != nil {
		conn.Close()
		return fail(err)
	}
	if reply[0] != 0 {
		reason := "refused"
		if _, err := io.ReadFull(conn, reply[1:3]); err == nil {
			b := make([]byte, min(int(binary.LittleEndian.Uint16(reply[1:3])), maxWireReason))
			if _, err := io.ReadFull(conn, b); err == nil {
				reason = string(b)
			}
		}
		conn.Close()
		return fail(wireErrorf("%s refused the connection: %.256q", addr, reason))
	}
	if !stop() {
		conn.Close()
		return nil, context.Cause(ctx)
	}
	conn.SetDeadline(time.Time{})
	return &ringWire{conn: conn}, nil
}

// wirePass sends one round's segments on a ring wire; it holds the wire
// until close.
type wirePass struct {
	w     *ringWire
	stop  func() bool // stops the context's watch on the connection
	count uint32
}

// open begins round on w: the next member's reader attaches to it.
func (w *ringWire) open(ctx context.Context, round uint64) (*wirePass, error) {
	w.mu.Lock()
	p := &wirePass{w: w, stop: context.AfterFunc(ctx, func() { w.conn.SetDeadline(time.Unix(1, 0)) })}
	w.hdr[0] = wireBegin
	binary.LittleEndian.PutUint64(w.hdr[1:], round)
	if _, err := w.conn.Write(w.hdr[:9]); err != nil {
		p.stop()
		w.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// send writes t, one segment, from its own memory.
func (p *wirePass) send(t *tensor.Dense) (int64, error) {
	b, ok := graph.TensorMemory(t)
	var dt byte
	switch t.Dtype() {
	case tensor.Float32:
		dt = wireFloat32
	case tensor.Float64:
		dt = wireFloat64
	}
	n := t.Shape().TotalSize()
	if !ok || dt == 0 || n <= 0 || n > ringSegment {
		return 0, wireErrorf("a segment of %v × %d the wire cannot carry", t.Dtype(), n)
	}
	h := p.w.hdr[:6]
	h[0], h[1] = wireSegment, dt
	binary.LittleEndian.PutUint32(h[2:], uint32(n))
	bufs := net.Buffers{h, b}
	if _, err := bufs.WriteTo(p.w.conn); err != nil {
		return 0, err
	}
	p.count++
	return int64(len(b)), nil
}

// close ends the round: it sends the count and waits until the next
// member has taken every segment. The pass no longer holds the wire.
func (p *wirePass) close() error {
	defer p.w.mu.Unlock()
	h := p.w.hdr[:5]
	h[0] = wireEnd
	binary.LittleEndian.PutUint32(h[1:], p.count)
	_, err := p.w.conn.Write(h)
	if err == nil {
		var ack [1]byte
		if _, err = io.ReadFull(p.w.conn, ack[:]); err == nil && ack[0] != 0 {
			err = wireErrorf("round ended with %d", ack[0])
		}
	}
	if !p.stop() && err == nil {
		// The context ended as the round did: the connection's deadline
		// is spent.
		err = context.Canceled
	}
	return err
}

// abort gives the wire up after a round that failed part-way.
func (p *wirePass) abort() {
	p.stop()
	p.w.conn.Close()
	p.w.mu.Unlock()
}

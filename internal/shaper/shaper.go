package shaper

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrLink marks a link description that ParseLink cannot read.
var ErrLink = errors.New("shaper: invalid link")

// Link is an emulated network link, the same in both directions.
type Link struct {
	// Rate is the most bytes per second each direction sends; 0 is no
	// limit.
	Rate float64
	// Delay is the one-way delay every byte takes once sent.
	Delay time.Duration
}

// ParseLink reads RATE:RTT, for example 20mbit:50ms or 1gbit:1ms: RATE is
// a number with the unit bit, kbit, mbit or gbit (per second, powers of
// ten), RTT a time.Duration; each direction gets the rate and half the
// round-trip time as its delay.
func ParseLink(s string) (Link, error) {
	rate, rtt, ok := strings.Cut(s, ":")
	if !ok {
		return Link{}, fmt.Errorf("%w: %q is not RATE:RTT", ErrLink, s)
	}
	units := []struct {
		suffix string
		bits   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	bits := math.NaN()
	low := strings.ToLower(rate)
	for _, u := range units {
		if n, ok := strings.CutSuffix(low, u.suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err == nil {
				bits = v * u.bits
			}
			break
		}
	}
	if !(bits > 0) || math.IsInf(bits, 0) {
		return Link{}, fmt.Errorf("%w: rate %q is not a positive number of bit, kbit, mbit or gbit", ErrLink, rate)
	}
	d, err := time.ParseDuration(rtt)
	if err != nil || d < 0 {
		return Link{}, fmt.Errorf("%w: round-trip time %q is not a duration of at least 0", ErrLink, rtt)
	}
	return Link{Rate: bits / 8, Delay: d / 2}, nil
}

// String writes the link as ParseLink reads it.
func (l Link) String() string {
	return fmt.Sprintf("%gmbit:%v", l.Rate*8/1e6, 2*l.Delay)
}

// Clock is the time a proxy reads and waits on (transport.Clock has the
// same methods).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// schedule gives chunks their delivery times on one direction of a link.
type schedule struct {
	link Link
	free time.Time // when the link has sent everything before
}

// deliver returns when a chunk of n bytes that arrived at arrive reaches
// the far end: the link sends it once it has sent the chunks before it,
// at link.Rate, and it then travels for link.Delay. Delivery times never
// decrease, so chunks keep their order.
func (s *schedule) deliver(arrive time.Time, n int) time.Time {
	start := arrive
	if s.free.After(start) {
		start = s.free
	}
	if s.link.Rate > 0 {
		start = start.Add(time.Duration(float64(n) / s.link.Rate * float64(time.Second)))
	}
	s.free = start
	return start.Add(s.link.Delay)
}

// chunkBytes is the most one read takes: small enough that a chunk is a
// short burst on the slowest link benchmarked (16 KiB at 20 Mbit/s: 6.6
// ms), large enough to keep loopback fast.
const chunkBytes = 16 << 10

// queued bounds the chunks in flight on one direction; a full queue stops
// reading, so a slow link pushes back on its sender like TCP would.
const queued = 512

type chunk struct {
	b  []byte
	at time.Time
}

// Copy copies src to dst through one direction of the link until src
// ends or either fails, adding the bytes it wrote to *count when count is
// not nil. It returns nil at the end of src.
func Copy(dst io.Writer, src io.Reader, l Link, clk Clock, count *atomic.Int64) error {
	if clk == nil {
		clk = systemClock{}
	}
	q := make(chan chunk, queued)
	stop := make(chan struct{})
	var readErr error
	go func() {
		defer close(q)
		s := schedule{link: l}
		for {
			b := make([]byte, chunkBytes)
			n, err := src.Read(b)
			if n > 0 {
				c := chunk{b: b[:n], at: s.deliver(clk.Now(), n)}
				select {
				case q <- c:
				case <-stop:
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
		}
	}()
	for c := range q {
		if d := c.at.Sub(clk.Now()); d > 0 {
			<-clk.After(d)
		}
		n, err := dst.Write(c.b)
		if count != nil {
			count.Add(int64(n))
		}
		if err != nil {
			// The reader stops at its next chunk. It may be waiting on
			// src for one, which ends when the caller closes src: Copy
			// does not wait for that.
			close(stop)
			return err
		}
	}
	return readErr
}

// Option configures Listen.
type Option func(*Proxy)

// WithClock makes the proxy read and wait on clk (default: the real
// time).
func WithClock(clk Clock) Option { return func(p *Proxy) { p.clk = clk } }

// Proxy forwards every TCP connection it accepts to its target through
// an emulated link.
type Proxy struct {
	ln     net.Listener
	target string
	link   Link
	clk    Clock
	up     atomic.Int64 // bytes written towards the target
	down   atomic.Int64 // bytes written back to the dialer
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen opens a proxy on addr (such as 127.0.0.1:0) in front of target.
func Listen(addr, target string, l Link, opts ...Option) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, link: l, clk: systemClock{}, conns: map[net.Conn]struct{}{}}
	for _, o := range opts {
		o(p)
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Bytes returns the bytes forwarded so far towards the target (up) and
// back (down).
func (p *Proxy) Bytes() (up, down int64) { return p.up.Load(), p.down.Load() }

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// track adds c to the connections Close closes; it reports false, having
// closed c, once the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forget(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				p.forget(in)
				return
			}
			if !p.track(out) {
				p.forget(in)
				return
			}
			var done sync.WaitGroup
			done.Add(2)
			go func() {
				defer done.Done()
				Copy(out, in, p.link, p.clk, &p.up)
				p.forget(in, out) // one side ended: end the connection
			}()
			go func() {
				defer done.Done()
				Copy(in, out, p.link, p.clk, &p.down)
				p.forget(in, out)
			}()
			done.Wait()
		}()
	}
}

package transport

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Rings: the sessions of one part in every replica, each on its own
// provider, sum their gradients among themselves (exec.RingSession).
//
// A requester places each session in its ring with JoinRing: its rank,
// every member's weight, the gradients' names, the ring's key (32 random
// bytes) and the next member's provider and session. The provider dials
// the next member's provider with the dial options it was given
// (WithPeerDialOptions; clear text to loopback only by default) and checks
// with a probe that the next member answers for the key.
//
// A round (AllReduce) flattens the gradients into one vector of n
// elements, cut into r chunks, and passes them around the ring in
// segments of at most ringSegment elements, on one RingPass stream to the
// next member:
//
//   - reduce-scatter, steps s = 0 … r−2: member i sends chunk (i−s) mod r,
//     its own weighted gradient at s = 0 and afterwards the partial sum it
//     has just formed; it receives chunk (i−s−1) mod r and adds its own
//     weighted gradient to it. After step r−2 it holds the whole sum of
//     chunk (i+1) mod r.
//   - all-gather, steps s = 0 … r−2: member i sends chunk (i+1−s) mod r,
//     complete, and receives chunk (i−s) mod r, complete.
//
// Every segment is sent on as soon as it has been added, so the steps
// overlap. Each element's sum is formed once, by the same additions in the
// same order for every member (partial sums in the gradients' dtype,
// rounded after each addition), and then copied, so all members
// end with bit-identical sums. Each member sends and receives 2·(r−1)/r of
// the gradients' bytes; the requester none.
//
// RingPass is not a requester's call: the provider admits it by the ring
// key it carries (RingKeyHeader), compared in constant time, and not by
// token or lease. A stream that presents no member's key is refused before
// any segment is read; segments larger than a ring segment are refused.

// RingKeyHeader is the metadata header that carries a ring's key, in
// standard base64, on RingPass calls between providers.
const RingKeyHeader = "rookery-ring-key"

// ringSegment is the most elements one segment carries: 1 MiB of float32.
const ringSegment = 1 << 18

// segmentBuffers are a ring member's free segment buffers: RingPass
// receives every segment into one, and the round hands it back once it
// has taken the segment in. A round holds at most the inbox's segments
// and the one being read at a time, so a few buffers go round.
type segmentBuffers struct {
	f32 chan []float32
	f64 chan []float64
}

func newSegmentBuffers() *segmentBuffers {
	return &segmentBuffers{f32: make(chan []float32, 8), f64: make(chan []float64, 8)}
}

// get returns a tensor of a free buffer (or a new one) for a received
// segment, or nil for anything but a float vector of at most ringSegment
// elements.
func (b *segmentBuffers) get(dt tensor.Dtype, shape []int) *tensor.Dense {
	if len(shape) != 1 || shape[0] > ringSegment || shape[0] <= 0 {
		return nil
	}
	switch dt {
	case tensor.Float32:
		var buf []float32
		select {
		case buf = <-b.f32:
		default:
			buf = make([]float32, ringSegment)
		}
		return tensor.New(tensor.WithShape(shape[0]), tensor.WithBacking(buf[:shape[0]]))
	case tensor.Float64:
		var buf []float64
		select {
		case buf = <-b.f64:
		default:
			buf = make([]float64, ringSegment)
		}
		return tensor.New(tensor.WithShape(shape[0]), tensor.WithBacking(buf[:shape[0]]))
	}
	return nil
}

// put hands a segment's buffer back.
func (b *segmentBuffers) put(t *tensor.Dense) {
	switch d := t.Data().(type) {
	case []float32:
		if cap(d) == ringSegment {
			select {
			case b.f32 <- d[:ringSegment]:
			default:
			}
		}
	case []float64:
		if cap(d) == ringSegment {
			select {
			case b.f64 <- d[:ringSegment]:
			default:
			}
		}
	}
}

// ringPassMethod is the full name of the providers' RingPass call.
var ringPassMethod = rookeryv1.Provider_RingPass_FullMethodName

// limits on JoinRing's fields
const (
	maxRingMembers = 1024
	maxRingNames   = 1 << 16
	maxRingAddress = 1024
	maxRingKey     = 64
)

// DefaultPeerDialTimeout bounds how long JoinRing waits for the next
// member's provider to answer, unless WithPeerDialOptions sets a dial
// timeout: past it the requester sums those gradients itself.
const DefaultPeerDialTimeout = 5 * time.Second

// WithPeerDialOptions sets how the provider dials the other providers of
// a ring (exec.RingSession): their credentials (TLS, a transport/p2p
// dialer) and timeouts. Without it, the provider dials in clear text, and
// only to loopback addresses (any other is refused with ErrInsecure, and
// the requester then sums those gradients itself).
func WithPeerDialOptions(opts ...DialOption) ServerOption {
	return func(c *serverConfig) { c.peerDial = append(c.peerDial, opts...) }
}

// ringMember is a session's place in a ring, on the provider.
type ringMember struct {
	rank        int
	weights     []float64
	names       []string
	key         []byte
	nextAddr    string
	nextSession string
	cc          *grpc.ClientConn         // to the next member's provider, set
	pc          rookeryv1.ProviderClient // once it answered (guarded by mu)

	mu      sync.Mutex
	closed  bool               // the session closed or joined another ring
	last    uint64             // the last round begun
	inbox   chan *tensor.Dense // round last's segments; nil between rounds
	ended   chan struct{}      // closed when round last ends
	passing bool               // a RingPass stream feeds round last
	changed chan struct{}      // closed (and replaced) when a round begins
	bufs    *segmentBuffers
}

func (m *ringMember) close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.closed = true
	cc := m.cc
	m.mu.Unlock()
	if cc != nil {
		cc.Close()
	}
}

// ringJoinedLocked wakes the ring probes waiting for a session to join
// its ring; s.mu is held.
func (s *Server) ringJoinedLocked() {
	if s.ringJoined != nil {
		close(s.ringJoined)
	}
	s.ringJoined = make(chan struct{})
}

// ringWait bounds how long a probe waits for its session to join the ring
// it names: the members join at the same time.
const ringWait = 5 * time.Second

// memberFor returns the ring member of session id whose key is key. A
// probe (wait) for an open session that has not joined that ring yet
// waits for it, at most ringWait.
func (s *Server) memberFor(ctx context.Context, id string, key []byte, wait bool) (*serverSession, *ringMember) {
	deadline := time.NewTimer(ringWait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ss, ok := s.sessions[id]
		if !ok || ss.closed || len(key) == 0 {
			s.mu.Unlock()
			return nil, nil
		}
		if m := ss.ring; m != nil && subtle.ConstantTimeCompare(key, m.key) == 1 {
			s.mu.Unlock()
			return ss, m
		}
		if s.ringJoined == nil {
			s.ringJoined = make(chan struct{})
		}
		joined := s.ringJoined
		s.mu.Unlock()
		if !wait {
			return nil, nil
		}
		select {
		case <-joined:
		case <-deadline.C:
			return nil, nil
		case <-ctx.Done():
			return nil, nil
		}
	}
}

// ringOf returns the ring of session ss, or nil.
func (s *Server) ringOf(ss *serverSession) *ringMember {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ss.ring
}

// JoinRing implements the Provider service.
func (s *Server) JoinRing(ctx context.Context, req *rookeryv1.JoinRingRequest) (_ *rookeryv1.JoinRingResponse, err error) {
	defer s.metrics.observe("join_ring", time.Now(), &err)
	ss, err := s.acquire(ctx, req.Session)
	if err != nil {
		return nil, toStatus(err)
	}
	defer s.release(ss)
	m, err := checkJoin(req)
	if err != nil {
		return nil, toStatus(err)
	}
	// The member is in place before it checks the next one, which may be
	// checking this one at the same time.
	s.mu.Lock()
	if ss.closed {
		s.mu.Unlock()
		return nil, toStatus(fmt.Errorf("%w: session %s was closed during the call", exec.ErrClosed, ss.id))
	}
	old := ss.ring
	ss.ring = m
	s.ringJoinedLocked()
	s.mu.Unlock()
	old.close()
	cfg := newDialConfig(append([]DialOption{WithDialTimeout(DefaultPeerDialTimeout)}, s.cfg.peerDial...))
	key := base64.StdEncoding.EncodeToString(m.key)
	cc, err := cfg.dial(ctx, m.nextAddr, "ring peer", func(ctx context.Context, cc *grpc.ClientConn) error {
		return probeRing(ctx, rookeryv1.NewProviderClient(cc), key, m.nextSession)
	})
	if err != nil {
		s.mu.Lock()
		if ss.ring == m {
			ss.ring = nil
		}
		s.mu.Unlock()
		return nil, toStatus(&exec.SpecError{Part: ss.part, Node: -1, Reason: fmt.Sprintf("ring: next member at %.200s: %v", m.nextAddr, err)})
	}
	m.mu.Lock()
	m.cc, m.pc = cc, rookeryv1.NewProviderClient(cc)
	closed := m.closed
	m.mu.Unlock()
	if closed {
		cc.Close()
		return nil, toStatus(fmt.Errorf("%w: session %s was closed during the call", exec.ErrClosed, ss.id))
	}
	return &rookeryv1.JoinRingResponse{}, nil
}

// checkJoin checks a JoinRing request and returns the member it makes.
func checkJoin(req *rookeryv1.JoinRingRequest) (*ringMember, error) {
	bad := func(format string, a ...any) error {
		return &exec.SpecError{Part: -1, Node: -1, Reason: "ring: " + fmt.Sprintf(format, a...)}
	}
	r := len(req.Weights)
	switch {
	case r < 2 || r > maxRingMembers:
		return nil, bad("%d members (2 to %d)", r, maxRingMembers)
	case req.Rank < 0 || req.Rank >= int64(r):
		return nil, bad("rank %d of %d members", req.Rank, r)
	case len(req.Names) == 0 || len(req.Names) > maxRingNames:
		return nil, bad("%d gradients (1 to %d)", len(req.Names), maxRingNames)
	case len(req.Key) < 16 || len(req.Key) > maxRingKey:
		return nil, bad("a key of %d bytes (16 to %d)", len(req.Key), maxRingKey)
	case req.NextAddress == "" || len(req.NextAddress) > maxRingAddress:
		return nil, bad("next member's address of %d bytes", len(req.NextAddress))
	case req.NextSession == "" || len(req.NextSession) > 128:
		return nil, bad("next member's session id of %d bytes", len(req.NextSession))
	}
	for i, w := range req.Weights {
		if !(w > 0) || w > 1 {
			return nil, bad("weight %d is %v", i, w)
		}
	}
	return &ringMember{rank: int(req.Rank), weights: req.Weights, names: req.Names, key: req.Key,
		nextAddr: req.NextAddress, nextSession: req.NextSession, changed: make(chan struct{}), bufs: newSegmentBuffers()}, nil
}

// probeRing asks the next member's provider whether session answers for
// the ring's key.
func probeRing(ctx context.Context, pc rookeryv1.ProviderClient, key, session string) error {
	stream, err := pc.RingPass(metadata.AppendToOutgoingContext(ctx, RingKeyHeader, key))
	if err != nil {
		return fromStatus(ctx, "ring probe", err)
	}
	if err := stream.Send(&rookeryv1.TensorFrame{Session: session, Name: "probe"}); err != nil && !errors.Is(err, io.EOF) {
		return fromStatus(ctx, "ring probe", err)
	}
	_, err = stream.CloseAndRecv()
	return fromStatus(ctx, "ring probe", err)
}

// RingPass implements the Provider service: it feeds the segments that
// the previous member of a ring sends to the round its session runs.
func (s *Server) RingPass(stream rookeryv1.Provider_RingPassServer) (err error) {
	defer s.metrics.observe("ring_pass", time.Now(), &err)
	rs, ctx, done := s.watch(stream.Context(), "ring_pass", stream)
	defer done()
	r := &frameReader{stream: rs, lim: s.lim}
	first, err := r.first()
	if err != nil {
		return toStatus(err)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	keys := md.Get(RingKeyHeader)
	var key []byte
	if len(keys) == 1 {
		key, _ = base64.StdEncoding.DecodeString(keys[0])
	}
	ss, m := s.memberFor(ctx, first.Session, key, first.Name == "probe")
	if m == nil {
		return toStatus(&AuthError{Reason: ReasonBadToken, Detail: "no ring of this provider has that session and key"})
	}
	switch first.Name {
	case "probe":
		return stream.SendAndClose(&rookeryv1.PutResponse{})
	case "ring":
	default:
		return toStatus(protocolError("ring pass of kind %.40q", first.Name))
	}
	round := uint64(first.MicroBatch)
	inbox, ended, err := m.attach(ctx, round)
	if err != nil {
		return toStatus(err)
	}
	r.alloc = m.bufs.get
	elem := int64(8)
	r.reserve = func(n int64) error {
		if n > ringSegment*elem {
			return &LimitError{What: "ring segment bytes", Limit: ringSegment * elem, Got: n}
		}
		return nil
	}
	for {
		_, t, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return toStatus(err)
		}
		select {
		case inbox <- t:
		case <-ended:
			return toStatus(protocolError("ring round %d ended before its segments did", round))
		case <-ctx.Done():
			return toStatus(context.Cause(ctx))
		}
	}
	s.metrics.bytesIn.Add(float64(r.bytes))
	s.count(ss, func(w *work) { w.bytesIn += r.bytes })
	return stream.SendAndClose(&rookeryv1.PutResponse{})
}

// attach waits until round begins on m and returns its inbox; a round
// that is over, or that another stream feeds already, is refused.
func (m *ringMember) attach(ctx context.Context, round uint64) (chan<- *tensor.Dense, <-chan struct{}, error) {
	for {
		m.mu.Lock()
		switch {
		case round < m.last || (round == m.last && (m.passing || m.inbox == nil)):
			m.mu.Unlock()
			return nil, nil, protocolError("ring round %d is over or fed already (this member is at round %d)", round, m.last)
		case round == m.last:
			m.passing = true
			inbox, ended := m.inbox, m.ended
			m.mu.Unlock()
			return inbox, ended, nil
		}
		changed := m.changed
		m.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		}
	}
}

// begin starts round on m and returns its inbox and the function that
// ends it.
func (m *ringMember) begin(round uint64) (<-chan *tensor.Dense, func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if round <= m.last {
		return nil, nil, &exec.SpecError{Part: -1, Node: -1, Reason: fmt.Sprintf("ring round %d after round %d", round, m.last)}
	}
	inbox, ended := make(chan *tensor.Dense, 4), make(chan struct{})
	m.last, m.inbox, m.ended, m.passing = round, inbox, ended, false
	close(m.changed)
	m.changed = make(chan struct{})
	return inbox, func() {
		m.mu.Lock()
		close(ended)
		if m.last == round {
			m.inbox = nil
		}
		m.mu.Unlock()
	}, nil
}

// AllReduce implements the Provider service.
func (s *Server) AllReduce(ctx context.Context, req *rookeryv1.AllReduceRequest) (_ *rookeryv1.AllReduceResponse, err error) {
	defer s.metrics.observe("all_reduce", time.Now(), &err)
	ss, err := s.acquire(ctx, req.Session)
	if err != nil {
		return nil, toStatus(err)
	}
	defer s.release(ss)
	m := s.ringOf(ss)
	if m == nil {
		return nil, toStatus(&exec.SpecError{Part: ss.part, Node: -1, Reason: "ring: the session has not joined a ring"})
	}
	inbox, end, err := m.begin(req.Round)
	if err != nil {
		return nil, toStatus(err)
	}
	defer end()
	sent, recvd, err := s.allReduce(ctx, ss, m, req.Round, inbox)
	if err != nil {
		var se *exec.SpecError
		if errors.As(err, &se) {
			se.Part = ss.part
		}
		return nil, toStatus(err)
	}
	s.metrics.bytesOut.Add(float64(sent))
	s.count(ss, func(w *work) { w.bytesOut += sent })
	return &rookeryv1.AllReduceResponse{BytesSent: sent, BytesReceived: recvd}, nil
}

// ringVec is a round's gradients seen as one vector: the gradients'
// own memory (the session's copies), one after another, f32 or f64.
type ringVec struct {
	f32    [][]float32
	f64    [][]float64
	starts []int // each gradient's first element in the vector
	n      int
}

// ringSeg is elements [lo, hi) of gradient k: a segment never spans two
// gradients.
type ringSeg struct{ k, lo, hi int }

func (s ringSeg) len() int { return s.hi - s.lo }

// segments returns the segments of chunk c of r chunks of the vector:
// at most ringSegment elements each, cut at the gradients' boundaries.
func (v *ringVec) segments(r, c int) []ringSeg {
	lo, hi := c*v.n/r, (c+1)*v.n/r
	var out []ringSeg
	for a := lo; a < hi; {
		k := sort.Search(len(v.starts), func(i int) bool { return v.starts[i] > a }) - 1
		end := min(hi, v.starts[k]+v.size(k), a+ringSegment)
		out = append(out, ringSeg{k, a - v.starts[k], end - v.starts[k]})
		a = end
	}
	return out
}

func (v *ringVec) size(k int) int {
	if v.f32 != nil {
		return len(v.f32[k])
	}
	return len(v.f64[k])
}

// tensor returns segment s as a tensor sharing v's memory.
func (v *ringVec) tensor(s ringSeg) *tensor.Dense {
	if v.f32 != nil {
		return tensor.New(tensor.WithShape(s.len()), tensor.WithBacking(v.f32[s.k][s.lo:s.hi]))
	}
	return tensor.New(tensor.WithShape(s.len()), tensor.WithBacking(v.f64[s.k][s.lo:s.hi]))
}

// scale multiplies segment s by w in place.
func (v *ringVec) scale(s ringSeg, w float64) {
	if v.f32 != nil {
		d := v.f32[s.k][s.lo:s.hi]
		for j, x := range d {
			d[j] = float32(w * float64(x))
		}
		return
	}
	d := v.f64[s.k][s.lo:s.hi]
	for j, x := range d {
		d[j] = w * x
	}
}

// take stores received segment t at s: with add, v = t + w·v (in the
// gradients' dtype), else v = t.
func (v *ringVec) take(t *tensor.Dense, s ringSeg, add bool, w float64) error {
	if t.Shape().TotalSize() != s.len() || len(t.Shape()) != 1 {
		return protocolError("ring segment of shape %v where %d elements were due", t.Shape(), s.len())
	}
	switch d := t.Data().(type) {
	case []float32:
		if v.f32 == nil {
			return protocolError("float32 ring segment for float64 gradients")
		}
		dst := v.f32[s.k][s.lo:s.hi]
		if !add {
			copy(dst, d)
			return nil
		}
		addScaled(dst, d, float32(w))
	case []float64:
		if v.f64 == nil {
			return protocolError("float64 ring segment for float32 gradients")
		}
		dst := v.f64[s.k][s.lo:s.hi]
		if !add {
			copy(dst, d)
			return nil
		}
		addScaled(dst, d, w)
	default:
		return protocolError("ring segment of dtype %v", t.Dtype())
	}
	return nil
}

// addScaled sets dst[j] = in[j] + w·dst[j] for every j, in the
// elements' dtype; len(in) == len(dst).
func addScaled[T float32 | float64](dst, in []T, w T) {
	in = in[:len(dst)]
	j := 0
	for ; j+4 <= len(dst); j += 4 {
		d, x := dst[j:j+4:j+4], in[j:j+4:j+4]
		d[0] = x[0] + w*d[0]
		d[1] = x[1] + w*d[1]
		d[2] = x[2] + w*d[2]
		d[3] = x[3] + w*d[3]
	}
	for ; j < len(dst); j++ {
		dst[j] = in[j] + w*dst[j]
	}
}

// ringVector sees gradients as one vector, summed in place: each one's
// own memory, except a scalar's, which gets a slice of its own (see
// putScalars).
func ringVector(ts []*tensor.Dense, names []string) (*ringVec, error) {
	v := new(ringVec)
	var dt tensor.Dtype
	for i, t := range ts {
		if t == nil {
			return nil, &exec.NameError{Part: -1, Name: names[i]}
		}
		if i == 0 {
			dt = t.Dtype()
		}
		if t.Dtype() != dt || (dt != tensor.Float32 && dt != tensor.Float64) {
			return nil, &exec.SpecError{Part: -1, Node: -1, Reason: fmt.Sprintf("ring: gradient %q is %v; a ring sums float32 or float64 gradients of one dtype", names[i], t.Dtype())}
		}
		if !t.IsNativelyAccessible() || t.RequiresIterator() {
			return nil, &exec.SpecError{Part: -1, Node: -1, Reason: fmt.Sprintf("ring: gradient %q is not contiguous", names[i])}
		}
		v.starts = append(v.starts, v.n)
		switch d := t.Data().(type) {
		case []float32:
			v.f32 = append(v.f32, d)
		case []float64:
			v.f64 = append(v.f64, d)
		case float32:
			v.f32 = append(v.f32, []float32{d})
		case float64:
			v.f64 = append(v.f64, []float64{d})
		}
		v.n += v.size(i)
	}
	return v, nil
}

// putScalars writes the sums of scalar gradients, which ringVector gave
// slices of their own, back into them.
func putScalars(ts []*tensor.Dense, v *ringVec) {
	for k, t := range ts {
		switch t.Data().(type) {
		case float32:
			t.Memset(v.f32[k][0])
		case float64:
			t.Memset(v.f64[k][0])
		}
	}
}

// allReduce runs one round of the ring on ss's gradients: in place where
// the session lends them (exec.GradAccessor), else on copies that are put
// back. It returns the bytes of tensor data sent and received; after a
// failed round the gradients are undefined (the requester's replicas
// fail the step).
func (s *Server) allReduce(ctx context.Context, ss *serverSession, m *ringMember, round uint64, inbox <-chan *tensor.Dense) (sent, recvd int64, err error) {
	if a, ok := ss.s.(exec.GradAccessor); ok {
		err = a.AccessGrads(ctx, m.names, func(ts []*tensor.Dense) error {
			v, err := ringVector(ts, m.names)
			if err != nil {
				return err
			}
			if sent, recvd, err = s.ringRound(ctx, m, round, inbox, v); err == nil {
				putScalars(ts, v)
			}
			return err
		})
		return sent, recvd, err
	}
	got, err := ss.s.Get(ctx, m.names...)
	if err != nil {
		return 0, 0, err
	}
	ts := make([]*tensor.Dense, len(m.names))
	for k, name := range m.names {
		if ts[k] = got[name]; ts[k] != nil && (!ts[k].IsNativelyAccessible() || ts[k].RequiresIterator()) {
			ts[k] = ts[k].Materialize().(*tensor.Dense)
		}
	}
	v, err := ringVector(ts, m.names)
	if err != nil {
		return 0, 0, err
	}
	if sent, recvd, err = s.ringRound(ctx, m, round, inbox, v); err != nil {
		return sent, recvd, err
	}
	putScalars(ts, v)
	for k, name := range m.names {
		if err := exec.Keep(ctx, ss.s, name, ts[k]); err != nil {
			return sent, recvd, err
		}
	}
	return sent, recvd, nil
}

// ringRound passes round's segments of v around the ring and sums them
// in place; it returns the bytes of tensor data sent and received.
func (s *Server) ringRound(ctx context.Context, m *ringMember, round uint64, inbox <-chan *tensor.Dense, v *ringVec) (sent, recvd int64, err error) {
	m.mu.Lock()
	pc := m.pc
	m.mu.Unlock()
	if pc == nil {
		return 0, 0, &exec.SpecError{Part: -1, Node: -1, Reason: "ring: the session's ring is not connected"}
	}
	r, i := len(m.weights), m.rank
	w := m.weights[i]
	mod := func(a int) int { return ((a % r) + r) % r }

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := pc.RingPass(metadata.AppendToOutgoingContext(ctx, RingKeyHeader, base64.StdEncoding.EncodeToString(m.key)))
	if err != nil {
		return 0, 0, fromStatus(ctx, "ring pass to "+m.nextAddr, err)
	}
	if err := stream.Send(&rookeryv1.TensorFrame{Session: m.nextSession, Name: "ring", MicroBatch: int64(round)}); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, fromStatus(ctx, "ring pass to "+m.nextAddr, err)
	}
	// The sender sends what the loop below queues, in order; the queue
	// holds every segment of the round, so the loop never waits on it.
	segs := make([][]ringSeg, r)
	total := 0
	for c := range segs {
		segs[c] = v.segments(r, c)
		total += 2 * len(segs[c])
	}
	queue := make(chan *tensor.Dense, total)
	var sendErr error
	var sendWG sync.WaitGroup
	sendWG.Add(1)
	go func() {
		defer sendWG.Done()
		for t := range queue {
			if sendErr != nil {
				continue
			}
			k, err := sendTensor(stream.Send, &rookeryv1.TensorFrame{}, t, DefaultChunkBytes)
			sent += k
			if err != nil {
				sendErr = err
				cancel(err)
			}
		}
	}()
	finish := func() error {
		close(queue)
		sendWG.Wait()
		if sendErr != nil && !errors.Is(sendErr, io.EOF) {
			return fromStatus(ctx, "ring pass to "+m.nextAddr, sendErr)
		}
		_, err := stream.CloseAndRecv()
		return fromStatus(ctx, "ring pass to "+m.nextAddr, err)
	}
	// Reduce-scatter step 0: this member's own weighted chunk, scaled in
	// place: it is overwritten only by the all-gather, with a sum that
	// holds what was sent.
	for _, seg := range segs[i] {
		v.scale(seg, w)
		queue <- v.tensor(seg)
	}
	recv := func() (*tensor.Dense, error) {
		select {
		case t := <-inbox:
			return t, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	for step := range 2 * (r - 1) {
		var c int
		if step < r-1 {
			c = mod(i - step - 1) // reduce-scatter
		} else {
			c = mod(i - (step - (r - 1))) // all-gather
		}
		add := step < r-1
		forward := step != 2*(r-1)-1
		for _, seg := range segs[c] {
			t, err := recv()
			if err == nil {
				err = v.take(t, seg, add, w)
			}
			if err != nil {
				cancel(err)
				finish()
				return sent, recvd, err
			}
			recvd += int64(seg.len()) * int64(t.Dtype().Size())
			m.bufs.put(t)
			if forward {
				queue <- v.tensor(seg)
			}
		}
	}
	if err := finish(); err != nil {
		return sent, recvd, err
	}
	return sent, recvd, nil
}

// RingEndpoint implements exec.RingSession: the session's id and its
// provider's address, as "ID@ADDRESS".
func (s *remoteSession) RingEndpoint() string { return s.id + "@" + s.c.addr }

// JoinRing implements exec.RingSession.
func (s *remoteSession) JoinRing(ctx context.Context, spec exec.RingSpec) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	id, addr, ok := strings.Cut(spec.Next, "@")
	if !ok || id == "" || addr == "" {
		return fmt.Errorf("%w: ring endpoint %.200q is not ID@ADDRESS", exec.ErrSpec, spec.Next)
	}
	_, err := s.c.pc.JoinRing(ctx, &rookeryv1.JoinRingRequest{Session: s.id, Rank: int64(spec.Rank), Weights: spec.Weights,
		Names: spec.Names, Key: spec.Key, NextAddress: addr, NextSession: id})
	return fromStatus(ctx, s.on("join ring"), err)
}

// AllReduce implements exec.RingSession.
func (s *remoteSession) AllReduce(ctx context.Context, round uint64) (exec.RingStats, error) {
	if err := s.check(); err != nil {
		return exec.RingStats{}, err
	}
	res, err := s.c.pc.AllReduce(ctx, &rookeryv1.AllReduceRequest{Session: s.id, Round: round})
	if err != nil {
		return exec.RingStats{}, fromStatus(ctx, s.on("all-reduce"), err)
	}
	return exec.RingStats{BytesSent: res.BytesSent, BytesReceived: res.BytesReceived}, nil
}

var _ exec.RingSession = (*remoteSession)(nil)

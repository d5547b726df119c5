package transport

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/gemm"
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
//     its own gradient, unweighted, at s = 0 and afterwards the partial
//     sum it has just formed; it receives chunk (i−s−1) mod r and adds its
//     own weighted gradient to it (at s = 0 weighting what it receives, the
//     previous member's gradient, too). After step r−2 it holds the whole
//     sum of chunk (i+1) mod r.
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

// maxSegmentBytes is the largest segment RingPass accepts: ringSegment
// float64s.
const maxSegmentBytes = ringSegment * 8

// segmentBuffers are a ring member's free segment buffers: RingPass
// receives every segment into one, and the round hands it back once it
// has taken the segment in. A round holds at most the inbox's segments
// and the one being read at a time, so a few buffers go round.
type segmentBuffers struct {
	f32 *freeList[float32]
	f64 *freeList[float64]
}

func newSegmentBuffers() *segmentBuffers {
	return &segmentBuffers{f32: newFreeList[float32](), f64: newFreeList[float64]()}
}

// freeList holds free buffers of ringSegment elements, and knows the
// buffers it has lent by their first element: a tensor's Data keeps its
// length, not its buffer's capacity, so a short segment's buffer is found
// again that way.
type freeList[T float32 | float64] struct {
	free chan []T
	mu   sync.Mutex
	lent map[*T][]T
}

func newFreeList[T float32 | float64]() *freeList[T] {
	return &freeList[T]{free: make(chan []T, 8), lent: make(map[*T][]T)}
}

// get returns a free buffer, or a new one, cut to n (1 ≤ n ≤
// ringSegment) elements.
func (l *freeList[T]) get(n int) []T {
	var buf []T
	select {
	case buf = <-l.free:
	default:
		buf = make([]T, ringSegment)
	}
	l.mu.Lock()
	l.lent[&buf[0]] = buf
	l.mu.Unlock()
	return buf[:n]
}

// put takes back a buffer that get lent (any other is left alone), and
// keeps it unless enough are kept.
func (l *freeList[T]) put(d []T) {
	if len(d) == 0 {
		return
	}
	l.mu.Lock()
	buf, ok := l.lent[&d[0]]
	delete(l.lent, &d[0])
	l.mu.Unlock()
	if !ok {
		return
	}
	select {
	case l.free <- buf:
	default:
	}
}

// get returns a tensor of a free buffer for a received segment, or nil
// for anything but a float vector of at most ringSegment elements.
func (b *segmentBuffers) get(dt tensor.Dtype, shape []int) *tensor.Dense {
	if len(shape) != 1 || shape[0] > ringSegment || shape[0] <= 0 {
		return nil
	}
	switch dt {
	case tensor.Float32:
		return tensor.New(tensor.WithShape(shape[0]), tensor.WithBacking(b.f32.get(shape[0])))
	case tensor.Float64:
		return tensor.New(tensor.WithShape(shape[0]), tensor.WithBacking(b.f64.get(shape[0])))
	}
	return nil
}

// put hands a segment's buffer back.
func (b *segmentBuffers) put(t *tensor.Dense) {
	switch d := t.Data().(type) {
	case []float32:
		b.f32.put(d)
	case []float64:
		b.f64.put(d)
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
	shard       bool                     // the update is sharded (RING_MODE_STEP rounds)
	cc          *grpc.ClientConn         // to the next member's provider, set
	pc          rookeryv1.ProviderClient // once it answered (guarded by mu)
	wire        *ringWire                // the ring wire to it, if any (guarded by mu)
	inbound     []func()                 // end the ring wire connections from the previous member (guarded by mu)

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
	cc, wire, inbound := m.cc, m.wire, m.inbound
	m.wire, m.inbound = nil, nil
	m.mu.Unlock()
	if cc != nil {
		cc.Close()
	}
	if wire != nil {
		wire.conn.Close()
	}
	for _, end := range inbound {
		end()
	}
}

// addInbound records a ring wire connection from the previous member, and
// how to end it; it reports false, and records nothing, once m is closed.
func (m *ringMember) addInbound(c net.Conn, cancel func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.inbound = append(m.inbound, func() {
		cancel()
		c.Close()
	})
	return true
}

// dropWire gives up w, m's ring wire: the rounds after go on RingPass
// streams.
func (s *Server) dropWire(m *ringMember, w *ringWire, why error) {
	m.mu.Lock()
	if m.wire == w {
		m.wire = nil
	}
	m.mu.Unlock()
	w.conn.Close()
	s.log.Info("ring wire given up; the ring's segments go on RingPass streams", "next", m.nextAddr, "err", why)
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
	deadline := time.NewTimer(s.ringWait)
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
	if m.shard {
		if st, ok := ss.s.(exec.ShardStepper); !ok || !st.Shardable() {
			return nil, toStatus(&exec.SpecError{Part: ss.part, Node: -1, Reason: "ring: this session cannot shard its update (its executor, or a solver that clips by norm)"})
		}
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
	var wire *ringWire
	if !s.cfg.noRingWire {
		if wire, err = dialRingWire(ctx, cfg, m.nextAddr, m.nextSession, m.key); err != nil {
			s.log.Info("no ring wire to the next member; its segments go on RingPass streams", "next", m.nextAddr, "err", err)
		}
	}
	m.mu.Lock()
	m.cc, m.pc, m.wire = cc, rookeryv1.NewProviderClient(cc), wire
	closed := m.closed
	m.mu.Unlock()
	if closed {
		cc.Close()
		if wire != nil {
			wire.conn.Close()
		}
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
	return &ringMember{rank: int(req.Rank), weights: req.Weights, names: req.Names, key: req.Key, shard: req.Shard,
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
	r.reserve = func(n int64) error {
		if n > maxSegmentBytes {
			return &LimitError{What: "ring segment bytes", Limit: maxSegmentBytes, Got: n}
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
	if req.Mode != rookeryv1.RingMode_RING_MODE_SUM && !m.shard {
		return nil, toStatus(&exec.SpecError{Part: ss.part, Node: -1, Reason: fmt.Sprintf("ring: a %v round in a ring that does not shard the update", req.Mode)})
	}
	inbox, end, err := m.begin(req.Round)
	if err != nil {
		return nil, toStatus(err)
	}
	defer end()
	var sent, recvd int64
	switch req.Mode {
	case rookeryv1.RingMode_RING_MODE_SUM:
		sent, recvd, err = s.allReduce(ctx, ss, m, req.Round, inbox)
	case rookeryv1.RingMode_RING_MODE_STEP:
		sent, recvd, err = s.ringStep(ctx, ss, m, req.Round, inbox)
	case rookeryv1.RingMode_RING_MODE_GATHER_STATE:
		sent, recvd, err = s.ringGatherState(ctx, ss, m, req.Round, inbox)
	default:
		err = &exec.SpecError{Part: ss.part, Node: -1, Reason: fmt.Sprintf("ring: round mode %d", req.Mode)}
	}
	if err != nil {
		var se *exec.SpecError
		if errors.As(err, &se) {
			se.Part = ss.part
		}
		return nil, toStatus(err)
	}
	stepped := req.Mode == rookeryv1.RingMode_RING_MODE_STEP
	s.metrics.bytesOut.Add(float64(sent))
	s.count(ss, func(w *work) {
		w.bytesOut += sent
		if stepped {
			w.steps++
		}
	})
	if stepped {
		s.releaseMicroBatches(ss)
	}
	return &rookeryv1.AllReduceResponse{BytesSent: sent, BytesReceived: recvd, Stepped: stepped}, nil
}

// ringStep runs a RING_MODE_STEP round: the gradients are summed, this
// member updates its chunk of the parameters from the sums, and the
// members gather the updated parameters; the session's step is then over.
func (s *Server) ringStep(ctx context.Context, ss *serverSession, m *ringMember, round uint64, inbox <-chan *tensor.Dense) (sent, recvd int64, err error) {
	st, ok := ss.s.(exec.ShardStepper)
	if !ok {
		return 0, 0, &exec.SpecError{Part: ss.part, Node: -1, Reason: "ring: this session cannot shard its update"}
	}
	err = st.StepSharded(ctx, m.names, func(grads, params []*tensor.Dense, update func(k, lo, hi int) error) error {
		gv, err := ringVector(grads, m.names)
		if err != nil {
			return err
		}
		pv, err := ringVector(params, m.names)
		if err != nil {
			return err
		}
		sent, recvd, err = s.ringRound(ctx, m, round, inbox, ringJob{sum: gv, gather: pv, update: update})
		return err
	})
	return sent, recvd, err
}

// ringGatherState runs a RING_MODE_GATHER_STATE round: every slot of the
// solver state, one after the other, each member sending the chunk of
// the parameters it updates.
func (s *Server) ringGatherState(ctx context.Context, ss *serverSession, m *ringMember, round uint64, inbox <-chan *tensor.Dense) (sent, recvd int64, err error) {
	st, ok := ss.s.(exec.ShardStepper)
	if !ok {
		return 0, 0, &exec.SpecError{Part: ss.part, Node: -1, Reason: "ring: this session cannot shard its update"}
	}
	err = st.AccessState(ctx, m.names, func(states [][]*tensor.Dense) error {
		jobs := make([]ringJob, len(states))
		for j, slot := range states {
			v, err := ringVector(slot, m.names)
			if err != nil {
				return err
			}
			jobs[j] = ringJob{gather: v}
		}
		sent, recvd, err = s.ringRound(ctx, m, round, inbox, jobs...)
		return err
	})
	return sent, recvd, err
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

// sameLayout reports whether o has v's dtype and gradients' sizes.
func (v *ringVec) sameLayout(o *ringVec) bool {
	if o == nil || (v.f32 == nil) != (o.f32 == nil) || len(v.starts) != len(o.starts) || v.n != o.n {
		return false
	}
	for k := range v.starts {
		if v.size(k) != o.size(k) {
			return false
		}
	}
	return true
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

// take stores received segment t at s: with add, v = a·t + w·v (in the
// gradients' dtype), else v = t.
func (v *ringVec) take(t *tensor.Dense, s ringSeg, add bool, a, w float64) error {
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
		gemm.AddScaled(dst, d, float32(a), float32(w))
	case []float64:
		if v.f64 == nil {
			return protocolError("float64 ring segment for float32 gradients")
		}
		dst := v.f64[s.k][s.lo:s.hi]
		if !add {
			copy(dst, d)
			return nil
		}
		gemm.AddScaled(dst, d, a, w)
	default:
		return protocolError("ring segment of dtype %v", t.Dtype())
	}
	return nil
}

// ringVector sees tensors (gradients, parameters, solver state) as one
// vector, summed or gathered in place in their own memory (a scalar's
// too: its backing array).
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
			return nil, &exec.SpecError{Part: -1, Node: -1, Reason: fmt.Sprintf("ring: %q is %v; a ring sums float32 or float64 tensors of one dtype", names[i], t.Dtype())}
		}
		if !t.IsNativelyAccessible() || t.RequiresIterator() {
			return nil, &exec.SpecError{Part: -1, Node: -1, Reason: fmt.Sprintf("ring: %q is not contiguous", names[i])}
		}
		v.starts = append(v.starts, v.n)
		if dt == tensor.Float32 {
			v.f32 = append(v.f32, t.Float32s()[:t.DataSize()])
		} else {
			v.f64 = append(v.f64, t.Float64s()[:t.DataSize()])
		}
		v.n += v.size(i)
	}
	return v, nil
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
			sent, recvd, err = s.ringRound(ctx, m, round, inbox, ringJob{sum: v, gather: v})
			return err
		})
		if !errors.Is(err, exec.ErrNotLent) {
			return sent, recvd, err
		}
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
	if sent, recvd, err = s.ringRound(ctx, m, round, inbox, ringJob{sum: v, gather: v}); err != nil {
		return sent, recvd, err
	}
	for k, name := range m.names {
		if err := exec.Keep(ctx, ss.s, name, ts[k]); err != nil {
			return sent, recvd, err
		}
	}
	return sent, recvd, nil
}

// ringJob is one vector's pass around the ring within a round: with sum
// set, a reduce-scatter of sum (each member weighs its own part), then
// an all-gather of gather (sum itself when summing; the parameters,
// updated from the sums by update, when stepping); without sum, an
// all-gather of what each member holds complete in gather. sum and gather
// have the same layout.
type ringJob struct {
	sum, gather *ringVec
	update      func(k, lo, hi int) error
}

// ringRound passes round's jobs around the ring, one after the other on
// one stream, and sums and gathers them in place; it returns the bytes of
// tensor data sent and received.
func (s *Server) ringRound(ctx context.Context, m *ringMember, round uint64, inbox <-chan *tensor.Dense, jobs ...ringJob) (sent, recvd int64, err error) {
	m.mu.Lock()
	pc, wire := m.pc, m.wire
	m.mu.Unlock()
	if pc == nil {
		return 0, 0, &exec.SpecError{Part: -1, Node: -1, Reason: "ring: the session's ring is not connected"}
	}
	r, i := len(m.weights), m.rank
	w := m.weights[i]
	mod := func(a int) int { return ((a % r) + r) % r }
	segs := make([][][]ringSeg, len(jobs))
	total := 0
	for j, job := range jobs {
		if job.sum != nil && !job.sum.sameLayout(job.gather) {
			return 0, 0, &exec.SpecError{Part: -1, Node: -1, Reason: "ring: the gradients and the parameters differ in layout"}
		}
		segs[j] = make([][]ringSeg, r)
		for c := range r {
			segs[j][c] = job.gather.segments(r, c)
			total += 2 * len(segs[j][c])
		}
	}
	if total == 0 {
		// Nothing to pass (a solver without state): every member sees
		// the same and opens no stream.
		return 0, 0, nil
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pass, err := s.openPass(ctx, m, pc, wire, round)
	if err != nil {
		return 0, 0, fromStatus(ctx, "ring pass to "+m.nextAddr, err)
	}
	wp, onWire := pass.(*wirePass)
	s.metrics.ringRound(onWire)
	if onWire {
		defer func() {
			if err != nil {
				s.dropWire(m, wp.w, err)
			}
		}()
	}
	// The sender sends what the loop below queues, in order; the queue
	// holds every segment of the round, so the loop never waits on it.
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
			k, err := pass.send(t)
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
			pass.abort()
			return fromStatus(ctx, "ring pass to "+m.nextAddr, sendErr)
		}
		return fromStatus(ctx, "ring pass to "+m.nextAddr, pass.close())
	}
	fail := func(err error) (int64, int64, error) {
		cancel(err)
		close(queue)
		sendWG.Wait()
		pass.abort()
		return sent, recvd, err
	}
	recv := func() (*tensor.Dense, error) {
		select {
		case t := <-inbox:
			return t, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	for j, job := range jobs {
		// The first segments sent: with a sum, this member's own chunk,
		// unweighted (the next member weights it as it adds); without,
		// the chunk it holds complete.
		first := 0
		if job.sum != nil {
			for _, seg := range segs[j][i] {
				queue <- job.sum.tensor(seg)
			}
		} else {
			for _, seg := range segs[j][mod(i+1)] {
				queue <- job.gather.tensor(seg)
			}
			first = r - 1
		}
		for step := first; step < 2*(r-1); step++ {
			var c int
			if step < r-1 {
				c = mod(i - step - 1) // reduce-scatter
			} else {
				c = mod(i - (step - (r - 1))) // all-gather
			}
			add := step < r-1
			complete := step == r-2 // this member's chunk (i+1) is now whole
			forward := step != 2*(r-1)-1
			for _, seg := range segs[j][c] {
				t, err := recv()
				if err == nil && add {
					// The first segments of a chunk come unweighted from
					// the member that starts it, the previous one: this
					// member weights them as it adds its own.
					a := 1.0
					if step == 0 {
						a = m.weights[mod(i-1)]
					}
					err = job.sum.take(t, seg, true, a, w)
				} else if err == nil {
					err = job.gather.take(t, seg, false, 0, 0)
				}
				if err != nil {
					return fail(err)
				}
				recvd += int64(seg.len()) * int64(t.Dtype().Size())
				m.bufs.put(t)
				switch {
				case complete && job.update != nil:
					if err := job.update(seg.k, seg.lo, seg.hi); err != nil {
						return fail(err)
					}
					queue <- job.gather.tensor(seg)
				case add:
					queue <- job.sum.tensor(seg)
				case forward:
					queue <- job.gather.tensor(seg)
				}
			}
		}
	}
	if err := finish(); err != nil {
		return sent, recvd, err
	}
	return sent, recvd, nil
}

// ringPass sends one round's segments to the next member.
type ringPass interface {
	send(t *tensor.Dense) (int64, error)
	// close ends the round once every segment is sent; abort ends it
	// after a failure.
	close() error
	abort()
}

// openPass opens round's pass to the next member: on the ring wire when
// there is one, else (and when the wire fails to begin the round) on a
// RingPass stream.
func (s *Server) openPass(ctx context.Context, m *ringMember, pc rookeryv1.ProviderClient, wire *ringWire, round uint64) (ringPass, error) {
	if wire != nil {
		p, err := wire.open(ctx, round)
		if err == nil {
			return p, nil
		}
		s.dropWire(m, wire, err)
	}
	stream, err := pc.RingPass(metadata.AppendToOutgoingContext(ctx, RingKeyHeader, base64.StdEncoding.EncodeToString(m.key)))
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&rookeryv1.TensorFrame{Session: m.nextSession, Name: "ring", MicroBatch: int64(round)}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return streamPass{stream}, nil
}

// streamPass is a round's RingPass stream.
type streamPass struct {
	stream rookeryv1.Provider_RingPassClient
}

func (p streamPass) send(t *tensor.Dense) (int64, error) {
	return sendTensor(p.stream.Send, &rookeryv1.TensorFrame{}, t, DefaultChunkBytes)
}

func (p streamPass) close() error {
	_, err := p.stream.CloseAndRecv()
	return err
}

// abort leaves the stream to the round's context, which is cancelled.
func (p streamPass) abort() {}

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
		Names: spec.Names, Key: spec.Key, NextAddress: addr, NextSession: id, Shard: spec.Shard})
	return fromStatus(ctx, s.on("join ring"), err)
}

// AllReduce implements exec.RingSession. A RingStep round is the
// session's step, and is metered as one.
func (s *remoteSession) AllReduce(ctx context.Context, round uint64, mode exec.RingMode) (exec.RingStats, error) {
	if err := s.check(); err != nil {
		return exec.RingStats{}, err
	}
	var wire rookeryv1.RingMode
	switch mode {
	case exec.RingSum:
		wire = rookeryv1.RingMode_RING_MODE_SUM
	case exec.RingStep:
		wire = rookeryv1.RingMode_RING_MODE_STEP
		s.periodicReceipt(ctx)
	case exec.RingGatherState:
		wire = rookeryv1.RingMode_RING_MODE_GATHER_STATE
	default:
		return exec.RingStats{}, fmt.Errorf("%w: ring mode %d", exec.ErrSpec, mode)
	}
	res, err := s.c.pc.AllReduce(ctx, &rookeryv1.AllReduceRequest{Session: s.id, Round: round, Mode: wire})
	if err != nil {
		if mode == exec.RingStep {
			s.mayHave(func(w *work) { w.steps++ })
		}
		return exec.RingStats{}, fromStatus(ctx, s.on("ring round"), err)
	}
	if res.Stepped {
		s.count(func(w *work) { w.steps++ })
	}
	return exec.RingStats{BytesSent: res.BytesSent, BytesReceived: res.BytesReceived}, nil
}

var _ exec.RingSession = (*remoteSession)(nil)

package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// DialOption configures Dial, Connect and the seed-node clients.
type DialOption func(*dialConfig)

type dialConfig struct {
	creds        credentials.TransportCredentials
	dialer       func(context.Context, string) (net.Conn, error)
	chunk        int
	limits       Limits
	closeTimeout time.Duration
	grpcOpts     []grpc.DialOption
	token        string
	lease        string
	requesterKey ed25519.PrivateKey
	insecure     bool
	dialTimeout  time.Duration

	// receipts (receipts.go)
	sinks           Sinks
	receiptInterval time.Duration
	receiptTimeout  time.Duration
	clock           Clock
}

// DefaultDialTimeout is how long Dial, Connect and the seed-node clients
// wait for a provider or seed node to answer unless given WithDialTimeout.
const DefaultDialTimeout = 10 * time.Second

func newDialConfig(opts []DialOption) dialConfig {
	c := dialConfig{chunk: DefaultChunkBytes, closeTimeout: 10 * time.Second, dialTimeout: DefaultDialTimeout,
		limits:          Limits{MaxTensorBytes: 1 << 36, MaxNodes: -1, MaxSessions: -1},
		receiptInterval: DefaultReceiptInterval, receiptTimeout: DefaultReceiptTimeout, clock: SystemClock}
	for _, o := range opts {
		o(&c)
	}
	if c.creds == nil {
		c.creds = insecure.NewCredentials()
	}
	return c
}

// WithTransportCredentials sets the connection's credentials (TLS, mTLS).
// Without it the connection is in clear text, which is fit for loopback
// and trusted networks only.
func WithTransportCredentials(c credentials.TransportCredentials) DialOption {
	return func(d *dialConfig) { d.creds = c }
}

// WithInsecure allows a clear-text connection to an address beyond
// loopback, for a trusted network. Without it, and without
// WithTransportCredentials, dialling such an address fails with an error
// matching ErrInsecure.
func WithInsecure() DialOption { return func(d *dialConfig) { d.insecure = true } }

// WithToken sends tok as a bearer token ("authorization: Bearer tok") on
// every call, to a provider or seed node started with a token file.
func WithToken(tok string) DialOption { return func(d *dialConfig) { d.token = tok } }

// WithLease sends a lease token from a seed node ("authorization: Lease
// tok") on every call to the provider it names. seednode.Find returns
// each provider's lease in its entry; seednode.Lease passes them on.
func WithLease(tok string) DialOption { return func(d *dialConfig) { d.lease = tok } }

// WithDialer dials connections with f instead of TCP, for instance to an
// in-memory listener (grpc-go's bufconn) in tests.
func WithDialer(f func(ctx context.Context, addr string) (net.Conn, error)) DialOption {
	return func(d *dialConfig) { d.dialer = f }
}

// WithDialTimeout bounds how long Dial, Connect and the seed-node clients
// wait for the peer to answer (default DefaultDialTimeout); past it they
// fail with a *DialError that names the address and the last connection
// error. d <= 0 leaves only the caller's context as a bound.
func WithDialTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.dialTimeout = d }
}

// WithChunkBytes sets the largest data payload of one frame the client
// sends (default 4 MiB); it must not exceed the provider's.
func WithChunkBytes(n int) DialOption { return func(d *dialConfig) { d.chunk = n } }

// WithMaxTensorBytes bounds the size of one tensor the client accepts from
// a provider (default 64 GiB).
func WithMaxTensorBytes(n int64) DialOption {
	return func(d *dialConfig) { d.limits.MaxTensorBytes = n }
}

// WithDialOptions adds gRPC dial options.
func WithDialOptions(opts ...grpc.DialOption) DialOption {
	return func(d *dialConfig) { d.grpcOpts = append(d.grpcOpts, opts...) }
}

func (c *dialConfig) conn(addr string) (*grpc.ClientConn, error) {
	cc, _, err := c.connProbe(addr)
	return cc, err
}

// connProbe is conn, also returning the probe that records how the
// connection's dials went, for the errors of awaitReady.
func (c *dialConfig) connProbe(addr string) (*grpc.ClientConn, *dialProbe, error) {
	if c.creds.Info().SecurityProtocol == "insecure" && !c.insecure && c.dialer == nil && !IsLoopback(addr) {
		return nil, nil, fmt.Errorf("%w: refusing to dial %s in clear text; use transport.WithTransportCredentials (TLS), or transport.WithInsecure on a trusted network", ErrInsecure, addr)
	}
	var md []string
	if c.token != "" {
		md = append(md, "authorization", "Bearer "+c.token)
	}
	if c.lease != "" {
		md = append(md, "authorization", "Lease "+c.lease)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(c.creds),
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(windowSize),
		grpc.WithReadBufferSize(bufferSize),
		grpc.WithWriteBufferSize(bufferSize),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.chunk+1<<20+DefaultChunkBytes), grpc.MaxCallSendMsgSize(c.chunk+1<<20),
			grpc.ForceCodecV2(newFrameCodec())),
	}, c.grpcOpts...)
	// A key-bound lease wants a proof of the requester key on every call.
	var sign func(method string) string
	if leaseAddr, bound := leaseBinding(c.lease); bound {
		key, lease := c.requesterKey, c.lease
		if len(key) != ed25519.PrivateKeySize {
			key = DefaultRequesterKey()
		}
		sign = func(method string) string { return SignLeaseProof(key, lease, leaseAddr, method, time.Now()) }
	}
	withMD := func(ctx context.Context, method string) context.Context {
		if sign != nil {
			return metadata.AppendToOutgoingContext(ctx, append(md[:len(md):len(md)], LeaseProofHeader, sign(method))...)
		}
		return metadata.AppendToOutgoingContext(ctx, md...)
	}
	if len(md) > 0 {
		opts = append(opts,
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(withMD(ctx, method), method, req, reply, cc, opts...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(withMD(ctx, method), desc, cc, method, opts...)
			}))
	}
	target := addr
	p := &dialProbe{dial: c.dialer}
	if c.dialer != nil {
		target = "passthrough:///" + addr
	} else {
		var d net.Dialer
		p.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	opts = append(opts, grpc.WithContextDialer(p.dialContext))
	cc, err := grpc.NewClient(target, opts...)
	return cc, p, err
}

// dialProbe dials for a connection and keeps the last outcome, so that a
// peer that never answers can be reported with what went wrong.
type dialProbe struct {
	dial func(context.Context, string) (net.Conn, error)

	mu        sync.Mutex
	err       error  // the last dial's error
	connected bool   // a dial succeeded
	via       string // the last connection's path, when it reports one
}

// PathTCP is Client.Path for a plain TCP connection.
const PathTCP = "tcp"

// path is the last connection's path: what it reports through a Path
// method, else PathTCP.
func (p *dialProbe) path() string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.via == "" {
		return PathTCP
	}
	return p.via
}

func (p *dialProbe) dialContext(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := p.dial(ctx, addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.err = err
	} else {
		p.err, p.connected = nil, true
		p.via = ""
		if pc, ok := conn.(interface{ Path() string }); ok {
			p.via = pc.Path()
		}
	}
	return conn, err
}

// cause says what the probe saw, for a *DialError.
func (p *dialProbe) cause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.err != nil:
		return p.err
	case p.connected:
		return errNoAnswer
	}
	return errNoConnection
}

var (
	errNoAnswer     = errors.New("connected, but no gRPC answer (another service on that port, or TLS on one side only?)")
	errNoConnection = errors.New("no connection made")
)

// dial connects to addr and waits until the connection is ready and,
// when call is not nil, until call answers, all within the dial timeout
// and ctx. A peer that does not answer in time gives a *DialError naming
// peer ("provider", "seed node"); a ctx cancelled meanwhile gives ctx's
// error.
func (c *dialConfig) dial(ctx context.Context, addr, peer string, call func(context.Context, *grpc.ClientConn) error) (*grpc.ClientConn, error) {
	cc, _, err := c.dialWithProbe(ctx, addr, peer, call)
	return cc, err
}

// dialWithProbe is dial, also returning the probe that watches the
// connection's dials.
func (c *dialConfig) dialWithProbe(ctx context.Context, addr, peer string, call func(context.Context, *grpc.ClientConn) error) (*grpc.ClientConn, *dialProbe, error) {
	cc, p, err := c.connProbe(addr)
	if errors.Is(err, ErrInsecure) {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("transport: dial %s %s: %w: %v", peer, addr, ErrUnavailable, err)
	}
	dctx, cancel := ctx, context.CancelFunc(func() {})
	if c.dialTimeout > 0 {
		dctx, cancel = context.WithTimeout(ctx, c.dialTimeout)
	}
	defer cancel()
	start := time.Now()
	fail := func(err error) (*grpc.ClientConn, *dialProbe, error) {
		cc.Close()
		if ctx.Err() == context.Canceled {
			return nil, nil, ctx.Err()
		}
		if dctx.Err() == nil {
			return nil, nil, err
		}
		waited := c.dialTimeout
		if _, ok := ctx.Deadline(); ok && ctx.Err() != nil || c.dialTimeout <= 0 {
			waited = time.Since(start).Round(time.Millisecond)
		}
		cause := p.cause()
		if errors.Is(cause, errNoAnswer) && err != nil {
			cause = fmt.Errorf("%w: %v", cause, err)
		}
		return nil, nil, &DialError{Addr: addr, Peer: peer, Timeout: waited, Err: cause}
	}
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(dctx, s) {
			return fail(nil)
		}
	}
	if call != nil {
		if err := call(dctx, cc); err != nil {
			return fail(err)
		}
	}
	return cc, p, nil
}

// Client is a provider reached over gRPC. It is an exec.Executor: Open
// ships the part to the provider and returns a session whose calls run
// there. Errors are the same typed errors a local executor returns, plus
// *LimitError for the provider's limits and errors matching
// ErrUnavailable when it cannot be reached.
type Client struct {
	addr string
	cfg  dialConfig
	cc   *grpc.ClientConn
	pc   rookeryv1.ProviderClient
	caps *rookeryv1.Capabilities
	// identity is the provider's identity key, verified at Connect.
	identity ed25519.PublicKey
	// probe watches the connection's dials (and knows its path).
	probe *dialProbe
	// sinks are where the sessions opened from now on hand their
	// receipts (receipts.go).
	sinks atomic.Pointer[Sinks]
}

// Dial connects to the provider at addr and asks it to describe itself,
// so that an unreachable provider fails here: one that does not answer
// within the dial timeout (WithDialTimeout, default DefaultDialTimeout)
// gives a *DialError that names addr and the last connection error. The executor it returns is
// a *Client; close it (it is an io.Closer) when done.
func Dial(ctx context.Context, addr string, opts ...DialOption) (exec.Executor, error) {
	c, err := Connect(ctx, addr, opts...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Connect is Dial returning the *Client.
func Connect(ctx context.Context, addr string, opts ...DialOption) (*Client, error) {
	cfg := newDialConfig(opts)
	var caps *rookeryv1.Capabilities
	challenge := make([]byte, 32)
	_, _ = rand.Read(challenge)
	cc, probe, err := cfg.dialWithProbe(ctx, addr, "provider", func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		caps, err = rookeryv1.NewProviderClient(cc).Describe(ctx, &rookeryv1.DescribeRequest{Challenge: challenge}, grpc.WaitForReady(true))
		if err != nil && ctx.Err() == nil {
			return fromStatus(ctx, "describe "+addr, err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	c := &Client{addr: addr, cfg: cfg, cc: cc, pc: rookeryv1.NewProviderClient(cc), caps: caps, probe: probe}
	if key, ok := VerifyChallenge(caps, challenge); ok {
		c.identity = key
	}
	c.sinks.Store(&cfg.sinks)
	return c, nil
}

// IdentityKey returns the provider's identity key, which it proved it
// holds by signing a challenge when the client connected; nil when it
// did not.
func (c *Client) IdentityKey() ed25519.PublicKey { return c.identity }

// Addr is the provider's address.
func (c *Client) Addr() string { return c.addr }

// Path says how the client's connection reaches the provider: what a
// dialer given with WithDialer reports for the connection it made last
// (transport/p2p: "direct" or "relayed"), or PathTCP for a connection
// this package dialled itself over TCP (or a dialer that says nothing).
func (c *Client) Path() string { return c.probe.path() }

// Capabilities returns what the provider reported when the client
// connected.
func (c *Client) Capabilities() *rookeryv1.Capabilities { return c.caps }

// Describe asks the provider to describe itself again.
func (c *Client) Describe(ctx context.Context) (*rookeryv1.Capabilities, error) {
	caps, err := c.pc.Describe(ctx, &rookeryv1.DescribeRequest{})
	if err != nil {
		return nil, fromStatus(ctx, "describe "+c.addr, err)
	}
	return caps, nil
}

// Close closes the connection. Sessions still open stay on the provider
// until its idle timeout closes them.
func (c *Client) Close() error { return c.cc.Close() }

// Open implements exec.Executor: it encodes the part's graph, streams it
// to the provider in chunks, and returns the remote session.
func (c *Client) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	if spec.Graph == nil {
		return nil, &exec.SpecError{Part: spec.Part, Node: -1, Reason: "empty graph"}
	}
	b, err := spec.Graph.MarshalBinary()
	if err != nil {
		return nil, &exec.SpecError{Part: spec.Part, Node: -1, Reason: err.Error()}
	}
	// A client that takes receipts names its requester key, which the
	// provider's receipts name unless the lease names one.
	var key ed25519.PrivateKey
	octx := ctx
	sinks := c.sinks.Load()
	if sinks.wanted() {
		key = RequesterKey(func(d *dialConfig) { d.requesterKey = c.cfg.requesterKey })
		octx = metadata.AppendToOutgoingContext(ctx, RequesterKeyHeader, base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)))
	}
	stream, err := c.pc.Open(octx)
	if err != nil {
		return nil, fromStatus(ctx, c.on("open", spec.Part), err)
	}
	first := &rookeryv1.OpenRequest{Spec: specToWire(&spec), GraphBytes: int64(len(b))}
	n := min(c.cfg.chunk, len(b))
	first.GraphChunk = b[:n]
	err = stream.Send(first)
	for off := n; err == nil && off < len(b); off += c.cfg.chunk {
		err = stream.Send(&rookeryv1.OpenRequest{GraphChunk: b[off:min(off+c.cfg.chunk, len(b))]})
	}
	// A send error means the stream ended; CloseAndRecv says why.
	resp, rerr := stream.CloseAndRecv()
	if rerr != nil {
		return nil, fromStatus(ctx, c.on("open", spec.Part), rerr)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fromStatus(ctx, c.on("open", spec.Part), err)
	}
	values := 0
	for _, id := range spec.Graph.Learnables() {
		n, _ := spec.Graph.Node(id)
		values += int(n.Shape.Size())
	}
	rs := &remoteSession{c: c, id: resp.Session, part: spec.Part, values: values}
	rs.startMeter(spec.Graph.TotalCost().FLOPs, key, sinks)
	return rs, nil
}

// Attach returns a handle on the session id that the same requester
// opened on this provider before (for instance over an earlier
// connection); part is the part index its errors name. The provider
// refuses every call on it from another requester.
func (c *Client) Attach(id string, part int) exec.Session {
	return &remoteSession{c: c, id: id, part: part, values: -1}
}

// SessionID returns the provider's id of a session that a *Client opened
// or attached, and false for any other session.
func SessionID(s exec.Session) (string, bool) {
	rs, ok := s.(*remoteSession)
	if !ok {
		return "", false
	}
	return rs.id, true
}

// on names a call to the provider for errors, so that a lost provider is
// named: "forward on provider ADDR, part N".
func (c *Client) on(what string, part int) string {
	return fmt.Sprintf("%s on provider %s, part %d", what, c.addr, part)
}

func (s *remoteSession) on(what string) string { return s.c.on(what, s.part) }

// remoteSession is a session on a provider.
type remoteSession struct {
	c    *Client
	id   string
	part int
	// values counts the part's parameters' values (-1: unknown), for
	// the size of a round's delta.
	values int

	mu     sync.Mutex
	closed bool
	rm     *requesterMeter // nil when the client takes no receipts
}

var _ exec.LocalStepper = (*remoteSession)(nil)

func (s *remoteSession) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: part %d", exec.ErrClosed, s.part)
	}
	return nil
}

// Put implements exec.Session.
func (s *remoteSession) Put(ctx context.Context, name string, t *tensor.Dense) error {
	if err := s.check(); err != nil {
		return err
	}
	if t == nil {
		return &exec.FeedError{Part: s.part, Node: -1, Name: name, MicroBatch: -1, Reason: "nil tensor"}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.c.pc.Put(cctx)
	if err != nil {
		return fromStatus(ctx, s.on("put"), err)
	}
	n, serr := sendTensor(stream.Send, &rookeryv1.TensorFrame{Session: s.id, Name: name}, t, s.c.cfg.chunk)
	if serr != nil && !isStatus(serr) && !errors.Is(serr, io.EOF) {
		// The tensor could not be encoded; drop the call.
		cancel()
		return &exec.FeedError{Part: s.part, Node: -1, Name: name, MicroBatch: -1, Reason: serr.Error()}
	}
	_, err = stream.CloseAndRecv()
	switch {
	case err == nil && serr == nil:
		s.count(func(w *work) { w.bytesIn += n })
	case err != nil:
		s.mayHave(func(w *work) { w.bytesIn += n })
	}
	return fromStatus(ctx, s.on("put"), err)
}

// isStatus reports whether err came from gRPC rather than from encoding.
func isStatus(err error) bool {
	_, ok := status.FromError(err)
	return ok
}

// Get implements exec.Session.
func (s *remoteSession) Get(ctx context.Context, names ...string) (map[string]*tensor.Dense, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.c.pc.Get(cctx, &rookeryv1.GetRequest{Session: s.id, Names: names})
	if err != nil {
		return nil, fromStatus(ctx, s.on("get"), err)
	}
	r := &frameReader{stream: stream, lim: s.c.cfg.limits}
	out := make(map[string]*tensor.Dense, len(names))
	for {
		h, t, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fromStatus(ctx, s.on("get"), err)
		}
		out[h.Name] = t
	}
	s.count(func(w *work) { w.bytesOut += r.bytes })
	return out, nil
}

// call streams ins to a Forward or Backward call and reads its results.
func (s *remoteSession) call(ctx context.Context, what string, open func(context.Context) (grpc.BidiStreamingClient[rookeryv1.TensorFrame, rookeryv1.TensorFrame], error),
	mb int, ins map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	for id, t := range ins {
		if t == nil {
			return nil, &exec.FeedError{Part: s.part, Node: id, MicroBatch: mb, Reason: "nil tensor"}
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := open(cctx)
	if err != nil {
		return nil, fromStatus(ctx, s.on(what), err)
	}
	// Send and receive concurrently: the provider may start answering (or
	// refuse) before everything is sent.
	sendErr := make(chan error, 1)
	var sent int64 // read once sendErr has its value
	go func() {
		err := stream.Send(&rookeryv1.TensorFrame{Session: s.id, MicroBatch: int64(mb)})
		for id, t := range ins {
			if err != nil {
				break
			}
			var n int64
			n, err = sendTensor(stream.Send, &rookeryv1.TensorFrame{Id: id}, t, s.c.cfg.chunk)
			sent += n
			if err != nil && !isStatus(err) && !errors.Is(err, io.EOF) {
				err = &exec.FeedError{Part: s.part, Node: id, MicroBatch: mb, Reason: err.Error()}
				cancel()
			}
		}
		if err == nil {
			err = stream.CloseSend()
		}
		sendErr <- err
	}()
	r := &frameReader{stream: stream, lim: s.c.cfg.limits}
	out := make(map[int64]*tensor.Dense)
	var rerr error
	for {
		h, t, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			cancel()
			break
		}
		out[h.Id] = t
	}
	serr := <-sendErr
	var fe *exec.FeedError
	if errors.As(serr, &fe) {
		return nil, fe
	}
	meter := func(w *work) {
		w.bytesIn += sent
		w.bytesOut += r.bytes
		if what == "forward" {
			w.flops = addSat(w.flops, s.rm.forward)
			w.microBatches++
		} else {
			w.flops = addSat(w.flops, mulSat(s.rm.forward, 2))
		}
	}
	if rerr != nil {
		s.mayHave(meter)
		return nil, fromStatus(ctx, s.on(what), rerr)
	}
	s.count(meter)
	return out, nil
}

// Forward implements exec.Session.
func (s *remoteSession) Forward(ctx context.Context, mb int, feeds map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	return s.call(ctx, "forward", func(ctx context.Context) (grpc.BidiStreamingClient[rookeryv1.TensorFrame, rookeryv1.TensorFrame], error) {
		return s.c.pc.Forward(ctx)
	}, mb, feeds)
}

// Backward implements exec.Session.
func (s *remoteSession) Backward(ctx context.Context, mb int, grads map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	return s.call(ctx, "backward", func(ctx context.Context) (grpc.BidiStreamingClient[rookeryv1.TensorFrame, rookeryv1.TensorFrame], error) {
		return s.c.pc.Backward(ctx)
	}, mb, grads)
}

// Step implements exec.Session.
func (s *remoteSession) Step(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	s.periodicReceipt(ctx)
	_, err := s.c.pc.Step(ctx, &rookeryv1.StepRequest{Session: s.id})
	if err == nil {
		s.count(func(w *work) { w.steps++ })
	} else {
		s.mayHave(func(w *work) { w.steps++ })
	}
	return fromStatus(ctx, s.on("step"), err)
}

// LocalSteps implements exec.LocalStepper: the provider takes the steps
// next to the session's shards, in one call that also carries the
// round's update and delta when they fit in a message (else they go by
// Put and Get, in chunks, before and after it). The provider checks req:
// a bad one comes back as an error matching exec.ErrSpec.
func (s *remoteSession) LocalSteps(ctx context.Context, req exec.LocalRequest) (exec.LocalResult, error) {
	if err := s.check(); err != nil {
		return exec.LocalResult{}, err
	}
	if err := req.Validate(); err != nil {
		return exec.LocalResult{}, err
	}
	s.periodicReceipt(ctx)
	// what fits in a message either way (the provider's default chunk
	// bounds what it receives)
	limit := min(s.c.cfg.chunk, DefaultChunkBytes)
	if len(req.Update) > limit {
		if err := s.Put(ctx, exec.UpdateName, exec.PackDelta(req.Update)); err != nil {
			return exec.LocalResult{}, err
		}
		req.Update = nil
	}
	inline := req.Delta != 0 && s.values >= 0 && compress.Size(req.Delta, s.values) <= limit
	wire := &rookeryv1.LocalStepsRequest{Session: s.id, Steps: int64(req.Steps), Seed: req.Seed, Start: req.Start, Update: req.Update}
	if inline {
		wire.DeltaCodec = uint32(req.Delta)
	}
	res, err := s.c.pc.LocalSteps(ctx, wire)
	if err != nil {
		s.mayHave(func(w *work) {
			w.steps += int64(req.Steps)
			w.flops = addSat(w.flops, mulSat(mulSat(s.rm.forward, 3), int64(req.Steps)))
			w.bytesIn += int64(len(wire.Update))
			if inline {
				w.bytesOut += int64(compress.Size(req.Delta, s.values))
			}
		})
		return exec.LocalResult{}, fromStatus(ctx, s.on("local steps"), err)
	}
	// The provider's figures are checked before they are metered: it
	// cannot have taken more steps than were asked for.
	if res.Steps < 0 || res.Steps > int64(req.Steps) || res.Rows < 0 {
		return exec.LocalResult{}, &exec.RunError{Part: s.part, MicroBatch: -1, Phase: "local steps",
			Err: fmt.Errorf("the provider answered %d steps and %d rows for %d steps asked for", res.Steps, res.Rows, req.Steps)}
	}
	s.count(func(w *work) {
		w.steps += res.Steps
		w.flops = addSat(w.flops, mulSat(mulSat(s.rm.forward, 3), res.Steps))
		w.bytesIn += int64(len(wire.Update))
		w.bytesOut += int64(len(res.Delta))
	})
	out := exec.LocalResult{Steps: int(res.Steps), Rows: res.Rows, Loss: res.Loss, Delta: res.Delta}
	if req.Delta != 0 && !inline {
		name := exec.DeltaName(req.Delta)
		got, err := s.Get(ctx, name)
		if err != nil {
			return out, err
		}
		out.Delta, err = exec.UnpackDelta(got[name])
		return out, err
	}
	return out, nil
}

// Close implements exec.Session. It tells the provider to release the
// session, waiting at most the client's close timeout.
func (s *remoteSession) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.finalReceipt()
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.closeTimeout)
	defer cancel()
	_, err := s.c.pc.Close(ctx, &rookeryv1.CloseRequest{Session: s.id})
	return fromStatus(ctx, s.on("close"), err)
}

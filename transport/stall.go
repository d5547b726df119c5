package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Stalled streams.
//
// A call that streams data to the provider (Open, Put, Forward,
// Backward) reserves memory when a header announces it, before the data
// arrives. So that a requester that announces much and sends nothing
// does not keep that memory, the provider watches each such stream: the
// time the handler spends waiting on the requester without progress is
// summed, and past Limits.StreamIdleTimeout the janitor cancels the call,
// which releases what it reserved. Progress is a frame that starts a
// tensor or a call, or minProgressBytes of data since the last progress,
// so that a trickle of tiny frames does not count as a live stream.

// ErrStalled marks a call that the provider cut because its requester
// sent nothing, or too little, for longer than the stream idle timeout.
var ErrStalled = errors.New("transport: stream stalled")

// minProgressBytes is the data that counts as progress on a stream.
const minProgressBytes = 64 << 10

// stallError is the cause of a call cut for stalling.
type stallError struct {
	method string
	idle   time.Duration
	limit  time.Duration
}

func (e *stallError) Error() string {
	return fmt.Sprintf("transport: %s: stream stalled: no progress from the requester for %v (limit %v)", e.method, e.idle, e.limit)
}

// Is makes errors.Is(err, ErrStalled) true.
func (e *stallError) Is(t error) bool { return t == ErrStalled }

// recvStream is what a handler reads frames from.
type recvStream interface{ RecvMsg(any) error }

// watchedStream reads a handler's stream on a goroutine of its own, so
// that the janitor can cut a call whose requester stalls even while the
// handler waits on it.
type watchedStream struct {
	s      *Server
	method string
	stream recvStream
	ctx    context.Context
	cancel context.CancelCauseFunc
	req    chan any
	res    chan error

	// guarded by Server.mu
	waiting   bool
	waitStart time.Time
	stalled   time.Duration // time waited without progress, before waitStart
	pending   int64         // data bytes since the last progress
}

// watch returns a stream that reads stream, a context for the call that
// the janitor cancels when the requester stalls, and a function to call
// when the handler returns. With no stream idle timeout it returns
// stream and ctx as they are.
func (s *Server) watch(ctx context.Context, method string, stream recvStream) (recvStream, context.Context, func()) {
	if s.lim.StreamIdleTimeout <= 0 {
		return stream, ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchedStream{s: s, method: method, stream: stream, ctx: ctx, cancel: cancel, req: make(chan any), res: make(chan error, 1)}
	go func() {
		for m := range w.req {
			w.res <- w.stream.RecvMsg(m)
		}
	}()
	s.mu.Lock()
	s.streams[w] = struct{}{}
	s.mu.Unlock()
	return w, ctx, func() {
		s.mu.Lock()
		delete(s.streams, w)
		s.mu.Unlock()
		close(w.req)
		cancel(context.Canceled)
	}
}

// RecvMsg receives m, or returns the cause of the call's cancellation.
func (w *watchedStream) RecvMsg(m any) error {
	s := w.s
	s.mu.Lock()
	w.waiting, w.waitStart = true, s.cfg.clock.Now()
	s.mu.Unlock()
	var err error
	select {
	case w.req <- m:
		select {
		case err = <-w.res:
		case <-w.ctx.Done():
			err = context.Cause(w.ctx)
		}
	case <-w.ctx.Done():
		err = context.Cause(w.ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.waiting = false
	w.stalled += s.cfg.clock.Now().Sub(w.waitStart)
	if err != nil {
		return err
	}
	start, n := progressOf(m)
	w.pending += n
	if start || w.pending >= minProgressBytes {
		w.stalled, w.pending = 0, 0
	}
	return nil
}

// progressOf says whether m starts a tensor or a call, and how many data
// bytes it carries.
func progressOf(m any) (start bool, n int64) {
	switch f := m.(type) {
	case *rawFrame:
		return f.F.Tensor != nil || f.F.Session != "", int64(f.dataLen())
	case *rookeryv1.OpenRequest:
		return f.Spec != nil, int64(len(f.GraphChunk))
	}
	return false, 0
}

// cutStalledLocked cancels, with s.mu held, the calls whose requesters
// have stalled for longer than the stream idle timeout at now.
func (s *Server) cutStalledLocked(now time.Time) {
	for w := range s.streams {
		d := w.stalled
		if w.waiting {
			d += now.Sub(w.waitStart)
		}
		if d > s.lim.StreamIdleTimeout {
			w.cancel(&stallError{method: w.method, idle: d, limit: s.lim.StreamIdleTimeout})
			delete(s.streams, w)
		}
	}
}

package transport

import (
	"time"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Limits bound what a provider accepts from requesters. Each is checked
// before anything is allocated from the request that it bounds. A zero
// field takes its DefaultLimits value; a negative one means no limit.
type Limits struct {
	// MaxSessions is the number of sessions open at once.
	MaxSessions int
	// MaxSessionsPerIdentity is the number of sessions one requester may
	// hold open at once, so that no one requester can take every slot.
	// Zero takes a quarter of MaxSessions (at least one). A requester is
	// its authenticated identity (bearer token or client certificate);
	// anonymous callers count by the host they call from.
	MaxSessionsPerIdentity int
	// MaxNodes is the number of IR nodes of one part.
	MaxNodes int
	// MaxGraphBytes is the size of one encoded part, values included.
	MaxGraphBytes int64
	// MaxTensorBytes is the size of one tensor in any call.
	MaxTensorBytes int64
	// MaxSessionBytes bounds one session's encoded part plus its resident
	// tensors (those Put).
	MaxSessionBytes int64
	// MaxProviderBytes bounds the same over all sessions, plus the tensors
	// of calls in flight: the provider's memory budget.
	MaxProviderBytes int64
	// IdleTimeout is how long a session may go unused before the provider
	// closes it.
	IdleTimeout time.Duration
	// UnusedTimeout is how long a session that no call has used since
	// its Open may stay open; it is at most IdleTimeout. Sessions opened
	// and never run are what a requester that hoards slots leaves.
	UnusedTimeout time.Duration
	// StreamIdleTimeout is how long a call that streams data to the
	// provider (Open, Put, Forward, Backward) may wait on its requester
	// without progress (a new tensor, or 64 KiB of data) before the
	// provider cuts it and releases what its headers reserved.
	StreamIdleTimeout time.Duration
	// ChunkBytes is the largest data payload of one frame; larger tensors
	// stream in several frames.
	ChunkBytes int
}

// DefaultChunkBytes is the default frame payload, 4 MiB.
const DefaultChunkBytes = 4 << 20

// DefaultLimits are the limits of a server given none.
var DefaultLimits = Limits{
	MaxSessions:            64,
	MaxSessionsPerIdentity: 16,
	MaxNodes:               1 << 20,
	MaxGraphBytes:          1 << 30,
	MaxTensorBytes:         1 << 30,
	MaxSessionBytes:        4 << 30,
	MaxProviderBytes:       8 << 30,
	IdleTimeout:            15 * time.Minute,
	UnusedTimeout:          2 * time.Minute,
	StreamIdleTimeout:      30 * time.Second,
	ChunkBytes:             DefaultChunkBytes,
}

// orDefault fills zero fields from DefaultLimits.
func (l Limits) orDefault() Limits {
	d := DefaultLimits
	if l.MaxSessions != 0 {
		d.MaxSessions = l.MaxSessions
	}
	switch {
	case l.MaxSessionsPerIdentity != 0:
		d.MaxSessionsPerIdentity = l.MaxSessionsPerIdentity
	case d.MaxSessions < 0:
		d.MaxSessionsPerIdentity = -1
	default:
		d.MaxSessionsPerIdentity = max(d.MaxSessions/4, 1)
	}
	if l.MaxNodes != 0 {
		d.MaxNodes = l.MaxNodes
	}
	if l.MaxGraphBytes != 0 {
		d.MaxGraphBytes = l.MaxGraphBytes
	}
	if l.MaxTensorBytes != 0 {
		d.MaxTensorBytes = l.MaxTensorBytes
	}
	if l.MaxSessionBytes != 0 {
		d.MaxSessionBytes = l.MaxSessionBytes
	}
	if l.MaxProviderBytes != 0 {
		d.MaxProviderBytes = l.MaxProviderBytes
	}
	if l.IdleTimeout != 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	if l.StreamIdleTimeout != 0 {
		d.StreamIdleTimeout = l.StreamIdleTimeout
	}
	if l.UnusedTimeout != 0 {
		d.UnusedTimeout = l.UnusedTimeout
	}
	if d.IdleTimeout > 0 && (d.UnusedTimeout < 0 || d.UnusedTimeout > d.IdleTimeout) {
		d.UnusedTimeout = d.IdleTimeout
	}
	if l.ChunkBytes > 0 {
		d.ChunkBytes = l.ChunkBytes
	}
	return d
}

// exceeds reports whether got is over limit; a negative limit is none.
func exceeds(got, limit int64) bool { return limit >= 0 && got > limit }

func (l Limits) proto() *rookeryv1.ProviderLimits {
	nz := func(v int64) int64 {
		if v < 0 {
			return 0
		}
		return v
	}
	return &rookeryv1.ProviderLimits{
		MaxSessions:      int32(nz(int64(l.MaxSessions))),
		MaxNodes:         nz(int64(l.MaxNodes)),
		MaxGraphBytes:    nz(l.MaxGraphBytes),
		MaxTensorBytes:   nz(l.MaxTensorBytes),
		MaxSessionBytes:  nz(l.MaxSessionBytes),
		MaxProviderBytes: nz(l.MaxProviderBytes),
		IdleTimeoutMs:    nz(l.IdleTimeout.Milliseconds()),
		ChunkBytes:       int64(l.ChunkBytes),
	}
}

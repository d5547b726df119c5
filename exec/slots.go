package exec

import (
	"fmt"
	"iter"
)

// DefaultMicroBatches is the micro-batch count of a SessionSpec that gives
// none, and the most micro-batches a session of the CPU or the CUDA
// executor holds unless its WithMaxMicroBatches option says otherwise.
const DefaultMicroBatches = 256

// CheckMicroBatches returns a *MicroBatchLimitError when spec asks for more
// micro-batches than limit, the most the executor holds, and nil
// otherwise. Executors call it at Open, so that a spec they cannot hold
// fails there rather than at a later Forward.
func CheckMicroBatches(spec *SessionSpec, limit int) error {
	if n := spec.MicroBatchCount(); n > limit {
		return &MicroBatchLimitError{Part: spec.Part, MicroBatches: n, Limit: limit}
	}
	return nil
}

// Slots is the micro-batch book-keeping of a session: what it keeps for
// each micro-batch index in [0, count) (a built program, device buffers),
// made when the index is first used, and whether the index's Forward
// waits for its Backward.
//
// Slots is not safe for concurrent use; the session's lock guards it.
type Slots[T any] struct {
	part    int
	count   int
	slots   []*T
	pending []bool
}

// NewSlots returns the book-keeping of a session of part part that holds
// count micro-batches (SessionSpec.MicroBatchCount).
func NewSlots[T any](part, count int) *Slots[T] {
	return &Slots[T]{part: part, count: count}
}

// Count returns the number of micro-batch indexes the session holds.
func (s *Slots[T]) Count() int { return s.count }

// Slot returns the slot of micro-batch mb, made by build when mb is first
// used. An index outside [0, Count) gives an *OrderError; an error of
// build is returned as it is, and mb stays unused.
func (s *Slots[T]) Slot(mb int, build func(mb int) (*T, error)) (*T, error) {
	if mb < 0 || mb >= s.count {
		return nil, &OrderError{Part: s.part, MicroBatch: mb, Reason: fmt.Sprintf("micro-batch index out of range [0, %d)", s.count)}
	}
	if mb < len(s.slots) && s.slots[mb] != nil {
		return s.slots[mb], nil
	}
	sl, err := build(mb)
	if err != nil {
		return nil, err
	}
	for len(s.slots) <= mb {
		s.slots = append(s.slots, nil)
		s.pending = append(s.pending, false)
	}
	s.slots[mb] = sl
	return sl, nil
}

// Lookup returns the slot of micro-batch mb, or nil where mb was never
// used.
func (s *Slots[T]) Lookup(mb int) *T {
	if mb < 0 || mb >= len(s.slots) {
		return nil
	}
	return s.slots[mb]
}

// SetPending records whether the Forward of micro-batch mb, a used index,
// waits for its Backward.
func (s *Slots[T]) SetPending(mb int, pending bool) { s.pending[mb] = pending }

// IsPending reports whether the Forward of micro-batch mb waits for its
// Backward.
func (s *Slots[T]) IsPending(mb int) bool {
	return mb >= 0 && mb < len(s.pending) && s.pending[mb]
}

// Pending returns the slot of micro-batch mb when its Forward waits for
// its Backward, and an *OrderError otherwise.
func (s *Slots[T]) Pending(mb int) (*T, error) {
	if !s.IsPending(mb) {
		return nil, &OrderError{Part: s.part, MicroBatch: mb, Reason: "backward before forward"}
	}
	return s.slots[mb], nil
}

// All yields the slots made so far with their indexes, in index order.
func (s *Slots[T]) All() iter.Seq2[int, *T] {
	return func(yield func(int, *T) bool) {
		for mb, sl := range s.slots {
			if sl != nil && !yield(mb, sl) {
				return
			}
		}
	}
}

// Reset drops every slot.
func (s *Slots[T]) Reset() { s.slots, s.pending = nil, nil }

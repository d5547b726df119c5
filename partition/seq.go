package partition

import (
	"math"
	"sort"
)

// seq is a sequence of weighted positions (a topological order) to be split
// into k contiguous segments, one per part, each holding at least one
// position of positive weight. Boundaries are prefix lengths: segment p is
// [ends[p-1], ends[p]).
type seq struct {
	m     int
	S     []int64 // S[i]: weight of positions [0, i)
	cut   []int64 // cut[j]: bytes crossing a boundary after position j
	last  []int32 // last[e]: the last position before e with positive weight, or -1
	posAt []int32 // positions with positive weight, ascending
}

func newSeq(w []int64, cut []int64) *seq {
	m := len(w)
	s := &seq{m: m, S: make([]int64, m+1), cut: cut, last: make([]int32, m+1)}
	s.last[0] = -1
	for i, x := range w {
		s.S[i+1] = s.S[i] + x
		s.last[i+1] = s.last[i]
		if x > 0 {
			s.last[i+1] = int32(i)
			s.posAt = append(s.posAt, int32(i))
		}
	}
	return s
}

// boundaryCut is what a boundary at prefix length e sends (nothing after the
// last position).
func (s *seq) boundaryCut(e int) int64 {
	if e <= 0 || e >= s.m {
		return 0
	}
	return s.cut[e-1]
}

// upper returns the largest e' >= e with S[e']-S[e] <= c.
func (s *seq) upper(e int, c int64) int {
	if c < 0 {
		return e
	}
	if c >= s.S[s.m] { // everything fits; also avoids overflow
		return s.m
	}
	lim := s.S[e] + c
	return e + sort.Search(s.m-e+1, func(i int) bool { return s.S[e+i] > lim }) - 1
}

// lower returns the smallest s' <= e with S[e]-S[s'] <= c.
func (s *seq) lower(e int, c int64) int {
	lim := s.S[e] - c
	return sort.Search(e+1, func(i int) bool { return s.S[i] >= lim })
}

// fitsRelaxed reports whether the parts can cover the sequence when a part
// may stay empty: greedy filling is then optimal.
func (s *seq) fitsRelaxed(maxCost []int64) bool {
	e := 0
	for _, c := range maxCost {
		e = s.upper(e, c)
	}
	return e == s.m
}

const inf = math.MaxInt64 / 4

// split finds the segment ends that minimise the sum of boundary cuts
// subject to segment p weighing at most maxCost[p] and every segment
// holding a positive weight. ok is false when no such split exists.
//
// It is a dynamic program over (part, end) restricted to the ends that
// greedy bounds from both sides allow; each row is a sliding-window minimum,
// so the time is linear in the total width of those ranges.
func (s *seq) split(maxCost []int64) (ends []int32, cut int64, ok bool) {
	k := len(maxCost)
	m := s.m
	if k < 1 || len(s.posAt) < k {
		return nil, 0, false
	}
	L := make([]int, k)
	H := make([]int, k)
	e := 0
	for p := 0; p < k; p++ {
		e = s.upper(e, maxCost[p])
		H[p] = e
	}
	if H[k-1] < m {
		return nil, 0, false
	}
	L[k-1] = m
	for p := k - 1; p > 0; p-- {
		L[p-1] = s.lower(L[p], maxCost[p])
	}
	np := len(s.posAt)
	for p := 0; p < k-1; p++ {
		L[p] = max(L[p], int(s.posAt[p])+1)
		H[p] = min(H[p], int(s.posAt[np-(k-1-p)]))
		if L[p] > H[p] {
			return nil, 0, false
		}
	}
	H[k-1] = m
	// f is the current row of the program (the least cut of parts 0..p
	// ending at e); only the choices of every row are kept, for the way
	// back.
	choice := make([][]int32, k)
	f := make([]int64, H[0]-L[0]+1)
	for e := L[0]; e <= H[0]; e++ {
		f[e-L[0]] = s.boundaryCut(e)
	}
	dq := make([]int32, 0, 64)
	for p := 1; p < k; p++ {
		fp := make([]int64, H[p]-L[p]+1)
		cp := make([]int32, H[p]-L[p]+1)
		prev, pl, ph := f, L[p-1], H[p-1]
		dq = dq[:0]
		head := 0
		next := pl // next start to push
		lo := pl   // smallest start that fits
		any := false
		for e := L[p]; e <= H[p]; e++ {
			for next <= ph && next <= int(s.last[e]) {
				if v := prev[next-pl]; v < inf {
					for len(dq) > head && prev[int(dq[len(dq)-1])-pl] >= v {
						dq = dq[:len(dq)-1]
					}
					dq = append(dq, int32(next))
				}
				next++
			}
			for lo < e && s.S[e]-s.S[lo] > maxCost[p] {
				lo++
			}
			for head < len(dq) && int(dq[head]) < lo {
				head++
			}
			if head == len(dq) {
				fp[e-L[p]] = inf
				cp[e-L[p]] = -1
				continue
			}
			b := dq[head]
			fp[e-L[p]] = prev[int(b)-pl] + s.boundaryCut(e)
			cp[e-L[p]] = b
			any = true
			if head > 1024 && head*2 > len(dq) {
				dq = append(dq[:0], dq[head:]...)
				head = 0
			}
		}
		if !any {
			return nil, 0, false
		}
		f, choice[p] = fp, cp
	}
	best := f[m-L[k-1]]
	if best >= inf {
		return nil, 0, false
	}
	ends = make([]int32, k)
	e = m
	for p := k - 1; p > 0; p-- {
		ends[p] = int32(e)
		e = int(choice[p][e-L[p]])
	}
	ends[0] = int32(e)
	return ends, best, true
}

// capsWithin converts the imbalance bound into the largest integer weight
// each part may hold: the largest c with float64(c) <= limits[p].
func capsWithin(total int64, limits []float64) []int64 {
	out := make([]int64, len(limits))
	for p, lim := range limits {
		out[p] = largestInt(total, func(c int64) bool { return float64(c) <= lim })
	}
	return out
}

// capsBottleneck gives the largest integer weight each part may hold when
// no part's weight divided by its capacity may exceed b.
func capsBottleneck(total int64, caps []float64, b float64) []int64 {
	out := make([]int64, len(caps))
	for p, c := range caps {
		out[p] = largestInt(total, func(x int64) bool { return float64(x)/c <= b })
	}
	return out
}

// largestInt returns the largest x in [0, total] with ok(x), for ok true at
// 0 and monotone; -1 when ok(0) is false.
func largestInt(total int64, ok func(int64) bool) int64 {
	if !ok(0) {
		return -1
	}
	if ok(total) {
		return total
	}
	lo, hi := int64(0), total // ok(lo), !ok(hi)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// bottleneck is the largest weight/capacity over the segments of a split.
func (s *seq) bottleneck(ends []int32, caps []float64) float64 {
	var b float64
	start := 0
	for p, e := range ends {
		if v := float64(s.S[e]-s.S[start]) / caps[p]; v > b {
			b = v
		}
		start = int(e)
	}
	return b
}

// minBottleneck returns the smallest b for which a split exists in which no
// segment's weight divided by its part's capacity exceeds b.
func (s *seq) minBottleneck(caps []float64) float64 {
	total := s.S[s.m]
	minCap := caps[0]
	for _, c := range caps {
		minCap = math.Min(minCap, c)
	}
	relaxed := func(b float64) bool { return s.fitsRelaxed(capsBottleneck(total, caps, b)) }
	exact := func(b float64) bool {
		_, _, ok := s.split(capsBottleneck(total, caps, b))
		return ok
	}
	if relaxed(0) {
		return 0
	}
	b := bisectFloat(0, float64(total)/minCap, relaxed)
	if exact(b) {
		return b
	}
	// The relaxed optimum leaves some part without work. Any split with one
	// positive position in each of the first k-1 parts bounds the answer.
	k := len(caps)
	ends := make([]int32, k)
	for p := 0; p < k-1; p++ {
		ends[p] = s.posAt[p] + 1
	}
	ends[k-1] = int32(s.m)
	return bisectFloat(b, s.bottleneck(ends, caps), exact)
}

// bisectFloat returns the smallest positive float64 b in (lo, hi] with
// ok(b), given ok(hi) and !ok(lo) and ok monotone. It bisects over the bit
// patterns, which order positive floats, so the answer is exact.
func bisectFloat(lo, hi float64, ok func(float64) bool) float64 {
	l, h := math.Float64bits(lo), math.Float64bits(hi)
	for h-l > 1 {
		mid := l + (h-l)/2
		if ok(math.Float64frombits(mid)) {
			h = mid
		} else {
			l = mid
		}
	}
	return math.Float64frombits(h)
}

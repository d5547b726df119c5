package native

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/rookery-ml/rookery/exec/plan"
	"github.com/rookery-ml/rookery/graph"
)

// ErrDevice marks a call that names a buffer the device does not hold, or
// a launch whose arguments do not fit its buffers: a plan that is not
// Lower's, or a session used after Close.
var ErrDevice = errors.New("native: bad device call")

// device keeps a plan's buffers in Go memory and runs its launches on
// the kernels of this package, threads goroutines at a time.
type device struct {
	threads int
	// scratch holds the kernels' scratch buffers (see scratch), reused
	// across launches
	pool sync.Pool
	// teams keeps the teams of finished Runs, float32 and float64 ones
	teams [2]sync.Pool

	mu   sync.RWMutex
	mem  []slab   // by handle-1
	free []uint64 // handles to reuse
}

// slab is one buffer: 8-byte aligned memory, bytes long.
type slab struct {
	words []float64
	bytes int64
}

func newDevice(threads int) *device { return &device{threads: max(threads, 1)} }

// Alloc implements plan.Device.
func (d *device) Alloc(bytes int64) (uint64, error) {
	if bytes < 0 {
		return 0, fmt.Errorf("%w: allocation of %d bytes", ErrDevice, bytes)
	}
	s := slab{words: make([]float64, (bytes+7)/8+1), bytes: bytes}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.free); n > 0 {
		h := d.free[n-1]
		d.free = d.free[:n-1]
		d.mem[h-1] = s
		return h, nil
	}
	d.mem = append(d.mem, s)
	return uint64(len(d.mem)), nil
}

// slabOf returns buffer h; d.mu is held.
func (d *device) slabOf(h uint64) (*slab, error) {
	if h == 0 || h > uint64(len(d.mem)) || d.mem[h-1].words == nil {
		return nil, fmt.Errorf("%w: no buffer %d", ErrDevice, h)
	}
	return &d.mem[h-1], nil
}

// Free implements plan.Device.
func (d *device) Free(h uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.slabOf(h); err != nil {
		return err
	}
	d.mem[h-1] = slab{}
	d.free = append(d.free, h)
	return nil
}

// Upload implements plan.Device.
func (d *device) Upload(dst uint64, src []byte) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	s, err := d.slabOf(dst)
	if err != nil {
		return err
	}
	if int64(len(src)) > s.bytes {
		return fmt.Errorf("%w: upload of %d bytes into %d", ErrDevice, len(src), s.bytes)
	}
	copy(s.raw(), src)
	return nil
}

// Download implements plan.Device.
func (d *device) Download(dst []byte, src uint64) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	s, err := d.slabOf(src)
	if err != nil {
		return err
	}
	if int64(len(dst)) > s.bytes {
		return fmt.Errorf("%w: download of %d bytes from %d", ErrDevice, len(dst), s.bytes)
	}
	copy(dst, s.raw())
	return nil
}

func (s *slab) raw() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&s.words[0])), s.bytes)
}

// Host32 implements plan.HostDevice.
func (d *device) Host32(h uint64) ([]float32, error) { return host[float32](d, h) }

// Host64 implements plan.HostDevice.
func (d *device) Host64(h uint64) ([]float64, error) { return host[float64](d, h) }

func host[T float](d *device, h uint64) ([]T, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	s, err := d.slabOf(h)
	if err != nil {
		return nil, err
	}
	return viewOf[T](s), nil
}

func viewOf[T float](s *slab) []T {
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(&s.words[0])), s.bytes/int64(unsafe.Sizeof(z)))
}

// Close implements plan.Device.
func (d *device) Close() error { return nil }

// Run implements plan.Device: it runs the launches in order, each split
// across the device's threads where it is large enough to pay for it.
func (d *device) Run(dt graph.DType, ls []plan.Launch, bufs []uint64) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if dt == graph.Float64 {
		return run[float64](d, ls, bufs)
	}
	return run[float32](d, ls, bufs)
}

type float interface{ ~float32 | ~float64 }

// maxPtrs is the most buffer arguments a kernel takes.
const maxPtrs = 5

// launch is one launch ready to run: its kernel, ints, scalars and the
// elements of its buffer arguments from their offsets on.
type launch[T float] struct {
	l     *plan.Launch
	k     kernelFunc[T]
	ptrs  [maxPtrs][]T
	parts int // how many threads share it
	// scratch holds each part's share of a result that the parts
	// compute separately and run then sums: a gemm split along k, a
	// convolution's filter gradient
	scratch [][]T
	dev     *device
}

// kernelFunc runs part of parts of a launch.
type kernelFunc[T float] func(x *launch[T], part, parts int)

// team is the threads of one Run: the caller runs part 0 of each launch
// (cur), each worker one other part; work carries the part to the
// workers and done tells the caller they have finished it, and how. The
// workers start with the first launch worth splitting and end with the
// Run (stop); the team, its channels and buffers, is kept in the device
// for the next.
type team[T float] struct {
	cur     launch[T]
	work    []chan int
	done    chan error
	bufs    [][]T // each part's share of a result summed at the end
	running bool
}

// scratch returns parts buffers of n elements for partial products.
func (tm *team[T]) scratch(parts, n int) [][]T {
	for len(tm.bufs) < parts {
		tm.bufs = append(tm.bufs, nil)
	}
	for i := range parts {
		if cap(tm.bufs[i]) < n {
			tm.bufs[i] = make([]T, n)
		}
		tm.bufs[i] = tm.bufs[i][:n]
	}
	return tm.bufs[:parts]
}

func run[T float](d *device, ls []plan.Launch, bufs []uint64) error {
	tm := getTeam[T](d)
	defer func() {
		tm.stop()
		d.teams[teamIndex[T]()].Put(tm)
	}()
	x := &tm.cur
	for i := range ls {
		if err := prepare(d, &ls[i], bufs, x); err != nil {
			return fmt.Errorf("launch %d (%s, node %d): %w", i, ls[i].Kernel, ls[i].Node, err)
		}
		fail := func(err error) error {
			return fmt.Errorf("launch %d (%s, node %d): %w", i, ls[i].Kernel, ls[i].Node, err)
		}
		x.parts = 1
		if g := x.l.Gemm; g == nil {
			x.parts = min(d.threads, splits(x))
		} else if g.M*g.N <= maxSplitMN && g.K >= 2*minSplitK {
			x.parts = min(d.threads, g.K/minSplitK)
		}
		if x.parts <= 1 {
			if err := call(x, 0); err != nil {
				return fail(err)
			}
			continue
		}
		if !tm.running {
			tm.start()
		}
		if n := partials(x); n > 0 {
			x.scratch = tm.scratch(x.parts, n)
		}
		for p := 1; p < x.parts; p++ {
			tm.work[p-1] <- p
		}
		err := call(x, 0)
		for p := 1; p < x.parts; p++ {
			if werr := <-tm.done; werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			return fail(err)
		}
		if x.scratch != nil {
			if x.l.Gemm != nil {
				sumParts(x)
			} else {
				sumFilterGrad(x)
			}
		}
	}
	return nil
}

// getTeam returns a team of the device's threads-1 workers, not started,
// from the device's pool where there is one.
func getTeam[T float](d *device) *team[T] {
	tm, _ := d.teams[teamIndex[T]()].Get().(*team[T])
	if tm == nil || len(tm.work) != d.threads-1 {
		tm = &team[T]{work: make([]chan int, d.threads-1), done: make(chan error, d.threads-1)}
		for i := range tm.work {
			tm.work[i] = make(chan int, 1)
		}
	}
	return tm
}

// start starts the workers; they end at stop.
func (tm *team[T]) start() {
	tm.running = true
	for _, c := range tm.work {
		go tm.worker(c)
	}
}

// worker runs the parts sent on c until it gets -1, which it answers
// before it ends.
func (tm *team[T]) worker(c chan int) {
	for p := range c {
		if p < 0 {
			tm.done <- nil
			return
		}
		tm.done <- call(&tm.cur, p)
	}
}

// stop ends the workers, if started, and waits until each has.
func (tm *team[T]) stop() {
	tm.cur = launch[T]{}
	if !tm.running {
		return
	}
	tm.running = false
	for _, c := range tm.work {
		c <- -1
	}
	for range tm.work {
		<-tm.done
	}
}

// teamIndex is the index of T's pool of teams in device.teams.
func teamIndex[T float]() int {
	var z T
	if _, ok := any(z).(float64); ok {
		return 1
	}
	return 0
}

// minWork is the least number of elements a launch touches for it to be
// split across threads.
const minWork = 1 << 15

// splits is how many parts launch x may be split into.
func splits[T float](x *launch[T]) int {
	work, units := workOf(x)
	if work < minWork {
		return 1
	}
	return min(units, int(work/(minWork/2)))
}

// prepare resolves launch l's kernel and buffers into x.
func prepare[T float](d *device, l *plan.Launch, bufs []uint64, x *launch[T]) error {
	x.l = l
	x.k = nil
	x.scratch = nil
	x.dev = d
	x.ptrs = [maxPtrs][]T{}
	view := func(buf, off int) ([]T, error) {
		if buf < 0 || buf >= len(bufs) || off < 0 {
			return nil, fmt.Errorf("%w: buffer %d+%d of %d", ErrDevice, buf, off, len(bufs))
		}
		s, err := d.slabOf(bufs[buf])
		if err != nil {
			return nil, err
		}
		v := viewOf[T](s)
		if off > len(v) {
			return nil, fmt.Errorf("%w: offset %d past %d elements", ErrDevice, off, len(v))
		}
		return v[off:], nil
	}
	if g := l.Gemm; g != nil {
		var err error
		for i, b := range [3]int{g.A, g.B, g.C} {
			if x.ptrs[i], err = view(b, 0); err != nil {
				return err
			}
		}
		return nil
	}
	k, ok := kernelFor[T](plan.KernelBase(l.Kernel))
	if !ok {
		return fmt.Errorf("%w: no kernel %q", ErrDevice, l.Kernel)
	}
	sig, _ := plan.KernelSig(plan.KernelBase(l.Kernel))
	if len(sig) != len(l.Args) {
		return fmt.Errorf("%w: %d arguments for %d parameters", ErrDevice, len(l.Args), len(sig))
	}
	np := 0
	for i, t := range sig {
		a := l.Args[i]
		if a.Type != t {
			return fmt.Errorf("%w: argument %d is %v, want %v", ErrDevice, i, a.Type, t)
		}
		if t == plan.ArgPtr {
			v, err := view(a.Buf, a.Off)
			if err != nil {
				return err
			}
			x.ptrs[np] = v
			np++
		}
	}
	x.k = k
	return nil
}

// call runs part p of launch x, turning an index out of range (a plan
// that does not fit its buffers) into an error.
func call[T float](x *launch[T], p int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDevice, r)
		}
	}()
	if x.l.Gemm != nil {
		runGemm(x, p, x.parts)
	} else {
		x.k(x, p, x.parts)
	}
	return nil
}

// partials is the size of each part's share of the result of launch x
// where its parts compute shares that are summed at the end (a gemm
// split along k, a convolution's filter gradient), else 0.
func partials[T float](x *launch[T]) int {
	if g := x.l.Gemm; g != nil {
		return g.M * g.N
	}
	if plan.KernelBase(x.l.Kernel) == "conv_filter_grad" {
		g := x.geom()
		return g.cout * g.z()
	}
	return 0
}

// scratch returns a buffer of at least n elements of the largest float
// (8 bytes), for a kernel to view with scratchOf; release gives it back.
func (d *device) scratch(n int) *[]float64 {
	if b, ok := d.pool.Get().(*[]float64); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]float64, n)
	return &b
}

func (d *device) release(b *[]float64) { d.pool.Put(b) }

// scratchOf views a scratch buffer as elements of T.
func scratchOf[T float](b *[]float64) []T {
	var z T
	n := len(*b) * 8 / int(unsafe.Sizeof(z))
	return unsafe.Slice((*T)(unsafe.Pointer(&(*b)[0])), n)
}

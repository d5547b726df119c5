package gemm

import (
	"runtime"
	"sync"
)

type float interface{ ~float32 | ~float64 }

// kernelFunc computes alpha·A·B + beta·C on one mr×nr tile of C at c (row
// stride ldc), from A's k columns of mr values lda apart (mr when packed by
// packA) and B's k rows of nr values ldb apart (nr when packed by packB);
// k >= 1. beta == 0 writes the tile without reading it. A kernel's rows
// variant reads A as mr rows of k values, lda apart.
type kernelFunc[T float] func(k int, a *T, lda int, b *T, ldb int, c *T, ldc int, alpha, beta T)

// kernel is a micro-kernel, its tile and the cache blocks that suit it.
type kernel[T float] struct {
	name   string
	mr, nr int
	fn     kernelFunc[T]
	fnRows kernelFunc[T] // nil: A not transposed is always packed
	ok     bool          // whether this CPU runs it

	mc, kc, nc int // set by block
}

// kernels32 and kernels64 list the micro-kernels built into this binary,
// the portable one first; the last whose ok is set is the one used.
var (
	kernels32 = append([]kernel[float32]{{name: "pure Go", mr: goMR, nr: goNR, fn: kernelGo[float32], ok: true}}, archKernels32...)
	kernels64 = append([]kernel[float64]{{name: "pure Go", mr: goMR, nr: goNR, fn: kernelGo[float64], ok: true}}, archKernels64...)
)

// block sets the cache blocking of k for elements of es bytes: a kc×nr
// panel of B about 16 KiB (half of L1), an mc×kc block of A about 192 KiB
// (inside L2), and a kc×nc block of B in the shared cache.
func (k kernel[T]) block(es int) kernel[T] {
	k.kc = max(64, min(384, 16384/(k.nr*es)))
	k.mc = max(k.mr, 196608/(k.kc*es)/k.mr*k.mr)
	k.nc = max(k.nr, 4096/k.nr*k.nr)
	return k
}

func best[T float](ks []kernel[T], es int) kernel[T] {
	for i := len(ks) - 1; i >= 0; i-- {
		if ks[i].ok {
			return ks[i].block(es)
		}
	}
	panic("gemm: no kernel")
}

var (
	kern32 kernel[float32]
	kern64 kernel[float64]
	// simd reports whether a vector kernel runs here. Without one,
	// Implementation leaves Sgemm and Dgemm to gonum: its loops over
	// vectorised axpy beat the blocked path around a scalar kernel
	// (BenchmarkSgemm: 23 against 3.4 GFLOPS at 64×784×256 on AVX2).
	simd bool
)

func init() {
	kern32 = best(kernels32, 4)
	kern64 = best(kernels64, 8)
	simd = kern32.name != kernels32[0].name
}

// KernelName names the micro-kernel that Implementation's Sgemm and Dgemm
// run on this CPU: "AVX-512", "AVX2+FMA", or "pure Go" where there is no
// vector kernel and gonum's own Sgemm and Dgemm run.
func KernelName() string { return kern32.name }

// workspace holds one goroutine's packing buffers.
type workspace[T float] struct {
	a, b, tile []T
}

// pools keeps workspaces and split products for reuse, so that a product
// allocates nothing once the pools are warm.
type pools[T float] struct {
	ws, calls sync.Pool
}

func newPools[T float]() *pools[T] {
	p := new(pools[T])
	p.ws.New = func() any { return new(workspace[T]) }
	p.calls.New = func() any { return new(call[T]) }
	return p
}

var (
	pools32 = newPools[float32]()
	pools64 = newPools[float64]()
)

func grow[T float](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// args is one product, C = alpha·op(A)·op(B) + beta·C, with checked
// arguments.
type args[T float] struct {
	aTrans, bTrans bool
	m, n, k        int
	alpha          T
	a              []T
	lda            int
	b              []T
	ldb            int
	beta           T
	c              []T
	ldc            int
}

// parallelMin is the least m·n·k for which a product is split across
// goroutines. Below it (some 0.2 ms of work on one core) a second core
// costs more than it saves: each span reads all of the operand it does
// not split, and the goroutines must start and meet. On the 2-core
// development machine (BenchmarkSplit) 64×784×256 and 256³ run faster on
// one goroutine, 320³ about as fast on either, 256×784×256 1.5× faster
// on two. (A variable: the tests
// lower it to reach the split on small products.)
var parallelMin = 24 << 20

// gemm computes the product described by p with kernel kn, on up to
// GOMAXPROCS goroutines. The arguments have been checked.
func gemm[T float](kn *kernel[T], pl *pools[T], p *args[T]) {
	if p.m == 0 || p.n == 0 {
		return
	}
	if p.alpha == 0 || p.k == 0 {
		scale(p.beta, p.m, p.n, p.c, p.ldc)
		return
	}
	parts := 1
	if p.m*p.n*p.k >= parallelMin {
		parts = runtime.GOMAXPROCS(0)
	}
	// Split m or n into spans of whole tiles, one per goroutine: the one
	// with more tiles, except that m is split when it has tiles enough and
	// B is read in place, as then no goroutine packs what another packs too
	// (splitting n, each packs all of A).
	mTiles := (p.m + kn.mr - 1) / kn.mr
	nTiles := (p.n + kn.nr - 1) / kn.nr
	splitN := nTiles >= mTiles
	if _, directB := direct(kn, p); directB && mTiles >= 2*parts {
		splitN = false
	}
	tiles := mTiles
	if splitN {
		tiles = nTiles
	}
	parts = min(parts, tiles)
	if parts <= 1 {
		serial(kn, pl, p)
		return
	}
	c := pl.calls.Get().(*call[T])
	c.kn, c.pools, c.p, c.splitN, c.parts, c.tiles = kn, pl, *p, splitN, parts, tiles
	c.wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		go c.runPart(i)
	}
	c.runPart(0)
	c.wg.Wait()
	c.p = args[T]{}
	c.kn, c.pools = nil, nil
	pl.calls.Put(c)
}

// scale sets C = beta·C, or C = 0 when beta is 0.
func scale[T float](beta T, m, n int, c []T, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		r := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(r)
			continue
		}
		for j := range r {
			r[j] *= beta
		}
	}
}

// directBMaxM is the largest m for which a non-transposed B is read in
// place rather than packed: with few rows of A, packing B costs as much as
// the product itself.
var directBMaxM = 256

// directAPanels is the most panels of B (nr columns each) for which A is
// read in place rather than packed: each value of A meets every panel, and
// with a few, packing A costs as much as the product (A·w with w a few
// columns wide; X·Cᵀ for the 4×10 centres of k-means restarts, where
// BenchmarkTall gave 66 GFLOPS at 3 panels and 46 at 2).
var directAPanels = 3

// direct says which operands serial reads in place for the product p.
func direct[T float](kn *kernel[T], p *args[T]) (a, b bool) {
	a = p.n <= directAPanels*kn.nr && (p.aTrans || kn.fnRows != nil)
	b = !p.bTrans && p.m <= directBMaxM
	return a, b
}

// serial computes the product on this goroutine: the loops of Goto's
// algorithm around the micro-kernel, B packed in kc×nc blocks and A in
// mc×kc blocks. Where packing would cost as much as the product (see
// direct), whole panels are read in place and only the last, partial one
// packed.
func serial[T float](kn *kernel[T], pl *pools[T], p *args[T]) {
	w := pl.ws.Get().(*workspace[T])
	mr, nr := kn.mr, kn.nr
	kc := min(kn.kc, p.k)
	mc := min(kn.mc, roundUp(p.m, mr))
	nc := min(kn.nc, roundUp(p.n, nr))
	w.a = grow(w.a, mc*deepest(kc))
	w.b = grow(w.b, deepest(kc)*nc)
	w.tile = grow(w.tile, mr*nr)
	directA, directB := direct(kn, p)
	blk := block[T]{kn: kn, a: w.a, b: w.b, tile: w.tile, alpha: p.alpha, ldc: p.ldc}
	for jc := 0; jc < p.n; jc += nc {
		ncur := min(nc, p.n-jc)
		for pc, kcur := 0, 0; pc < p.k; pc += kcur {
			kcur = depth(p.k-pc, kc)
			blk.beta = p.beta
			if pc > 0 {
				blk.beta = 1
			}
			blk.bd, blk.ldb = nil, 0
			if directB {
				blk.bd, blk.ldb = p.b[pc*p.ldb+jc:], p.ldb
				if full := ncur / nr * nr; full < ncur {
					packB(false, p.b, p.ldb, pc, jc+full, kcur, ncur-full, nr, w.b[full*kcur:])
				}
			} else {
				packB(p.bTrans, p.b, p.ldb, pc, jc, kcur, ncur, nr, w.b)
			}
			for ic := 0; ic < p.m; ic += mc {
				mcur := min(mc, p.m-ic)
				blk.ad, blk.lda = nil, 0
				if directA {
					if p.aTrans {
						blk.ad, blk.lda = p.a[pc*p.lda+ic:], p.lda
					} else {
						blk.ad, blk.lda = p.a[ic*p.lda+pc:], p.lda
					}
					blk.aTrans = p.aTrans
					if full := mcur / mr * mr; full < mcur {
						packA(p.aTrans, p.a, p.lda, ic+full, pc, mcur-full, kcur, mr, w.a[full*kcur:])
					}
				} else {
					packA(p.aTrans, p.a, p.lda, ic, pc, mcur, kcur, mr, w.a)
				}
				blk.c = p.c[ic*p.ldc+jc:]
				blk.run(mcur, ncur, kcur)
			}
		}
	}
	pl.ws.Put(w)
}

// depth is the depth of the next block of k, with rest values of k left
// and blocks kc deep: kc, or all that is left where that is at most
// deepest(kc). Each block is a pass over C's block, and a pass for a few
// values of k moves as many bytes as a full one: the weight gradient
// Hᵀ·dY of a replica's 131 rows (k = 128 + 3) gave its step's five
// products 12.1 ms, against 10.9–11.1 with one block
// (BenchmarkRowsPerReplicaCold).
func depth(rest, kc int) int {
	if rest <= deepest(kc) {
		return rest
	}
	return kc
}

// deepest is the deepest block of k for blocks kc deep: a last block may
// be a quarter deeper.
func deepest(kc int) int { return kc + kc/4 }

// block is an mc×kc block of A times a kc×nc block of B, added into C.
type block[T float] struct {
	kn      *kernel[T]
	a, b    []T // packed panels
	ad, bd  []T // A and B in place, or nil
	aTrans  bool
	lda     int
	ldb     int
	c, tile []T
	ldc     int
	alpha   T
	beta    T
}

// run runs the micro-kernel over the mc×nc block of C, with A's and B's
// whole panels read in place where ad and bd are set, from the packed
// buffers otherwise. Tiles cut by the block's edge go through tile and are
// copied into C.
func (blk *block[T]) run(mc, nc, kc int) {
	kn, c, ldc, alpha, beta, tile := blk.kn, blk.c, blk.ldc, blk.alpha, blk.beta, blk.tile
	mr, nr := kn.mr, kn.nr
	for jr := 0; jr < nc; jr += nr {
		nrr := min(nr, nc-jr)
		pb, ldb := &blk.b[jr*kc], nr
		if blk.bd != nil && nrr == nr {
			pb, ldb = &blk.bd[jr], blk.ldb
		}
		for ir := 0; ir < mc; ir += mr {
			mrr := min(mr, mc-ir)
			fn, pa, lda := kn.fn, &blk.a[ir*kc], mr
			if blk.ad != nil && mrr == mr {
				if blk.aTrans {
					pa, lda = &blk.ad[ir], blk.lda
				} else {
					fn, pa, lda = kn.fnRows, &blk.ad[ir*blk.lda], blk.lda
				}
			}
			if mrr == mr && nrr == nr {
				fn(kc, pa, lda, pb, ldb, &c[ir*ldc+jr], ldc, alpha, beta)
				continue
			}
			fn(kc, pa, lda, pb, ldb, &tile[0], nr, alpha, 0)
			for i := 0; i < mrr; i++ {
				dst := c[(ir+i)*ldc+jr : (ir+i)*ldc+jr+nrr]
				src := tile[i*nr : i*nr+nrr]
				if beta == 0 {
					copy(dst, src)
					continue
				}
				for j, v := range src {
					dst[j] = v + beta*dst[j]
				}
			}
		}
	}
}

func roundUp(x, to int) int { return (x + to - 1) / to * to }

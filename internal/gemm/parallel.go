package gemm

import "sync"

// A product large enough to split runs its first span on the calling
// goroutine and each other span on a goroutine of its own, which ends
// before the product returns: nothing outlives a call (the goroutine-leak
// checks in Rookery's tests hold), at the price of one small allocation
// per extra span.

// call is a product split into parts spans of whole tiles along n (splitN)
// or m.
type call[T float] struct {
	kn           *kernel[T]
	pools        *pools[T]
	p            args[T]
	splitN       bool
	parts, tiles int
	wg           sync.WaitGroup
}

func (c *call[T]) runPart(i int) {
	lo := c.tiles * i / c.parts
	hi := c.tiles * (i + 1) / c.parts
	p := c.p
	if c.splitN {
		j0, j1 := lo*c.kn.nr, min(hi*c.kn.nr, p.n)
		p.n = j1 - j0
		if p.bTrans {
			p.b = p.b[j0*p.ldb:]
		} else {
			p.b = p.b[j0:]
		}
		p.c = p.c[j0:]
	} else {
		i0, i1 := lo*c.kn.mr, min(hi*c.kn.mr, p.m)
		p.m = i1 - i0
		if p.aTrans {
			p.a = p.a[i0:]
		} else {
			p.a = p.a[i0*p.lda:]
		}
		p.c = p.c[i0*p.ldc:]
	}
	if p.m > 0 && p.n > 0 {
		serial(c.kn, c.pools, &p)
	}
	if i > 0 {
		c.wg.Done()
	}
}

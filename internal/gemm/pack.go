package gemm

// packA copies the mc×kc block of op(A) at row ic, column pc into dst as
// ⌈mc/mr⌉ panels of mr rows: panel r holds, for each of the kc columns in
// turn, its mr values (rows past mc are zero). op(A) is A, or Aᵀ when
// trans is set (A then stored k×m).
func packA[T float](trans bool, a []T, lda, ic, pc, mc, kc, mr int, dst []T) {
	for ir := 0; ir < mc; ir += mr {
		mrr := min(mr, mc-ir)
		d := dst[ir*kc : ir*kc+kc*mr]
		if trans {
			for p := 0; p < kc; p++ {
				src := a[(pc+p)*lda+ic+ir:]
				src = src[:mrr]
				dp := d[p*mr : p*mr+mr]
				copy(dp, src)
				clear(dp[mrr:])
			}
			continue
		}
		for i := 0; i < mrr; i++ {
			src := a[(ic+ir+i)*lda+pc:]
			src = src[:kc]
			for p, v := range src {
				d[p*mr+i] = v
			}
		}
		for i := mrr; i < mr; i++ {
			for p := 0; p < kc; p++ {
				d[p*mr+i] = 0
			}
		}
	}
}

// packB copies the kc×nc block of op(B) at row pc, column jc into dst as
// ⌈nc/nr⌉ panels of nr columns: panel j holds, for each of the kc rows in
// turn, its nr values (columns past nc are zero). op(B) is B, or Bᵀ when
// trans is set (B then stored n×k).
func packB[T float](trans bool, b []T, ldb, pc, jc, kc, nc, nr int, dst []T) {
	for jr := 0; jr < nc; jr += nr {
		nrr := min(nr, nc-jr)
		d := dst[jr*kc : jr*kc+kc*nr]
		if !trans {
			for p := 0; p < kc; p++ {
				src := b[(pc+p)*ldb+jc+jr:]
				src = src[:nrr]
				dp := d[p*nr : p*nr+nr]
				copy(dp, src)
				clear(dp[nrr:])
			}
			continue
		}
		for j := 0; j < nrr; j++ {
			src := b[(jc+jr+j)*ldb+pc:]
			src = src[:kc]
			for p, v := range src {
				d[p*nr+j] = v
			}
		}
		for j := nrr; j < nr; j++ {
			for p := 0; p < kc; p++ {
				d[p*nr+j] = 0
			}
		}
	}
}

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
			packRows(a[pc*lda+ic+ir:], lda, kc, mrr, mr, d)
		} else {
			packCols(a[(ic+ir)*lda+pc:], lda, mrr, kc, mr, d)
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
		if trans {
			packCols(b[(jc+jr)*ldb+pc:], ldb, nrr, kc, nr, d)
		} else {
			packRows(b[pc*ldb+jc+jr:], ldb, kc, nrr, nr, d)
		}
	}
}

// packRows copies rows rows of cols values (ld apart in src) into dst, w
// values a row, zero past cols.
func packRows[T float](src []T, ld, rows, cols, w int, dst []T) {
	for r := 0; r < rows; r++ {
		d := dst[r*w : r*w+w]
		copy(d, src[r*ld:r*ld+cols])
		clear(d[cols:])
	}
}

// packCols copies the transpose of src (rows rows of cols values, ld
// apart) into dst: for each of the cols columns in turn, its rows values
// followed by zeros up to w.
func packCols[T float](src []T, ld, rows, cols, w int, dst []T) {
	dst = dst[:cols*w]
	i := 0
	for ; i+4 <= rows; i += 4 {
		r0 := src[i*ld:][:cols]
		r1 := src[(i+1)*ld:][:cols]
		r2 := src[(i+2)*ld:][:cols]
		r3 := src[(i+3)*ld:][:cols]
		for p := range r0 {
			q := dst[p*w+i : p*w+i+4]
			q[0], q[1], q[2], q[3] = r0[p], r1[p], r2[p], r3[p]
		}
	}
	for ; i < rows; i++ {
		r := src[i*ld:][:cols]
		for p, v := range r {
			dst[p*w+i] = v
		}
	}
	if rows < w {
		for p := 0; p < cols; p++ {
			clear(dst[p*w+rows : p*w+w])
		}
	}
}

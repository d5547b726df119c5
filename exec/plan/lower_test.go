package plan

import "testing"

func TestGrid1D(t *testing.T) {
	for _, tc := range []struct{ n, grid int }{
		{0, 1}, {1, 1}, {256, 1}, {257, 2}, {262144, 1024}, {MaxGrid * 256, MaxGrid}, {MaxGrid*256 + 1, MaxGrid},
	} {
		g, b := grid1D(tc.n)
		if g != (Dim3{tc.grid, 1, 1}) || b != (Dim3{BlockSize, 1, 1}) {
			t.Errorf("grid1D(%d) = %v, %v; want grid %d, block %d", tc.n, g, b, tc.grid, BlockSize)
		}
	}
}

package ravml

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rookery-ml/rookery/graph"
)

func TestKNNScores(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		data string
		want float64 // scikit-learn 1.2 on the same split
	}{{"iris", 0.967}, {"digits", 0.986}} {
		d := loadSplit(t, tc.data)
		m := NewKNNClassifier(5)
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatal(err)
		}
		got, err := m.Score(ctx, d.teX, d.teY)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: KNN(5) accuracy %.4f (scikit-learn %.3f)", tc.data, got, tc.want)
		if got < tc.want-0.01 {
			t.Errorf("%s: got accuracy %.4f, want at least %.3f", tc.data, got, tc.want-0.01)
		}
	}
}

// bruteNeighbours is the reference search: every exact squared distance,
// sorted, ties broken by the lower row.
func bruteNeighbours(x, q matrix, k int) []neighbour {
	out := make([]neighbour, 0, q.rows*k)
	all := make([]neighbour, x.rows)
	for i := 0; i < q.rows; i++ {
		for g := range all {
			all[g] = neighbour{sqDist(q.row(i), x.row(g)), g}
		}
		sortNeighbours(all)
		out = append(out, all[:k]...)
	}
	return out
}

// TestKNNExact checks the screened search against brute force on data
// made to defeat it: many exact ties, duplicated rows, a large common
// offset (which the shards' centring must absorb), data too small or too
// large for float32 (which the shards' scaling must absorb), queries far
// outside the data, and tight clusters whose rows differ by less than
// float32 can resolve. Every
// neighbour and distance must be the exact float64 one, in float32 and
// float64 shards alike and for any number of shards; where the error
// bound cannot clear a shard it must be measured in full, so the tied
// and clustered data and the far queries must take that path.
func TestKNNExact(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	gen := func(rows, cols int, f func(i, j int) float64) matrix {
		m := matrix{rows: rows, cols: cols, data: make([]float64, rows*cols)}
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				m.data[i*cols+j] = f(i, j)
			}
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		x, q     matrix
		k        int
		wantScan bool
	}{
		{"gaussian", gen(700, 20, func(int, int) float64 { return rng.NormFloat64() }), gen(90, 20, func(int, int) float64 { return rng.NormFloat64() }), 5, false},
		{"ties", gen(600, 6, func(int, int) float64 { return float64(rng.IntN(3)) }), gen(70, 6, func(int, int) float64 { return float64(rng.IntN(3)) }), 7, true},
		{"duplicates", gen(500, 9, func(i, j int) float64 { return float64((i%5)*j) / 10 }), gen(40, 9, func(i, j int) float64 { return float64((i%7)*j) / 10 }), 3, true},
		{"offset", gen(500, 12, func(int, int) float64 { return 1e6 + rng.Float64() }), gen(60, 12, func(int, int) float64 { return 1e6 + rng.Float64() }), 4, false},
		{"tiny", gen(400, 10, func(int, int) float64 { return 1e-30 * rng.NormFloat64() }), gen(50, 10, func(int, int) float64 { return 1e-30 * rng.NormFloat64() }), 5, false},
		{"huge", gen(400, 10, func(int, int) float64 { return 1e20 * rng.NormFloat64() }), gen(50, 10, func(int, int) float64 { return 1e20 * rng.NormFloat64() }), 5, false},
		{"far queries", gen(400, 10, func(int, int) float64 { return rng.NormFloat64() }), gen(30, 10, func(int, int) float64 { return 1e20 * (1 + rng.Float64()) }), 5, true},
		{"clusters", gen(500, 12, func(i, j int) float64 { return float64((i%4)*(j%3)) + 1e-4*rng.NormFloat64() }), gen(60, 12, func(i, j int) float64 { return float64((i%4)*(j%3)) + 1e-4*rng.NormFloat64() }), 4, true},
	} {
		want := bruteNeighbours(tc.x, tc.q, tc.k)
		X := dense(tc.x.data, tc.x.rows, tc.x.cols)
		Q := dense(tc.q.data, tc.q.rows, tc.q.cols)
		y := make([]float64, tc.x.rows)
		for _, f64 := range []bool{false, true} {
			for _, shards := range []int{1, 2, 3} {
				m := NewKNNRegressor(tc.k, Shards(shards), BatchRows(32))
				m.noF32 = f64
				if err := m.Fit(ctx, X, y); err != nil {
					t.Fatal(err)
				}
				idx, dist, err := m.neighbours(ctx, Q)
				m.Close()
				if err != nil {
					t.Fatal(err)
				}
				if wantDT := map[bool]graph.DType{false: graph.Float32, true: graph.Float64}[f64]; m.dt != wantDT {
					t.Errorf("%s: shards compute in %v, want %v", tc.name, m.dt, wantDT)
				}
				bad := 0
				for i, w := range want {
					if idx[i] != w.i || dist[i] != math.Sqrt(w.d) {
						bad++
					}
				}
				if bad > 0 {
					t.Errorf("%s, %v shards, %d shards: %d of %d neighbours differ from brute force", tc.name, m.dt, shards, bad, len(want))
				}
				t.Logf("%s, %v, %d shards: %d (query, shard) pairs measured in full", tc.name, m.dt, shards, m.scans)
				if tc.wantScan && !f64 && shards < 3 && m.scans == 0 {
					t.Errorf("%s, %d shards: no shard was measured in full; the data should defeat the bound", tc.name, shards)
				}
			}
		}
	}
}

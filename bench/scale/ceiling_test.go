package main

import (
	"math"
	"testing"
)

func TestExchangeCeiling(t *testing.T) {
	// No exchange: the ideal speedup, the cores over the baseline's.
	if s, share := exchangeCeiling(40, 0, 0.4, []float64{0.4, 0.4, 0.4, 0.4}); s != 4 || share != 0 {
		t.Errorf("no exchange: speedup %v, share %v; want 4, 0", s, share)
	}
	// Equal shares: C/(C/r + F).
	s, share := exchangeCeiling(40, 5, 0.4, []float64{0.4, 0.4, 0.4, 0.4})
	if want := 40 / (10.0 + 5); math.Abs(s-want) > 1e-12 {
		t.Errorf("speedup %v, want %v", s, want)
	}
	if want := 5 / (10.0 + 5); math.Abs(share-want) > 1e-12 {
		t.Errorf("share %v, want %v", share, want)
	}
	// Unequal shares: every replica's step is (C + r·F)/Σs, so the rows
	// x_i = (T·s_i − F)/C add up to 1.
	c, f, shares := 30.0, 3.0, []float64{0.8, 0.4}
	s, share = exchangeCeiling(c, f, 0.8, shares)
	if share != 0 {
		t.Errorf("unequal shares: share %v, want 0", share)
	}
	step := c / 0.8 / s
	var rows float64
	for _, sh := range shares {
		rows += (step*sh - f) / c
	}
	if math.Abs(rows-1) > 1e-12 {
		t.Errorf("rows at the ceiling's step add up to %v, want 1", rows)
	}
}

func TestGradientBytes(t *testing.T) {
	if got, want := gradientBytes([]int{1024, 1024}), 4*(784*1024+1024+1024*1024+1024+1024*10+10); got != want {
		t.Errorf("mlp1024: %d bytes, want %d", got, want)
	}
	if got, want := gradientBytes([]int{256}), 4*(784*256+256+256*10+10); got != want {
		t.Errorf("mlp256: %d bytes, want %d", got, want)
	}
}

func TestLoopbackCost(t *testing.T) {
	c, err := loopbackCost(2, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Moving bytes costs some CPU, and far less than a second a megabyte.
	if !(c > 0 && c < 1000) {
		t.Errorf("loopback cost %v ms/MB", c)
	}
}

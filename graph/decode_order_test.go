package graph

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

func TestTopoOrderPrefersGivenOrder(t *testing.T) {
	// Given order: c(b) a b(a) d. Kahn's with the earliest ready node first
	// gives a b c d: everything stays as early as its inputs allow.
	nodes := []*rookeryv1.Node{
		{Id: 3, Inputs: []int64{2}},
		{Id: 1},
		{Id: 2, Inputs: []int64{1}},
		{Id: 4},
	}
	order, err := wireTopoOrder(nodes)
	require.NoError(t, err)
	var ids []int64
	for _, p := range order {
		ids = append(ids, nodes[p].Id)
	}
	require.Equal(t, []int64{1, 2, 3, 4}, ids)

	sorted := []*rookeryv1.Node{{Id: 1}, {Id: 2, Inputs: []int64{1, 1}}, {Id: 3, Inputs: []int64{2, 1}}}
	order, err = wireTopoOrder(sorted)
	require.NoError(t, err)
	require.Nil(t, order, "a topological order is kept as it is")
}

func TestCycleErrorNamesTheCycle(t *testing.T) {
	// 1 → 2 → 3 → 2 and 4 depends on the cycle.
	nodes := []*rookeryv1.Node{
		{Id: 4, Inputs: []int64{3}},
		{Id: 3, Inputs: []int64{2}},
		{Id: 2, Inputs: []int64{1, 3}},
		{Id: 1},
	}
	_, err := wireTopoOrder(nodes)
	var ce *CycleError
	require.ErrorAs(t, err, &ce)
	require.ElementsMatch(t, []int64{2, 3}, ce.Nodes)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestPosHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var h posHeap
	var want []int32
	for range 1000 {
		v := rng.Int32N(100)
		h.push(v)
		want = append(want, v)
	}
	slices.Sort(want)
	var got []int32
	for len(h) > 0 {
		got = append(got, h.pop())
	}
	require.Equal(t, want, got)
}

// Wire-form builders for the error tables.

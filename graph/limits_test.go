package graph

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLimitsDefaults(t *testing.T) {
	require.Equal(t, defaultLimits, Limits{}.orDefault())
	require.Equal(t, defaultLimits, DefaultLimits)
	l := Limits{MaxNodes: 3, MaxRank: -1}.orDefault()
	require.Equal(t, 3, l.MaxNodes)
	require.Equal(t, defaultLimits.MaxRank, l.MaxRank)
	require.Equal(t, defaultLimits.MaxBytes, l.MaxBytes)
}

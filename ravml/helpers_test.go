package ravml

import (
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"
)

type split struct {
	trX, teX *tensor.Dense
	trY, teY []float64
}

func loadSplit(t testing.TB, name string) split {
	t.Helper()
	X, y, _, err := LoadCSV(filepath.Join("testdata", name+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	trX, trY, teX, teY, err := SplitEvery(X, y, 5, 4)
	if err != nil {
		t.Fatal(err)
	}
	return split{trX, teX, trY, teY}
}

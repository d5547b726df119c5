package ravml

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"gorgonia.org/tensor"
)

// matrix is a row-major float64 matrix; data is not copied unless said.
type matrix struct {
	rows, cols int
	data       []float64
}

func (m matrix) row(i int) []float64 { return m.data[i*m.cols : (i+1)*m.cols] }

// Dense builds a rows × features tensor from a slice of rows, copying them.
// Rows of different lengths give a *DataError.
func Dense(rows [][]float64) (*tensor.Dense, error) {
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, &DataError{Row: -1, Col: -1, Reason: "no rows or no columns"}
	}
	d := len(rows[0])
	data := make([]float64, 0, len(rows)*d)
	for i, r := range rows {
		if len(r) != d {
			return nil, &DataError{Row: i, Col: -1, Reason: fmt.Sprintf("ragged rows: %d values, row 0 has %d", len(r), d)}
		}
		data = append(data, r...)
	}
	return tensor.New(tensor.WithShape(len(rows), d), tensor.WithBacking(data)), nil
}

// MustDense is Dense that panics on error, for literals in code.
func MustDense(rows [][]float64) *tensor.Dense {
	t, err := Dense(rows)
	if err != nil {
		panic(err)
	}
	return t
}

// asMatrix checks X (a float64 or float32 matrix of finite values) and
// returns its rows. A float64 tensor is read in place.
func asMatrix(X *tensor.Dense) (matrix, error) {
	if X == nil {
		return matrix{}, &DataError{Row: -1, Col: -1, Reason: "X is nil"}
	}
	s := X.Shape()
	if len(s) != 2 || s[0] < 1 || s[1] < 1 {
		return matrix{}, &DataError{Row: -1, Col: -1, Reason: fmt.Sprintf("X must be a non-empty matrix (rows × features), has shape %v", s)}
	}
	if !X.IsNativelyAccessible() || X.RequiresIterator() {
		X = X.Materialize().(*tensor.Dense)
	}
	m := matrix{rows: s[0], cols: s[1]}
	switch X.Dtype() {
	case tensor.Float64:
		m.data = X.Float64s()
	case tensor.Float32:
		f := X.Float32s()
		m.data = make([]float64, len(f))
		for i, v := range f {
			m.data[i] = float64(v)
		}
	default:
		return matrix{}, &DataError{Row: -1, Col: -1, Reason: fmt.Sprintf("X has dtype %v, want float64 or float32", X.Dtype())}
	}
	for i, v := range m.data {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return matrix{}, &DataError{Row: i / m.cols, Col: i % m.cols, Reason: fmt.Sprintf("value %v is not finite", v)}
		}
	}
	return m, nil
}

// checkTargets checks that y has one finite value per row.
func checkTargets(y []float64, rows int) error {
	if len(y) != rows {
		return &DataError{Row: -1, Col: -1, Reason: fmt.Sprintf("y has %d values for %d rows", len(y), rows)}
	}
	for i, v := range y {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return &DataError{Row: i, Col: -1, Reason: fmt.Sprintf("target %v is not finite", v)}
		}
	}
	return nil
}

// maxClasses bounds the number of classes a classifier accepts.
const maxClasses = 1 << 16

// checkLabels checks that y holds class indexes 0..C-1 and returns C.
func checkLabels(y []float64, rows int) (int, error) {
	if err := checkTargets(y, rows); err != nil {
		return 0, err
	}
	c := 0
	for i, v := range y {
		if v < 0 || v != math.Trunc(v) || v >= maxClasses {
			return 0, &DataError{Row: i, Col: -1, Reason: fmt.Sprintf("label %v is not a class index in [0, %d)", v, maxClasses)}
		}
		c = max(c, int(v)+1)
	}
	return c, nil
}

// checkWidth checks that X has the width a model was fitted on.
func checkWidth(m matrix, want int) error {
	if m.cols != want {
		return &DataError{Row: -1, Col: -1, Reason: fmt.Sprintf("X has %d features, the model was fitted on %d", m.cols, want)}
	}
	return nil
}

// ReadCSV reads a CSV table with a header row whose last column is the
// label or target, and returns the features as a rows × features float64
// tensor, the last column, and the header.
func ReadCSV(r io.Reader) (X *tensor.Dense, y []float64, header []string, err error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ravml: csv header: %w", err)
	}
	header = append([]string(nil), head...)
	if len(header) < 2 {
		return nil, nil, nil, &DataError{Row: -1, Col: -1, Reason: "csv needs at least one feature column and a label column"}
	}
	d := len(header) - 1
	var data []float64
	for row := 0; ; row++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			if pe, ok := err.(*csv.ParseError); ok && pe.Err == csv.ErrFieldCount {
				return nil, nil, nil, &DataError{Row: row, Col: -1, Reason: fmt.Sprintf("ragged rows: want %d fields", len(header))}
			}
			return nil, nil, nil, fmt.Errorf("ravml: csv row %d: %w", row, err)
		}
		for j, f := range rec {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return nil, nil, nil, &DataError{Row: row, Col: j, Reason: fmt.Sprintf("%q is not a number", f)}
			}
			if j == d {
				y = append(y, v)
			} else {
				data = append(data, v)
			}
		}
	}
	if len(y) == 0 {
		return nil, nil, nil, &DataError{Row: -1, Col: -1, Reason: "csv has no rows"}
	}
	return tensor.New(tensor.WithShape(len(y), d), tensor.WithBacking(data)), y, header, nil
}

// LoadCSV is ReadCSV on a file.
func LoadCSV(path string) (X *tensor.Dense, y []float64, header []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	return ReadCSV(f)
}

// SplitEvery splits the rows of X and y: row i goes to the test set when
// i % every == at, otherwise to the training set.
func SplitEvery(X *tensor.Dense, y []float64, every, at int) (trainX *tensor.Dense, trainY []float64, testX *tensor.Dense, testY []float64, err error) {
	m, err := asMatrix(X)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if y != nil && len(y) != m.rows {
		return nil, nil, nil, nil, &DataError{Row: -1, Col: -1, Reason: fmt.Sprintf("y has %d values for %d rows", len(y), m.rows)}
	}
	if every < 1 || at < 0 || at >= every {
		return nil, nil, nil, nil, &ParamError{Name: "every", Reason: fmt.Sprintf("need 0 <= at < every, got at %d, every %d", at, every)}
	}
	var tr, te []float64
	for i := 0; i < m.rows; i++ {
		if i%every == at {
			te = append(te, m.row(i)...)
			if y != nil {
				testY = append(testY, y[i])
			}
		} else {
			tr = append(tr, m.row(i)...)
			if y != nil {
				trainY = append(trainY, y[i])
			}
		}
	}
	if len(tr) == 0 || len(te) == 0 {
		return nil, nil, nil, nil, &DataError{Row: -1, Col: -1, Reason: "split leaves a side empty"}
	}
	trainX = tensor.New(tensor.WithShape(len(tr)/m.cols, m.cols), tensor.WithBacking(tr))
	testX = tensor.New(tensor.WithShape(len(te)/m.cols, m.cols), tensor.WithBacking(te))
	return trainX, trainY, testX, testY, nil
}

// Accuracy is the fraction of predictions equal to the labels.
func Accuracy(pred, y []float64) float64 {
	if len(y) == 0 {
		return 0
	}
	ok := 0
	for i := range y {
		if pred[i] == y[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(y))
}

// R2 is the coefficient of determination of predictions against targets.
func R2(pred, y []float64) float64 {
	mean := 0.0
	for _, v := range y {
		mean += v
	}
	mean /= float64(len(y))
	var res, tot float64
	for i, v := range y {
		res += (v - pred[i]) * (v - pred[i])
		tot += (v - mean) * (v - mean)
	}
	if tot == 0 {
		if res == 0 {
			return 1
		}
		return 0
	}
	return 1 - res/tot
}

// AdjustedRandIndex compares two clusterings of the same items: 1 when
// they agree up to renaming, about 0 for independent ones.
func AdjustedRandIndex(a, b []float64) float64 {
	n := len(a)
	if n != len(b) || n == 0 {
		return 0
	}
	ia, ka := relabel(a)
	ib, kb := relabel(b)
	cont := make([]int, ka*kb)
	rowS, colS := make([]int, ka), make([]int, kb)
	for i := range ia {
		cont[ia[i]*kb+ib[i]]++
		rowS[ia[i]]++
		colS[ib[i]]++
	}
	c2 := func(x int) float64 { return float64(x) * float64(x-1) / 2 }
	var idx, sa, sb float64
	for _, v := range cont {
		idx += c2(v)
	}
	for _, v := range rowS {
		sa += c2(v)
	}
	for _, v := range colS {
		sb += c2(v)
	}
	expected := sa * sb / c2(n)
	maxIdx := (sa + sb) / 2
	if maxIdx == expected {
		return 1
	}
	return (idx - expected) / (maxIdx - expected)
}

func relabel(v []float64) ([]int, int) {
	ids := map[float64]int{}
	out := make([]int, len(v))
	for i, x := range v {
		id, ok := ids[x]
		if !ok {
			id = len(ids)
			ids[x] = id
		}
		out[i] = id
	}
	return out, len(ids)
}

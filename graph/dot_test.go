package graph

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// oddGraph has what a DOT writer must escape or tell apart: a name with
// quotes, a backslash and a line break, a negative id, a constant, a
// scalar, and an input used twice by one node.
func oddGraph(t *testing.T) *Graph {
	t.Helper()
	g := New()
	for _, n := range []Node{
		{ID: -3, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(2, 3), DType: Float64, Name: `say "hi"` + "\n" + `C:\tmp`},
		{ID: 0, Role: RoleConstant, Op: Op{Kind: KindConstant}, DType: Float64, Value: tensor.New(tensor.FromScalar(2.0)), Name: "two"},
		{ID: 5, Role: RoleOp, Op: NewOp(KindMul), Inputs: []int64{-3, -3}, Shape: shp(2, 3), DType: Float64},
		{ID: 6, Role: RoleOp, Op: NewOp(KindMul), Inputs: []int64{5, 0}, Shape: shp(2, 3), DType: Float64, Name: "scaled"},
		{ID: 7, Role: RoleOp, Op: NewOp(KindGt, BoolAttr("ret_same", false)), Inputs: []int64{6, 0}, Shape: shp(2, 3), DType: Bool},
		{ID: 8, Role: RoleOp, Op: NewOp(KindSum, AxesAttr("axes")), Inputs: []int64{6}, DType: Float64, Name: "total"},
	} {
		if err := g.Add(n); err != nil {
			t.Fatalf("Add(%d): %v", n.ID, err)
		}
	}
	return g
}

// chainOf is an input followed by n tanh nodes, each the next.
func chainOf(t *testing.T, n int) *Graph {
	t.Helper()
	g := New()
	if err := g.Add(Node{ID: 1, Role: RoleInput, Op: Op{Kind: KindInput}, Shape: shp(4), DType: Float32, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= n+1; i++ {
		if err := g.Add(Node{ID: int64(i), Role: RoleOp, Op: NewOp(KindTanh), Inputs: []int64{int64(i - 1)}, Shape: shp(4), DType: Float32}); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func TestWriteDOTGolden(t *testing.T) {
	// The MLP in two parts as a partitioner might cut it: the first layer
	// (ids 8 to 11) and its parameters in part 0, the rest in part 1; the
	// data inputs x, y and the constant left uncoloured.
	parts := func(id int64) (int, bool) {
		switch {
		case id == 1 || id == 2 || id == 7:
			return 0, false
		case id == 3 || id == 4 || (id >= 8 && id <= 11):
			return 0, true
		}
		return 1, true
	}
	tests := []struct {
		file string
		g    *Graph
		opts []DOTOption
	}{
		{"mlp.dot", mlpGraph(t, 64, 256, Float32), nil},
		{"mlp_parts.dot", mlpGraph(t, 64, 256, Float32), []DOTOption{DOTGroups(parts)}},
		{"odd.dot", oddGraph(t), nil},
		// Groups -1 to 12 cycle through the palette: 0 and 12 share a colour,
		// and -1 takes the last one.
		{"palette.dot", chainOf(t, 14), []DOTOption{DOTGroups(func(id int64) (int, bool) { return int(id) - 2, true })}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := tt.g.WriteDOTWith(&buf, tt.opts...); err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		path := filepath.Join("testdata", tt.file)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test ./graph -run WriteDOT -update to create it)", tt.file, err)
		}
		if got := buf.String(); got != string(want) {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.file, got, want)
		}
	}
}

func TestWriteDOTIsDeterministic(t *testing.T) {
	g := mlpGraph(t, 8, 16, Float64)
	var a, b, c bytes.Buffer
	if err := g.WriteDOT(&a); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteDOT(&b); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteDOTWith(&c, nil); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() || a.String() != c.String() {
		t.Errorf("got different output for one graph:\n%s\n%s\n%s", a.String(), b.String(), c.String())
	}
}

// TestWriteDOTLabels pins the parts of a line that readers rely on.
func TestWriteDOTLabels(t *testing.T) {
	var buf bytes.Buffer
	if err := oddGraph(t).WriteDOT(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`"n-3" [label="input\nsay \"hi\"\nC:\\tmp\n(2, 3) float64", shape=invhouse];`,
		`"n0" [label="constant\ntwo\n() float64", shape=note];`,
		`"n5" [label="mul\n(2, 3) float64", shape=box, style="rounded"];`,
		`"n7" [label="gt\n(2, 3) bool", shape=box, style="rounded"];`,
		"\t\"n-3\" -> \"n5\";\n\t\"n-3\" -> \"n5\";\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("got\n%s\nwant a line containing %s", out, want)
		}
	}
}

type failingWriter struct{ n int }

var errWrite = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errWrite
	}
	return len(p), nil
}

func TestWriteDOTReportsWriteErrors(t *testing.T) {
	g := chainOf(t, 2000) // more than bufio's buffer
	for _, n := range []int{0, 100, 10000} {
		if err := g.WriteDOT(&failingWriter{n: n}); !errors.Is(err, errWrite) {
			t.Errorf("writer failing after %d bytes: got %v, want %v", n, err, errWrite)
		}
	}
}

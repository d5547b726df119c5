package layering

import (
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/rookery-ml/rookery"

// allowed lists, for each package of the module (a directory relative to
// the module root, "." for the root; "dir/..." for a directory and all
// below it), the module's packages its non-test files may import. A
// package missing from the table fails the test, so a new package states
// its layer when it is added. Imports outside the module are not
// restricted here, except by forbidden.
var allowed = map[string][]string{
	"proto/...":          nil,
	"internal/gemm":      nil,
	"internal/mnist":     nil,
	"internal/layering":  nil,
	"internal/fakeclock": nil,
	"internal/fuzzcalls": nil,
	"internal/shaper":    nil,
	"internal/netlab":    nil,
	"graph":              {"proto/rookery/v1"},
	"partition":          {"graph"},
	"internal/synth":     {"graph"},
	"exec":               {"graph", "exec/compress", "exec/kernels", "internal/gemm"},
	"exec/kernels":       nil,
	"exec/compress":      nil,
	"exec/plan":          {"exec", "graph"},
	"exec/cuda":          {"exec", "exec/plan", "graph"},
	"exec/native":        {"exec", "exec/plan", "graph", "internal/gemm"},
	"exec/exectest":      {"exec", "exec/compress", "graph"},
	"exec/guard/...":     {"exec", "exec/guard"},
	"checkpoint":         {"exec", "graph", "proto/rookery/v1"},
	"ledger":             {"proto/rookery/v1"},
	// transport sums ring segments with internal/gemm's vector kernels.
	"transport":          {"exec", "exec/compress", "graph", "internal/gemm", "ledger", "proto/rookery/v1"},
	"transport/p2p":      {"transport"},
	"transport/seednode": {"exec", "graph", "ledger", "proto/rookery/v1", "transport"},
	"internal/providers": {"exec", "transport", "transport/seednode"},
	".":                  {"checkpoint", "exec", "exec/guard", "exec/native", "graph", "ledger", "partition", "proto/rookery/v1", "transport", "transport/seednode"},
	"ravml":              {"exec", "graph"},
	"ravdl":              {".", "exec", "graph", "partition"},
	// Programs: they may import any library package, never each other.
	"cmd/...":      {"*"},
	"examples/...": {"*"},
	"bench/...":    {"*"},
}

// forbidden lists imports from outside the module that a package's
// non-test files must not name: the IR describes and runs nothing, so
// graph calls no BLAS of its own.
var forbidden = map[string][]string{
	"graph": {"gonum.org/v1/gonum/blas"},
}

// programs are the module's directories that hold main packages or
// benchmarks; no library imports them.
var programs = []string{"cmd/", "examples/", "bench/"}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !strings.Contains(string(b), "module "+module+"\n") {
		t.Fatalf("%s is not the module root (%v)", dir, err)
	}
	return dir
}

// match reports whether the package in dir is named by pattern.
func match(pattern, dir string) bool {
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return dir == p || strings.HasPrefix(dir, p+"/")
	}
	return dir == pattern
}

// rule returns the allow-list entry for dir; the longest matching pattern
// wins.
func rule(dir string) (string, bool) {
	best, found := "", false
	for p := range allowed {
		if match(p, dir) && (!found || len(p) > len(best)) {
			best, found = p, true
		}
	}
	return best, found
}

// file is one non-test Go file of the module that the build uses.
type file struct {
	dir, path string
	ast       *ast.File
}

// fset positions the files that files parses.
var fset = token.NewFileSet()

func files(t *testing.T, top string) []file {
	t.Helper()
	var out []file
	err := filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != top && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		if ignored(f) {
			return nil
		}
		rel, _ := filepath.Rel(top, filepath.Dir(path))
		out = append(out, file{dir: filepath.ToSlash(rel), path: path, ast: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ignored reports whether f carries `//go:build ignore` (a generator run
// with go run, not part of its directory's package).
func ignored(f *ast.File) bool {
	for _, g := range f.Comments {
		if g.Pos() > f.Package {
			break
		}
		for _, c := range g.List {
			if constraint.IsGoBuild(c.Text) {
				e, err := constraint.Parse(c.Text)
				if tag, ok := e.(*constraint.TagExpr); err == nil && ok && tag.Tag == "ignore" {
					return true
				}
			}
		}
	}
	return false
}

func TestImportsStayInLayers(t *testing.T) {
	top := root(t)
	seen := map[string]bool{}
	for _, f := range files(t, top) {
		seen[f.dir] = true
		r, ok := rule(f.dir)
		if !ok {
			t.Errorf("package %s is not in the layering table; add it to allowed", f.dir)
			continue
		}
		for _, imp := range f.ast.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			for _, bad := range forbidden[f.dir] {
				if path == bad || strings.HasPrefix(path, bad+"/") {
					t.Errorf("%s imports %s, which package %s must not", rel(top, f.path), path, f.dir)
				}
			}
			dep, ok := strings.CutPrefix(path, module)
			if !ok {
				continue
			}
			dep = strings.TrimPrefix(dep, "/")
			if dep == "" {
				dep = "."
			}
			for _, p := range programs {
				if strings.HasPrefix(dep+"/", p) && !strings.HasPrefix(f.dir+"/", p) {
					t.Errorf("%s imports the program %s", rel(top, f.path), dep)
				}
			}
			if !permitted(allowed[r], dep) {
				t.Errorf("%s imports %s: package %s may import only %v", rel(top, f.path), dep, f.dir, allowed[r])
			}
		}
	}
	var stale []string
	for p := range allowed {
		found := false
		for d := range seen {
			if match(p, d) {
				found = true
				break
			}
		}
		if !found {
			stale = append(stale, p)
		}
	}
	sort.Strings(stale)
	for _, p := range stale {
		t.Errorf("the layering table names %s, which holds no package", p)
	}
}

func permitted(list []string, dep string) bool {
	for _, a := range list {
		if a == "*" || a == dep {
			return true
		}
	}
	return false
}

// TestGraphRunsNothing checks that no non-test file of graph starts a
// goroutine: the IR describes computations, exec runs them.
func TestGraphRunsNothing(t *testing.T) {
	top := root(t)
	for _, f := range files(t, top) {
		if f.dir != "graph" {
			continue
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				p := fset.Position(g.Pos())
				t.Errorf("%s:%d: graph starts a goroutine", rel(top, f.path), p.Line)
			}
			return true
		})
	}
}

func rel(top, path string) string {
	r, err := filepath.Rel(top, path)
	if err != nil {
		return path
	}
	return filepath.ToSlash(r)
}

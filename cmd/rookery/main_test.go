package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rookery-ml/rookery/internal/synth"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPlanSynthetic(t *testing.T) {
	code, out, errOut := runArgs("plan", "--synthetic", "resnet:blocks=4,width=16", "-k", "3", "--capacities", "1,1,2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"resnet:blocks=4,width=16", "k=3", "part", "target", "params", "imbalance", "baseline", "time"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPlanJSONAndDOTFromFile(t *testing.T) {
	g, err := synth.Parse("random-dag:nodes=300,seed=2,width=8")
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "g.bin")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dot := filepath.Join(dir, "g.dot")
	code, out, errOut := runArgs("plan", file, "-k", "4", "--json", "--dot", dot, "--seed", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.K != 4 || len(rep.Parts) != 4 || rep.Nodes != 300 || rep.Graph != file {
		t.Errorf("report %+v", rep)
	}
	nodes := 0
	for _, p := range rep.Parts {
		nodes += p.Nodes
	}
	if nodes != 300 {
		t.Errorf("parts hold %d nodes, want 300", nodes)
	}
	d, err := os.ReadFile(dot)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(d, []byte("digraph")) || !bytes.Contains(d, []byte("fillcolor")) {
		t.Errorf("DOT file:\n%.300s", d)
	}
}

func TestUsageAndErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: rookery COMMAND"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"plan"}, 2, "no graph"},
		{[]string{"plan", "--synthetic", "mlp", "-k", "x"}, 2, "invalid value"},
		{[]string{"plan", "--synthetic", "mlp", "--capacities", "1,a"}, 2, "not a number"},
		{[]string{"plan", "--synthetic", "mlp", "--method", "magic"}, 2, "unknown method"},
		{[]string{"plan", "--synthetic", "mlp", "a.bin"}, 2, "not both"},
		{[]string{"plan", "--synthetic", "nope"}, 1, "unknown kind"},
		{[]string{"plan", "--synthetic", "mlp:layers=2", "-k", "0"}, 1, "k must be at least 1"},
		{[]string{"plan", "--synthetic", "mlp:layers=2", "-k", "20"}, 1, "only 6 nodes have work"},
		{[]string{"plan", "--synthetic", "mlp", "-k", "3", "--capacities", "1,1"}, 1, "2 capacities for k = 3"},
		{[]string{"plan", filepath.Join(t.TempDir(), "missing.bin")}, 1, "no such file"},
		{[]string{"version", "extra"}, 2, "no arguments"},
	}
	for _, tc := range tests {
		code, _, errOut := runArgs(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("rookery %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// A flag mistake prints one line and where to find the usage, not the
// whole usage.
func TestFlagMistakeIsOneLine(t *testing.T) {
	for _, cmd := range []string{"provider", "seed", "plan"} {
		code, out, errOut := runArgs(cmd, "--port", "7070")
		want := "rookery " + cmd + ": flag provided but not defined: -port\nrun 'rookery help " + cmd + "' for usage\n"
		if code != 2 || errOut != want || out != "" {
			t.Errorf("rookery %s --port 7070: exit %d, stdout %q, stderr %q; want exit 2, stderr %q", cmd, code, out, errOut, want)
		}
	}
	code, _, errOut := runArgs("provider", "-h")
	if code != 0 || !strings.Contains(errOut, "usage: rookery provider") {
		t.Errorf("provider -h: exit %d, stderr %q; want the usage", code, errOut)
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runArgs("help")
	if code != 0 || !strings.Contains(out, "plan") || !strings.Contains(out, "version") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	code, out, _ = runArgs("help", "plan")
	if code != 0 || !strings.Contains(out, "--synthetic SPEC") || !strings.Contains(out, "-capacities") {
		t.Errorf("help plan: exit %d\n%s", code, out)
	}
	code, out, _ = runArgs("version")
	if code != 0 || !strings.HasPrefix(out, "rookery ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}

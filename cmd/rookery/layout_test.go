package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanLayout(t *testing.T) {
	code, out, errOut := runArgs("plan", "--synthetic", "classifier", "--batch", "256", "--executors", "8", "--micro", "4", "--link", "1gbit:1ms", "--reduce", "requester")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"classifier:batch=256, batch 256", "executors  8", "latency 500µs", "step ms", "reduce",
		"requester 543.6 MiB/s",
		// Through the requester, 2·r copies of the gradients: five replicas
		// are the most that pay.
		"*  1  5", "k=2 r=1 cannot run: partition: k = 2: node 7 costs", "pick       k=1 parts × r=5 replicas"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Behind 20 Mbit/s the gradients cost more than the rows save.
	code, out, errOut = runArgs("plan", "--synthetic", "classifier", "--executors", "4", "--link", "20mbit:50ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep layoutReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Pick.K != 1 || rep.Pick.R != 1 || !rep.Pick.Chosen || rep.Executors != 4 || rep.Batch != 256 || len(rep.Candidates) != 8 {
		t.Errorf("report %+v", rep)
	}
	if rep.Bandwidth != 20e6/8 || rep.LatencyS != 0.025 {
		t.Errorf("link %g B/s, %gs; want 2.5e6 B/s, 0.025s", rep.Bandwidth, rep.LatencyS)
	}
	// A slower executor takes fewer rows (at a batch large enough for
	// three replicas to pay for their gradients' trips).
	code, out, errOut = runArgs("plan", "--synthetic", "classifier", "--batch", "2048", "--executors", "3", "--speeds", "1,2,1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rep = layoutReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Pick.R != 3 || rep.Pick.Executors[0] != 1 || rep.Pick.RowWeights[0] != 1.5 {
		t.Errorf("pick %+v, want r=3, executor 1 first with row weight 1.5", rep.Pick)
	}
	// Memory for no layout.
	code, out, _ = runArgs("plan", "--synthetic", "classifier", "--executors", "2", "--memory", "1")
	if code != 1 || !strings.Contains(out, "no layout can run") {
		t.Errorf("too little memory: exit %d\n%s", code, out)
	}
}

func TestPlanLayoutErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--link", "fast"}, 2, "not RATE:RTT"},
		{[]string{"--link", "1gb:1ms"}, 2, "needs a unit"},
		{[]string{"--link", "xmbit:1ms"}, 2, "not a positive number"},
		{[]string{"--link", "1mbit:soon"}, 2, "not a duration"},
		{[]string{"--speeds", "1,1"}, 2, "2 speeds for 4 executors"},
		{[]string{"--speeds", "1,a,1,1"}, 2, "--speeds: \"a\" is not a number"},
		{[]string{"--memory", "x"}, 2, "--memory: \"x\" is not a number"},
		{[]string{"--micro", "0"}, 1, "no layout"},
	} {
		args := append([]string{"plan", "--synthetic", "classifier", "--executors", "4"}, tc.args...)
		code, _, errOut := runArgs(args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("rookery %v: exit %d, stderr %q; want exit %d and %q", args, code, errOut, tc.code, tc.want)
		}
	}
	code, _, errOut := runArgs("plan", filepath.Join(t.TempDir(), "g.bin"), "--batch", "8")
	if code != 2 || !strings.Contains(errOut, "--batch needs --synthetic") {
		t.Errorf("--batch with a file: exit %d, %q", code, errOut)
	}
}

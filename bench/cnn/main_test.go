package main

import (
	"errors"
	"strings"
	"testing"
)

func TestExecutorFor(t *testing.T) {
	for _, name := range []string{"tape", "native"} {
		if newExec, err := executorFor(name); err != nil || newExec() == nil {
			t.Fatalf("%s: got %v, want an executor", name, err)
		}
	}
	if _, err := executorFor("gpu"); !errors.Is(err, errUnknownExecutor) {
		t.Errorf("gpu: got %v, want %v", err, errUnknownExecutor)
	}
}

func TestTableRatios(t *testing.T) {
	rows := []row{
		{name: "Rookery tape, 1 part", seconds: []float64{16, 8}, accuracy: []float64{0.97, 0.98}},
		{name: "PyTorch, 1 thread", torch: true, seconds: []float64{4, 4}, accuracy: []float64{0.975, 0.981}},
	}
	got := table(settings{epochs: 2}, "cnn", rows)
	for _, want := range []string{
		"| Rookery tape, 1 part | 12.00 | 16.00, 8.00 | 98.00% | 3.00 |",
		"| PyTorch, 1 thread | 4.00 | 4.00, 4.00 | 98.10% | 1.00 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	big := table(settings{bigBatch: 128, bigSteps: 50}, "big", []row{
		{name: "Rookery tape, 1 part", sps: 250},
		{name: "PyTorch, 1 thread", torch: true, sps: 1000},
	})
	if want := "| Rookery tape, 1 part | 250.0 | 4.00 |"; !strings.Contains(big, want) {
		t.Errorf("table lacks %q:\n%s", want, big)
	}
}

func TestRunRefusesUnknownExecutorBeforeTraining(t *testing.T) {
	var out strings.Builder
	err := run(t.Context(), &out, settings{parts: 1, epochs: 1, mlpEpochs: 1, bigSteps: 1}, []string{"tape", "gpu"}, []string{"cnn"})
	if !errors.Is(err, errUnknownExecutor) {
		t.Fatalf("got %v, want %v", err, errUnknownExecutor)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q before refusing", out.String())
	}
}

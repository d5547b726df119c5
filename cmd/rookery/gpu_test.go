package main

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/rookery-ml/rookery/exec/cuda"
)

func TestChooseExecutor(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	info, probeErr := cuda.Probe()

	e, gpus, release, err := chooseExecutor(gpuOff, log)
	if err != nil || e == nil || len(gpus) != 0 {
		t.Fatalf("--gpu off: executor %v, gpus %v, err %v; want the CPU executor", e, gpus, err)
	}
	release()

	if _, _, _, err := chooseExecutor("sometimes", log); err == nil || !strings.Contains(err.Error(), "want auto, off or require") {
		t.Errorf("--gpu sometimes: got %v, want an error naming the modes", err)
	}

	e, gpus, release, err = chooseExecutor(gpuAuto, log)
	if err != nil || e == nil {
		t.Fatalf("--gpu auto: executor %v, err %v", e, err)
	}
	release()
	if probeErr != nil && len(gpus) != 0 {
		t.Errorf("--gpu auto without a GPU (%v): reports GPUs %v", probeErr, gpus)
	}
	if probeErr == nil && (len(gpus) != 1 || gpus[0].Name != info.Name) {
		t.Errorf("--gpu auto with %v: reports GPUs %v", info, gpus)
	}

	_, gpus, release, err = chooseExecutor(gpuRequire, log)
	if probeErr != nil {
		// the provider must say why it will not start, with the probe's reason
		for _, want := range []error{cuda.ErrNoDriver, cuda.ErrNoDevice, cuda.ErrDriverTooOld, cuda.ErrNoCUBLAS} {
			if errors.Is(probeErr, want) && !errors.Is(err, want) {
				t.Errorf("--gpu require without a GPU: got %v, want an error matching %v", err, want)
			}
		}
		if err == nil {
			t.Fatal("--gpu require started without a GPU")
		}
		return
	}
	if err != nil || len(gpus) != 1 {
		t.Fatalf("--gpu require with %v: gpus %v, err %v", info, gpus, err)
	}
	release()
}

func TestProviderRequiresGPU(t *testing.T) {
	if _, err := cuda.Probe(); err == nil {
		t.Skip("this machine has a GPU, so --gpu require starts serving; TestChooseExecutor checks that case")
	}
	code, _, errOut := runArgs("provider", "--listen", "127.0.0.1:0", "--bench", "0", "--gpu", "require")
	if code == 0 || !strings.Contains(errOut, "--gpu require") || !strings.Contains(errOut, "cuda:") {
		t.Errorf("provider --gpu require without a GPU: exit %d, stderr %q; want a failure saying why", code, errOut)
	}
}

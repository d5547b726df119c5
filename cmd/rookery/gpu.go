package main

import (
	"fmt"
	"log/slog"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/cuda"
	"github.com/rookery-ml/rookery/exec/native"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// GPU modes of `rookery provider --gpu`.
const (
	gpuAuto    = "auto"    // use GPU 0 when one is found, else the CPU, saying why
	gpuOff     = "off"     // the CPU only
	gpuRequire = "require" // GPU 0, or refuse to start
)

// chooseExecutor returns the executor the provider serves: the CUDA
// executor (with the CPU for the parts it cannot lower) when mode and the
// machine allow, else the CPU. On the CPU, parts run on the native
// executor (Rookery's kernels), and those it cannot lower on the tape
// machine, each such part logged with the reason. gpus describes the GPU in use for
// the provider's capabilities; release frees it at shutdown.
func chooseExecutor(mode string, log *slog.Logger) (e exec.Executor, gpus []*rookeryv1.GPU, release func(), err error) {
	cpu := native.New(native.WithLogger(log))
	switch mode {
	case gpuOff:
		log.Info("running parts on the CPU", "gpu", "off", "executor", "native")
		return cpu, nil, func() {}, nil
	case gpuAuto, gpuRequire:
	default:
		return nil, nil, nil, fmt.Errorf("--gpu %q: want auto, off or require", mode)
	}
	g, err := cuda.New()
	if err != nil {
		if mode == gpuRequire {
			return nil, nil, nil, fmt.Errorf("--gpu require: %w", err)
		}
		log.Info("running parts on the CPU: no usable GPU", "why", err.Error(), "executor", "native")
		return cpu, nil, func() {}, nil
	}
	ge := g.(*cuda.Executor)
	info := ge.Info()
	log.Info("running parts on the GPU", "gpu", info.String())
	fb := cuda.Fallback(ge, cpu, func(part int, err error) {
		log.Info("part runs on the CPU: the GPU executor cannot lower it", "part", part, "why", err.Error())
	})
	return fb, []*rookeryv1.GPU{{Name: info.Name, MemoryBytes: int64(info.Memory)}}, func() { ge.Close() }, nil
}

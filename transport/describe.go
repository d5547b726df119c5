package transport

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gorgonia.org/tensor"

	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
)

// Version is the version of Rookery's wire protocol and daemon that this
// build reports.
const Version = "0.1.0"

// describeMachine measures the machine and returns the capabilities the
// server reports.
func describeMachine(cfg serverConfig, lim Limits) *rookeryv1.Capabilities {
	mem := machineMemory()
	if lim.MaxProviderBytes > 0 && (mem == 0 || lim.MaxProviderBytes < mem) {
		mem = lim.MaxProviderBytes
	}
	caps := &rookeryv1.Capabilities{
		Name:        cfg.name,
		Version:     cfg.version,
		CpuModel:    cpuModel(),
		CpuCores:    int32(runtime.GOMAXPROCS(0)),
		MemoryBytes: mem,
		Gpus:        cfg.gpus,
		OpKinds:     sortedKinds(),
		Limits:      lim.proto(),
		Os:          runtime.GOOS,
		Arch:        runtime.GOARCH,
	}
	if cfg.benchTime > 0 {
		caps.Gflops = benchMatMul(cfg.benchTime * 3 / 4)
		caps.MemBandwidthBytesPerSec = benchCopy(cfg.benchTime / 4)
	}
	return caps
}

// benchMatMul multiplies 256×256 float32 matrices for about d and returns
// the speed in GFLOP/s.
func benchMatMul(d time.Duration) float64 {
	const n = 256
	mk := func() *tensor.Dense {
		t := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(n, n))
		s := t.Float32s()
		for i := range s {
			s[i] = float32(i%7) * 0.125
		}
		return t
	}
	a, b := mk(), mk()
	c := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(n, n))
	if _, err := a.MatMul(b, tensor.WithReuse(c)); err != nil { // warm up
		return 0
	}
	start := time.Now()
	iters := 0
	for time.Since(start) < d || iters == 0 {
		if _, err := a.MatMul(b, tensor.WithReuse(c)); err != nil {
			return 0
		}
		iters++
	}
	sec := time.Since(start).Seconds()
	return 2 * n * n * n * float64(iters) / sec / 1e9
}

// benchCopy copies a 16 MiB buffer for about d and returns the speed in
// bytes per second.
func benchCopy(d time.Duration) float64 {
	const size = 16 << 20
	src, dst := make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault the pages in before timing
	start := time.Now()
	iters := 0
	for time.Since(start) < d || iters == 0 {
		copy(dst, src)
		iters++
	}
	return float64(size) * float64(iters) / time.Since(start).Seconds()
}

// cpuModel reads the processor's model name where the system tells it.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// machineMemory returns the machine's memory in bytes, or 0 when unknown.
func machineMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The exchange ceiling: the most samples per second that exact replicas
// of one part (layout 1xr) can reach on these providers, from three
// measured figures and no model of Rookery's own costs:
//
//   - C, the baseline provider's CPU time per step (the whole mini-batch
//     on one provider);
//   - n, the bytes of the model's gradients (float32, as trained);
//   - c, the CPU time this machine spends to move a byte over loopback
//     TCP, sender and receiver together.
//
// Each replica of an exact reduction must send at least n bytes and
// receive at least n: every element of its gradient leaves it, either as
// itself or, for the elements it sums, as their sum, and every element of
// the sum reaches it, or the contributions to the elements it sums do.
// (A ring moves 2(r−1)/r·n each way, n at r = 2; a sum through the
// requester n each way.) The bytes are counted as float32, as they are
// summed: a lossless codec pays off only where it costs less CPU than the
// bytes it saves. So each replica spends at least
// F = c·n of CPU a step on the exchange. If the compute split perfectly
// (replica i's rows x_i cost C·x_i, Σx_i = 1), replica i's step holds
// C·x_i + F of CPU at its share s_i of a core; the best split gives every
// replica the same step T = (C + r·F)/Σs_i. The baseline's step is C/s_0,
// so the speedup is at most C·Σs_i / (s_0·(C + r·F)), and with equal
// shares the exchange takes at least F/(C/r + F) of a step that is
// bound by the CPU.
//
// It bounds reductions that move gradients, their sums or updated
// weights, as Rookery's do; schemes that move activations instead
// (tensor-parallel parts, or replicas that send each layer's inputs and
// output gradients so that a shard's owner forms its weight gradient)
// are outside it.
//
// It assumes that a replica's rows cost no less CPU per row than the
// baseline's. Products of fewer rows run no faster per row, and slower
// below about 128 (internal/gemm's BenchmarkRowsPerReplicaCold), so it
// holds at batch 256; but not always for large batches, where the baseline's
// activations outgrow the caches and a replica's fewer rows run faster
// per row. Otherwise it is generous to
// the replicas: c is the cheapest of three trials at a whole core's
// speed, and the requester's own CPU, the update and every other cost of
// a step are left out.

// ceilingResult is the ceiling with its inputs, in the JSON object.
type ceilingResult struct {
	// LoopbackCPUMSPerMB is c: CPU ms to move 1e6 bytes over loopback
	// TCP, sender and receiver in this process.
	LoopbackCPUMSPerMB float64 `json:"loopback_cpu_ms_per_mb"`
	// GradientMB is n in 1e6 bytes.
	GradientMB float64 `json:"gradient_mb"`
	// ExchangeFloorMS is F = c·n: the least CPU a replica spends on the
	// exchange each step.
	ExchangeFloorMS float64 `json:"exchange_floor_ms_per_step"`
	// BaselineCPUMS is C: the baseline provider's CPU per step.
	BaselineCPUMS float64 `json:"baseline_provider_cpu_ms_per_step"`
	// Speedup is the most any exact reduction can give, at no loss in
	// the compute's split.
	Speedup float64 `json:"speedup_ceiling"`
	// ReduceShare is the least share of a step the exchange takes, with
	// equal shares (0 with unequal ones).
	ReduceShare float64 `json:"reduce_share_floor,omitempty"`
}

// exchangeCeiling is the ceiling for replicas on providers of the given
// shares against a baseline of share s0 that spent c0 ms of CPU a step,
// with an exchange floor of f ms a step.
func exchangeCeiling(c0, f, s0 float64, shares []float64) (speedup, share float64) {
	var total float64
	equal := true
	for _, s := range shares {
		total += s
		equal = equal && s == shares[0]
	}
	r := float64(len(shares))
	speedup = c0 * total / (s0 * (c0 + r*f))
	if equal {
		share = f / (c0/r + f)
	}
	return speedup, share
}

// gradientBytes is the bytes of the float32 gradients of an MLP
// 784-hidden...-10.
func gradientBytes(hidden []int) int {
	sizes := append(append([]int{784}, hidden...), 10)
	n := 0
	for i := 0; i+1 < len(sizes); i++ {
		n += sizes[i]*sizes[i+1] + sizes[i+1]
	}
	return 4 * n
}

// loopbackCost measures c: the CPU milliseconds this process spends to
// move 1e6 bytes over a loopback TCP connection, both ends in this
// process, in 1 MiB writes; the cheapest of trials runs of total bytes.
func loopbackCost(trials, total int) (float64, error) {
	const chunk = 1 << 20
	best := 0.0
	for t := range trials {
		ms, err := loopbackOnce(total, chunk)
		if err != nil {
			return 0, err
		}
		if t == 0 || ms < best {
			best = ms
		}
	}
	return best, nil
}

func loopbackOnce(total, chunk int) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	n := max(1, total/chunk)
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, chunk)
		for range n {
			if _, err := io.ReadFull(c, buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, chunk)
	c0 := cpuTime()
	var werr error
	for range n {
		if _, werr = c.Write(buf); werr != nil {
			c.Close() // the reader sees EOF
			break
		}
	}
	if err := errors.Join(werr, <-done); err != nil {
		return 0, fmt.Errorf("loopback: %w", err)
	}
	return float64((cpuTime() - c0).Microseconds()) / 1e3 / (float64(n*chunk) / 1e6), nil
}

// newCeiling measures c and works out the ceiling for replicas on the
// providers used, against the baseline's CPU c0 ms a step.
func newCeiling(o options, c0 float64, used []*provider) (*ceilingResult, error) {
	c, err := loopbackCost(3, 64<<20)
	if err != nil {
		return nil, err
	}
	hidden := o.hidden()
	b := &ceilingResult{LoopbackCPUMSPerMB: c, GradientMB: float64(gradientBytes(hidden)) / 1e6, BaselineCPUMS: c0}
	b.ExchangeFloorMS = c * b.GradientMB
	shares := make([]float64, len(used))
	for i, p := range used {
		shares[i] = p.share
	}
	b.Speedup, b.ReduceShare = exchangeCeiling(c0, b.ExchangeFloorMS, o.cpu[0], shares)
	return b, nil
}

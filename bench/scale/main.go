// Command scale shows how training scales on one machine, by emulating
// slower machines and links: it starts N `rookery provider` processes,
// each held to a share of a CPU core, optionally puts each one's
// connection behind an emulated link, trains a model on them as
// data-parallel replicas, and compares the samples per second with the
// same model on one provider of the same share, measured in the same run.
//
//	go run ./bench/scale -providers 4 -cpu 0.4 [-link 1gbit:1ms] [-json]
//	go run ./bench/scale -providers 2 -cpu 0.8,0.4          # mixed providers
//	go run ./bench/scale -model mnist -target-acc 0.97 -providers 2 -cpu 0.8
//	go run ./bench/scale -providers 4 -cpu 0.4 -micro 4 -layout 2x2 # a layout by hand
//
// Layout: by default (-layout auto) partition.ChooseLayout picks the
// parts k and replicas r from the model's costs, the providers' start-up
// benchmark (GFLOPS) and the -link figures, and may leave providers out;
// with -layout kxr the run uses that layout. Either way the predicted
// step of every candidate is printed, and the prediction of the layout
// that runs is printed next to what was measured.
//
// Reduction: by default (-reduce auto) replicas sum their gradients in a
// ring between the providers (exec.ReduceRing: the requester moves none
// of them), and the layout is priced so (partition.WithRing);
// -reduce requester sums them through this process as before. With
// -link, the providers reach each other through the same shapers (a
// provider's address is its shaper's), each connection on a link of its
// own.
//
// CPU shares: as root with cgroups mounted, every provider gets a cgroup
// of its own (v2 cpu.max, or v1 cpu.cfs_quota_us) named
// rookery-scale-PID-i; otherwise each gets GOMAXPROCS=1 and one CPU of
// its own (taskset or sched_setaffinity), which cannot emulate a fraction
// of a core, and the program says so. Every provider runs with GOMAXPROCS
// = ceil(share). Links: -link RATE:RTT runs a user-space link shaper
// (internal/shaper) in front of every provider; the unshaped run of the
// same providers is then measured too. The baseline takes the first
// provider (its share is the first of -cpu), unshaped.
//
// The run is bounded by -timeout; the providers it started, their
// cgroups and its temporary directory are removed when it ends, on
// SIGINT and SIGTERM too. With -json the last line printed is one JSON
// object with the figures (see result).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/internal/shaper"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport"
)

// errUsage marks flags that do not fit together.
var errUsage = errors.New("scale: invalid arguments")

type options struct {
	providers int
	cpu       []float64
	link      *shaper.Link
	mode      string
	model     string
	layout    string
	batch     int
	micro     int
	steps     int
	warmup    int
	timeout   time.Duration
	targetAcc float64
	evalEvery int
	lr        float64
	weights   string
	speeds    string
	rookery   string
	json      bool
	profile   string
	provProf  string // -provider-cpuprofile
	reduction exec.Reduction

	maxSeconds float64 // bound on each run's training clock; 0: none

	// local mode
	rounds        int
	localSteps    int
	codec         compress.Codec
	outerLR       float64
	outerMomentum float64
	deadline      float64
	killAt        float64
	joinAt        float64
}

func main() {
	var o options
	var cpu, link, codec, reduce string
	flag.IntVar(&o.providers, "providers", 2, "number of providers N")
	flag.StringVar(&cpu, "cpu", "0.5", "CPU share of each provider in cores: one value for all, or one per provider (`0.8,0.4`)")
	flag.StringVar(&link, "link", "", "put every provider behind an emulated link `RATE:RTT` (e.g. 20mbit:50ms, 1gbit:1ms)")
	flag.StringVar(&o.mode, "mode", "sync", "training mode: sync (exact data-parallel replicas) or local (local-SGD rounds, one whole model per provider)")
	flag.StringVar(&o.model, "model", "mlp1024", "model: mlp1024 (784-1024-1024-10, random data, throughput), mlp256 (784-256-10, random data) or mnist (784-256-10 on MNIST, time to accuracy)")
	flag.StringVar(&o.layout, "layout", "auto", "layout `kxr`: k parts × r replicas on the k·r ≤ N fastest providers; or auto (chosen by partition.ChooseLayout)")
	flag.StringVar(&reduce, "reduce", "auto", "-mode sync: where replicas' gradients are summed: ring (between the providers), requester (through this process) or auto (ring where it forms)")
	flag.IntVar(&cfsPeriod, "cfs-period", 100000, "CFS period of the providers' CPU quotas in `µs` (cgroups only): a share c runs c·period in every period")
	flag.IntVar(&o.batch, "batch", 256, "mini-batch size")
	flag.IntVar(&o.micro, "micro", 1, "micro-batches per replica")
	flag.IntVar(&o.steps, "steps", 20, "timed steps (with -target-acc: the most steps)")
	flag.IntVar(&o.warmup, "warmup", 3, "untimed steps before the timed ones")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	flag.Float64Var(&o.targetAcc, "target-acc", 0, "with -model mnist: train until this test accuracy and report the time it took")
	flag.IntVar(&o.evalEvery, "eval-every", 25, "with -target-acc: steps between evaluations (not timed)")
	flag.Float64Var(&o.lr, "lr", 0.05, "SGD learning rate (momentum 0.9)")
	flag.StringVar(&o.weights, "weights", "measured", "replicas' row weights: measured (the providers' start-up benchmark), cpu (the -cpu shares) or equal")
	flag.StringVar(&o.speeds, "speeds", "trained", "providers' speeds for -layout auto and the predictions: trained (the start-up benchmark scaled by the baseline's observed compute) or benchmark")
	flag.StringVar(&o.rookery, "rookery", "", "the rookery binary to start (default: build ./cmd/rookery of this module)")
	flag.StringVar(&o.provProf, "provider-cpuprofile", "", "write a CPU profile of each provider process, from its start to its exit, to `PREFIX`.N (N: the provider's index)")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of this process (the requester) during the timed steps of the scaled run to `FILE`")
	flag.BoolVar(&o.json, "json", false, "print the figures as one JSON object on the last line")
	flag.Float64Var(&o.maxSeconds, "max-seconds", 0, "stop each run's training clock after this many `seconds` and report how far it got (0: no bound)")
	flag.IntVar(&o.rounds, "rounds", 10, "-mode local: rounds to run (with -target-acc: the most rounds)")
	flag.IntVar(&o.localSteps, "local-steps", 50, "-mode local: local steps h per round")
	flag.StringVar(&codec, "codec", "int8", "-mode local: codec of the deltas and updates: int8, float16 or float32")
	flag.Float64Var(&o.outerLR, "outer-lr", 0.7, "-mode local: learning rate of the outer Nesterov step")
	flag.Float64Var(&o.outerMomentum, "outer-momentum", 0.9, "-mode local: momentum of the outer Nesterov step")
	flag.Float64Var(&o.deadline, "deadline", 3, "-mode local: a round's deadline, as a multiple of the median replica's round time (0: wait for all)")
	flag.Float64Var(&o.killAt, "kill-at", 0, "-mode local: after the undisturbed run, run again and kill one provider at this `fraction` of the undisturbed run's seconds")
	flag.Float64Var(&o.joinAt, "join-at", 0, "-mode local, with -kill-at: start a fresh provider at this `fraction` of the undisturbed run's seconds; it replaces the killed one")
	flag.Parse()
	if r, err := exec.ParseReduction(reduce); err != nil {
		fmt.Fprintln(os.Stderr, "scale: -reduce:", err)
		os.Exit(2)
	} else {
		o.reduction = r
	}
	var err error
	o.codec, err = compress.ParseCodec(codec)
	if err == nil {
		o.cpu, err = parseCPU(cpu, o.providers)
	}
	if err == nil && link != "" {
		var l shaper.Link
		if l, err = shaper.ParseLink(link); err == nil {
			o.link = &l
		}
	}
	if err == nil {
		err = o.check()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func parseCPU(s string, n int) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) || v > float64(runtime.NumCPU()) {
			return nil, fmt.Errorf("%w: -cpu %q: each share must be a number of cores in (0, %d]", errUsage, s, runtime.NumCPU())
		}
		out = append(out, v)
	}
	switch {
	case len(out) == 1:
		for len(out) < n {
			out = append(out, out[0])
		}
	case len(out) != n:
		return nil, fmt.Errorf("%w: -cpu gives %d shares for %d providers", errUsage, len(out), n)
	}
	return out, nil
}

func (o *options) check() error {
	switch {
	case o.providers < 1:
		return fmt.Errorf("%w: -providers %d", errUsage, o.providers)
	case o.mode != "sync" && o.mode != "local":
		return fmt.Errorf("%w: -mode %q: want sync or local", errUsage, o.mode)
	case o.model != "mlp1024" && o.model != "mlp256" && o.model != "mnist":
		return fmt.Errorf("%w: -model %q: want mlp1024, mlp256 or mnist", errUsage, o.model)
	case o.targetAcc != 0 && (o.model != "mnist" || o.targetAcc <= 0 || o.targetAcc >= 1):
		return fmt.Errorf("%w: -target-acc needs -model mnist and an accuracy in (0, 1)", errUsage)
	case o.steps < 1 || o.warmup < 0 || o.batch < 1 || o.micro < 1 || o.evalEvery < 1:
		return fmt.Errorf("%w: -steps, -batch, -micro and -eval-every must be at least 1, -warmup at least 0", errUsage)
	case o.weights != "measured" && o.weights != "cpu" && o.weights != "equal":
		return fmt.Errorf("%w: -weights %q: want measured, cpu or equal", errUsage, o.weights)
	case o.speeds != "trained" && o.speeds != "benchmark":
		return fmt.Errorf("%w: -speeds %q: want trained or benchmark", errUsage, o.speeds)
	case o.timeout <= 0:
		return fmt.Errorf("%w: -timeout %v", errUsage, o.timeout)
	case o.maxSeconds < 0 || math.IsNaN(o.maxSeconds):
		return fmt.Errorf("%w: -max-seconds %v", errUsage, o.maxSeconds)
	case o.mode == "sync" && (o.killAt != 0 || o.joinAt != 0):
		return fmt.Errorf("%w: -kill-at and -join-at need -mode local", errUsage)
	case o.mode == "local" && (o.rounds < 1 || o.localSteps < 1 || o.localSteps > exec.MaxLocalSteps):
		return fmt.Errorf("%w: -rounds and -local-steps must be at least 1, -local-steps at most %d", errUsage, exec.MaxLocalSteps)
	case o.mode == "local" && (!(o.outerLR > 0) || o.outerMomentum < 0 || o.outerMomentum >= 1 || o.deadline < 0 || (o.deadline > 0 && o.deadline < 1)):
		return fmt.Errorf("%w: -outer-lr must be positive, -outer-momentum in [0, 1), -deadline 0 or at least 1", errUsage)
	case o.killAt < 0 || o.joinAt < 0 || (o.joinAt > 0 && o.killAt == 0) || (o.killAt > 0 && o.joinAt > 0 && o.joinAt <= o.killAt):
		return fmt.Errorf("%w: -kill-at and -join-at are fractions, -join-at needs -kill-at and comes after it", errUsage)
	case o.killAt > 0 && o.providers < 2:
		return fmt.Errorf("%w: -kill-at needs at least 2 providers", errUsage)
	}
	if o.mode == "local" {
		return nil // k = 1, r = N
	}
	_, _, err := layoutFor(o.layout, o.providers)
	return err
}

// hidden is the model's hidden layer widths.
func (o options) hidden() []int {
	if o.model == "mlp1024" {
		return []int{1024, 1024}
	}
	return []int{256}
}

// layoutFor returns the parts k and replicas r of spec ("kxr"), or 0, 0
// for auto.
func layoutFor(spec string, n int) (k, r int, err error) {
	if spec == "auto" {
		return 0, 0, nil
	}
	ks, rs, ok := strings.Cut(spec, "x")
	k, err1 := strconv.Atoi(ks)
	r, err2 := strconv.Atoi(rs)
	if !ok || err1 != nil || err2 != nil || k < 1 || r < 1 || k*r > n {
		return 0, 0, fmt.Errorf("%w: -layout %q: want auto, or kxr with k·r ≤ %d providers", errUsage, spec, n)
	}
	return k, r, nil
}

// predict runs partition.ChooseLayout for the model on the providers
// (their start-up benchmark as speeds, the link when given): over every
// layout when k is 0, else over k×r alone.
func predict(o options, ps []*provider, scale float64, k, r int) (*partition.Layout, error) {
	hidden := o.hidden()
	m := newMLP(o.batch, hidden)
	ir, err := graph.FromGorgonia(m.g, graph.Learnables(m.learn...))
	if err != nil {
		return nil, err
	}
	gflops := make([]float64, len(ps))
	for i, p := range ps {
		if gflops[i] = p.gflops; !(gflops[i] > 0) {
			gflops[i] = p.share * partition.DefaultSpeed / 1e9
		}
		gflops[i] *= scale
	}
	opts := []partition.LayoutOption{partition.WithGflops(gflops...), partition.WithLayoutMicroBatches(o.micro),
		partition.WithSplitOptions(partition.WithMaxImbalance(1)), partition.WithFixed(k, r)}
	if o.reduction != exec.ReduceRequester {
		// The ring's rate is per FLOP/s of the start-up benchmark, which
		// the speeds here are scaled from.
		opts = append(opts, partition.WithRing(partition.DefaultRingBytesPerFLOP/scale))
	}
	if o.reduction == exec.ReduceRing {
		opts = append(opts, partition.WithRingOnly())
	}
	// So is the update's cost.
	opts = append(opts, partition.WithUpdateCost(partition.DefaultUpdateFLOPsPerByte*scale))
	if o.link != nil {
		bw := o.link.Rate
		if bw == 0 {
			bw = partition.DefaultBandwidth
		}
		opts = append(opts, partition.WithLink(bw, o.link.Delay))
	}
	return partition.ChooseLayout(ir, len(ps), opts...)
}

// printLayout prints the predicted step of every candidate of l.
func printLayout(l *partition.Layout) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "predicted\tlayout\tsamples/s\tms/step\tcompute ms\tbubble ms\ttransfer ms\treduce ms\tsum in\tupdate ms\toverhead ms\t")
	ms := func(s float64) float64 { return 1e3 * s }
	for i, c := range l.Candidates {
		mark := ""
		if i == l.Pick {
			mark = "*"
		}
		if c.Err != nil {
			fmt.Fprintf(tw, "%s\t%dx%d\tcannot run\t\t\t\t\t\t\t\t\t\n", mark, c.K, c.R)
			continue
		}
		where := "-"
		switch {
		case c.R > 1 && c.Ring:
			where = "ring"
		case c.R > 1:
			where = "requester"
		}
		fmt.Fprintf(tw, "%s\t%dx%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t\n", mark, c.K, c.R, c.SamplesPerSecond, ms(c.Step),
			ms(c.Compute), ms(c.Bubble), ms(c.Transfer), ms(c.Reduce), where, ms(c.Update), ms(c.Overhead))
	}
	tw.Flush()
}

// result is the JSON object printed last with -json.
type result struct {
	Providers               int       `json:"providers"`
	CPU                     []float64 `json:"cpu"`
	CPULimit                string    `json:"cpu_limit"`
	Link                    string    `json:"link,omitempty"`
	Mode                    string    `json:"mode"`
	Model                   string    `json:"model"`
	Layout                  string    `json:"layout"`
	LayoutChoice            string    `json:"layout_choice"`
	SpeedScale              float64   `json:"speed_scale"`
	PredictedSamplesPerS    float64   `json:"predicted_samples_per_s"`
	PredictedStepMS         float64   `json:"predicted_step_ms"`
	PredictedComputeMS      float64   `json:"predicted_compute_ms"`
	PredictedReduceMS       float64   `json:"predicted_reduce_ms"`
	Batch                   int       `json:"batch"`
	Rows                    []int     `json:"rows_per_replica"`
	Steps                   int       `json:"steps"`
	SamplesPerS             float64   `json:"samples_per_s"`
	BaselineSamplesPerS     float64   `json:"baseline_samples_per_s"`
	Speedup                 float64   `json:"speedup"`
	Efficiency              float64   `json:"efficiency"`
	UnshapedSamplesPerS     float64   `json:"unshaped_samples_per_s,omitempty"`
	LinkRatio               float64   `json:"link_ratio,omitempty"`
	StepMS                  float64   `json:"step_ms"`
	ComputeMSPerStep        float64   `json:"compute_ms_per_step"`
	ReduceMSPerStep         float64   `json:"reduce_ms_per_step"`
	UpdateMSPerStep         float64   `json:"update_ms_per_step"`
	BytesPerStepPerProvider float64   `json:"bytes_per_step_per_provider"`
	// Reduction is where the gradients were summed: ring (between the
	// providers, RingParts parts) or requester.
	Reduction                   string   `json:"reduction"`
	RingParts                   int      `json:"ring_parts"`
	RingBytesPerStepPerProvider float64  `json:"ring_bytes_per_step_per_provider"`
	RequesterCPUMSPerStep       float64  `json:"requester_cpu_ms_per_step"`
	ThrottledMSPerStep          float64  `json:"provider_throttled_ms_per_step"`
	ProviderCPUMSPerStep        float64  `json:"provider_cpu_ms_per_step"`
	SecondsToTarget             *float64 `json:"seconds_to_target,omitempty"`
	BaselineSecondsToTarget     *float64 `json:"baseline_seconds_to_target,omitempty"`
	TestAccuracy                *float64 `json:"test_accuracy,omitempty"`
	BaselineTestAccuracy        *float64 `json:"baseline_test_accuracy,omitempty"`
	Reached                     *bool    `json:"reached,omitempty"`
	BaselineReached             *bool    `json:"baseline_reached,omitempty"`
	MaxSeconds                  float64  `json:"max_seconds,omitempty"`
	// BytesPerSamplePerProvider is the bytes on the requester's
	// connections to the providers during the timed steps or rounds (not
	// the staging, not the evaluations) over the training samples
	// processed: each provider's bytes over its share of the samples.
	BytesPerSamplePerProvider float64 `json:"bytes_per_sample_per_provider"`
	Load1                     float64 `json:"load1_at_start"`
	// ceilingResult is the exchange ceiling (ceiling.go), for sync runs
	// of one part on two or more replicas.
	*ceilingResult
	*localResult
}

func run(ctx context.Context, o options) (err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	k, r, _ := layoutFor(o.layout, o.providers)
	tmp, err := os.MkdirTemp("", "rookery-scale-")
	if err != nil {
		return err
	}
	var ps []*provider
	defer func() {
		for _, p := range ps {
			err = errors.Join(err, p.stop())
		}
		err = errors.Join(err, os.RemoveAll(tmp))
	}()
	bin := o.rookery
	if bin == "" {
		bin = filepath.Join(tmp, "rookery")
		if err := build(ctx, bin); err != nil {
			return err
		}
	}
	limiter := newLimiter()
	fmt.Printf("cpu limit: %s\n", limiter.describe())
	load := load1()
	for i, share := range o.cpu {
		var extra []string
		if o.provProf != "" {
			extra = []string{"--cpuprofile", fmt.Sprintf("%s.%d", o.provProf, i)}
		}
		p, err := startProvider(ctx, bin, tmp, i, share, limiter, extra...)
		if p != nil {
			ps = append(ps, p)
		}
		if err != nil {
			return err
		}
		fmt.Printf("provider %d: %s, %.2f core, GOMAXPROCS %d, start-up benchmark %.2f GFLOPS\n", i, p.addr, share, p.procs, p.gflops)
	}
	var data *dataset
	if o.model == "mnist" {
		if data, err = loadMNIST(); err != nil {
			return err
		}
	}
	if o.mode == "local" {
		return runLocal(ctx, o, &env{bin: bin, tmp: tmp, limiter: limiter, ps: &ps, load: load, data: data})
	}
	// The baseline first: its compute time calibrates the speeds. The
	// start-up benchmark times one matrix product; training runs more
	// kernels, on micro-batches, so a provider trains at a fraction of
	// it. That fraction, observed on provider 0, scales every provider's
	// benchmark (with -speeds benchmark, the benchmark as it is).
	base, err := train(ctx, o, ps[:1], nil, 1, 1, nil, data, "")
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	scale := 1.0
	if o.speeds == "trained" {
		one, err := predict(o, ps[:1], 1, 1, 1)
		if err != nil {
			return fmt.Errorf("layout: %w", err)
		}
		// The baseline's step holds its update, which the planner
		// predicts from the benchmark as it is (calibrated so).
		c, u := one.Chosen().Compute, one.Chosen().Update
		if c > 0 && base.computeMS > 1e3*u {
			scale = 1e3 * c / (base.computeMS - 1e3*u)
		}
		fmt.Printf("speeds: the start-up benchmark times %.3f, from the baseline's compute (%.1f ms a step, %.1f predicted, update %.1f)\n",
			scale, base.computeMS, 1e3*c, 1e3*u)
	}
	lay, err := predict(o, ps, scale, k, r)
	if err != nil {
		if lay != nil {
			printLayout(lay)
		}
		return fmt.Errorf("layout: %w", err)
	}
	printLayout(lay)
	pick := lay.Chosen()
	k, r = pick.K, pick.R
	if o.reduction == exec.ReduceAuto && r > 1 && !pick.Ring {
		// The planner found the requester's sum the cheaper, as the
		// trainer's automatic layout would.
		o.reduction = exec.ReduceRequester
	}
	used := make([]*provider, len(pick.Executors))
	for i, e := range pick.Executors {
		used[i] = ps[e]
	}
	weights, err := rowWeights(o, used, k, r)
	if err != nil {
		return err
	}

	res := result{Providers: o.providers, CPU: o.cpu, CPULimit: limiter.kind, Mode: o.mode, Model: o.model,
		Layout: fmt.Sprintf("%dx%d", k, r), LayoutChoice: "hand", SpeedScale: scale, Batch: o.batch, Load1: load,
		PredictedSamplesPerS: pick.SamplesPerSecond, PredictedStepMS: 1e3 * pick.Step,
		PredictedComputeMS: 1e3 * (pick.Compute + pick.Bubble), PredictedReduceMS: 1e3 * pick.Reduce}
	if o.layout == "auto" {
		res.LayoutChoice = "auto"
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tproviders\tlayout\tlink\tsamples/s\tms/step\tcompute ms\treduce ms\tupdate ms\tbytes/step/provider\trequester cpu ms\tprovider cpu ms\tthrottled ms\ts to target\ttest acc\t")
	row := func(name string, n int, layout, link string, m *measure) {
		tt, acc := "-", "-"
		if m.toTarget != nil {
			tt = fmt.Sprintf("%.1f", *m.toTarget)
		}
		if m.acc != nil {
			acc = fmt.Sprintf("%.4f", *m.acc)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%s\t%s\t\n", name, n, layout, link,
			m.samplesPerS, m.stepMS, m.computeMS, m.reduceMS, m.updateMS, m.bytesPerStep, m.cpuMS, m.providerCPUMS, m.throttledMS, tt, acc)
	}

	row("baseline", 1, "1x1", "-", base)
	main, err := train(ctx, o, used, o.link, k, r, weights, data, o.profile)
	if err != nil {
		return fmt.Errorf("%d providers: %w", o.providers, err)
	}
	linkName := "-"
	if o.link != nil {
		linkName = o.link.String()
		res.Link = linkName
	}
	row("scaled", len(used), res.Layout, linkName, main)
	if o.link != nil {
		un, err := train(ctx, o, used, nil, k, r, weights, data, "")
		if err != nil {
			return fmt.Errorf("%d providers unshaped: %w", o.providers, err)
		}
		row("unshaped", len(used), res.Layout, "-", un)
		res.UnshapedSamplesPerS = un.samplesPerS
		res.LinkRatio = main.samplesPerS / un.samplesPerS
	}
	tw.Flush()

	res.Rows = main.rows
	res.Steps = main.steps
	res.SamplesPerS = main.samplesPerS
	res.BaselineSamplesPerS = base.samplesPerS
	res.Speedup = main.samplesPerS / base.samplesPerS
	var total float64
	for _, c := range o.cpu {
		total += c
	}
	// The ideal speedup is the providers' cores over the baseline's.
	res.Efficiency = res.Speedup / (total / o.cpu[0])
	res.StepMS, res.ComputeMSPerStep, res.ReduceMSPerStep, res.UpdateMSPerStep = main.stepMS, main.computeMS, main.reduceMS, main.updateMS
	res.BytesPerStepPerProvider = main.bytesPerStep
	res.Reduction = "requester"
	if main.ringParts > 0 {
		res.Reduction = "ring"
	}
	res.RingParts, res.RingBytesPerStepPerProvider = main.ringParts, main.ringBytesPerStep
	res.RequesterCPUMSPerStep = main.cpuMS
	res.ThrottledMSPerStep = main.throttledMS
	res.ProviderCPUMSPerStep = main.providerCPUMS
	res.SecondsToTarget, res.BaselineSecondsToTarget = main.toTarget, base.toTarget
	res.TestAccuracy, res.BaselineTestAccuracy = main.acc, base.acc
	res.Reached, res.BaselineReached = main.reached(o), base.reached(o)
	res.MaxSeconds = o.maxSeconds
	res.BytesPerSamplePerProvider = main.bytesPerSample
	fmt.Printf("layout %s (%s): predicted %.0f samples/s, %.1f ms a step (compute and bubble %.1f, reduce %.1f); measured %.0f samples/s, %.1f ms (compute %.1f, reduce %.1f)\n",
		res.Layout, res.LayoutChoice, res.PredictedSamplesPerS, res.PredictedStepMS, res.PredictedComputeMS, res.PredictedReduceMS,
		main.samplesPerS, main.stepMS, main.computeMS, main.reduceMS)
	fmt.Printf("speedup %.2f× over one provider of %.2f core (ideal %.2f×, efficiency %.0f%%); reduce %.1f ms of a %.1f ms step\n",
		res.Speedup, o.cpu[0], total/o.cpu[0], 100*res.Efficiency, res.ReduceMSPerStep, res.StepMS)
	if o.link != nil {
		fmt.Printf("behind %s: %.0f%% of the unshaped samples per second\n", linkName, 100*res.LinkRatio)
	}
	fmt.Printf("%.0f bytes per training sample per provider\n", res.BytesPerSamplePerProvider)
	// A provider's CPU is read in 10 ms ticks: the ceiling needs enough
	// of them in the baseline to be worth printing.
	const minCeilingCPUMS = 300
	if k == 1 && r >= 2 && base.providerCPUMS*float64(base.steps) < minCeilingCPUMS {
		fmt.Printf("ceiling: not worked out: the baseline provider used %.0f ms of CPU, counted in 10 ms ticks; it needs %d ms (more -steps)\n",
			base.providerCPUMS*float64(base.steps), minCeilingCPUMS)
	} else if k == 1 && r >= 2 {
		b, err := newCeiling(o, base.providerCPUMS, used)
		if err != nil {
			return err
		}
		res.ceilingResult = b
		fmt.Printf("ceiling: with their compute split at no loss, exact replicas reach at most %.2f× here: each moves at least %.1f MB of gradients each way a step, %.1f ms of CPU at %.3f ms/MB (loopback TCP, measured), against the baseline provider's %.1f ms a step",
			b.Speedup, b.GradientMB, b.ExchangeFloorMS, b.LoopbackCPUMSPerMB, b.BaselineCPUMS)
		if b.ReduceShare > 0 {
			fmt.Printf("; the exchange takes at least %.0f%% of a step", 100*b.ReduceShare)
		}
		fmt.Println()
	}
	if main.toTarget == nil && o.targetAcc > 0 {
		fmt.Printf("the scaled run did not reach %.4f: %.4f after %d steps, %.1f s of training\n", o.targetAcc, deref(main.acc), main.steps, main.seconds)
	}
	return printJSON(o, res)
}

func deref(f *float64) float64 {
	if f == nil {
		return math.NaN()
	}
	return *f
}

func printJSON(o options, res result) error {
	if o.json {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	}
	return nil
}

// rowWeights returns each replica's share of the rows.
func rowWeights(o options, ps []*provider, k, r int) ([]float64, error) {
	speeds := make([]float64, len(ps))
	for i, p := range ps {
		switch o.weights {
		case "equal":
			speeds[i] = 1
		case "cpu":
			speeds[i] = p.share
		default:
			if speeds[i] = p.gflops; !(speeds[i] > 0) {
				speeds[i] = p.share
			}
		}
	}
	_, w, err := exec.ReplicaShares(speeds, r)
	return w, err
}

func build(ctx context.Context, out string) error {
	mod, err := osexec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(mod)) == "" || strings.TrimSpace(string(mod)) == os.DevNull {
		return fmt.Errorf("finding this module (run from inside it, or give -rookery): %v", err)
	}
	cmd := osexec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/rookery")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building rookery: %w", err)
	}
	return nil
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return math.NaN()
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// countingConn counts the bytes read and written on a connection.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// dataset is MNIST with standardised pixels.
type dataset struct {
	train, test *mnist.Set
}

func loadMNIST() (*dataset, error) {
	train, test, err := mnist.Load()
	if err != nil {
		return nil, err
	}
	for _, s := range []*mnist.Set{train, test} {
		for i, v := range s.Pixels {
			s.Pixels[i] = (v - 0.1307) / 0.3081
		}
	}
	return &dataset{train: train, test: test}, nil
}

// measure is what one training run measured.
type measure struct {
	steps                         int
	rows                          []int
	samplesPerS, stepMS           float64
	computeMS, reduceMS, updateMS float64
	bytesPerStep                  float64
	cpuMS                         float64 // CPU time of this process (the requester)
	throttledMS                   float64 // time a provider was held back by its quota, mean over providers
	providerCPUMS                 float64 // a provider's CPU time, mean over providers
	toTarget, acc                 *float64
	seconds                       float64 // on the training clock
	bytesPerSample                float64 // per provider, over its share of the samples
	ringParts                     int     // parts summed in a ring
	ringBytesPerStep              float64 // bytes the ring members sent each other, per step and provider
}

// reached says, with -target-acc, whether the run reached it.
func (m *measure) reached(o options) *bool {
	if o.targetAcc == 0 {
		return nil
	}
	ok := m.toTarget != nil
	return &ok
}

// providerConn is a connection to a provider, through a link shaper when one is
// given, with its bytes counted.
type providerConn struct {
	ex    exec.Executor
	bytes *atomic.Int64
	px    *shaper.Proxy
}

// connect dials p through a new shaper for l when l is not nil.
func connect(ctx context.Context, p *provider, l *shaper.Link) (*providerConn, error) {
	out := &providerConn{bytes: new(atomic.Int64)}
	addr := p.addr
	if l != nil {
		px, err := shaper.Listen("127.0.0.1:0", p.addr, *l)
		if err != nil {
			return nil, err
		}
		out.px = px
		addr = px.Addr()
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, n: out.bytes}, nil
	}
	var err error
	if out.ex, err = transport.Dial(ctx, addr, transport.WithDialer(dial)); err != nil {
		out.close()
		return nil, err
	}
	return out, nil
}

func (l *providerConn) close() {
	if c, ok := l.ex.(io.Closer); ok {
		c.Close()
	}
	if l.px != nil {
		l.px.Close()
	}
}

// train builds the model, trains it on the providers ps (through link
// when not nil) as k parts × r replicas and measures it; with profile it
// writes a CPU profile of the timed steps there.
func train(ctx context.Context, o options, ps []*provider, link *shaper.Link, k, r int, weights []float64, data *dataset, profile string) (*measure, error) {
	counts := make([]*atomic.Int64, len(ps))
	execs := make([]exec.Executor, len(ps))
	for i, p := range ps {
		c, err := connect(ctx, p, link)
		if err != nil {
			return nil, err
		}
		defer c.close()
		execs[i], counts[i] = c.ex, c.bytes
	}
	hidden := o.hidden()
	m := newMLP(o.batch, hidden)
	opts := []rookery.Option{rookery.WithExecutors(execs...), rookery.WithParts(k), rookery.WithReplicas(r, weights...),
		rookery.WithMicroBatches(o.micro), rookery.WithSolver(exec.SGD(o.lr, 0.9)), rookery.WithReduction(o.reduction)}
	if k > 1 {
		opts = append(opts, rookery.WithPartitionOptions(partition.WithMaxImbalance(1)))
	}
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, gorgonia.Nodes{m.x, m.y}, opts...)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	rs := tr.Replicas()
	feeds := map[*gorgonia.Node]*tensor.Dense{m.x: m.xs, m.y: m.ys}
	rng := rand.New(rand.NewSource(2))
	next := 0
	fill := func() {
		if data == nil {
			return // random data, drawn once: the throughput does not depend on it
		}
		if next+o.batch > data.train.Len() {
			next = 0
		}
		data.train.Batch(next, m.xs, m.ys)
		next += o.batch
	}
	if data == nil {
		for i := range m.xs.Float32s() {
			m.xs.Float32s()[i] = float32(rng.NormFloat64())
		}
		y := m.ys.Float32s()
		for i := 0; i < o.batch; i++ {
			y[i*10+rng.Intn(10)] = 1
		}
	}
	for s := 0; s < o.warmup; s++ {
		fill()
		if _, err := tr.Step(ctx, feeds); err != nil {
			return nil, fmt.Errorf("warm-up step %d: %w", s, err)
		}
	}
	total := func() int64 {
		var t int64
		for _, c := range counts {
			t += c.Load()
		}
		return t
	}
	throttled := func() (t time.Duration) {
		for _, p := range ps {
			t += p.throttled()
		}
		return t
	}
	provCPU := func() (t time.Duration) {
		for _, p := range ps {
			t += p.cpu()
		}
		return t
	}
	st0, b0, c0, th0, pc0 := rs.Stats(), total(), cpuTime(), throttled(), provCPU()
	stop, err := startProfile(profile)
	if err != nil {
		return nil, err
	}
	defer stop()
	var elapsed time.Duration
	var evalBytes int64 // the evaluations' pulls, not counted as training
	res := &measure{rows: rs.Rows()}
	bound := time.Duration(o.maxSeconds * float64(time.Second))
	for s := 0; s < o.steps; s++ {
		fill()
		t := time.Now()
		if _, err := tr.Step(ctx, feeds); err != nil {
			return nil, fmt.Errorf("step %d: %w", s, err)
		}
		elapsed += time.Since(t)
		res.steps++
		over := bound > 0 && elapsed >= bound
		if o.targetAcc > 0 && (res.steps%o.evalEvery == 0 || s == o.steps-1 || over) {
			e0 := total()
			acc, err := accuracy(ctx, tr, m, data.test)
			if err != nil {
				return nil, err
			}
			evalBytes += total() - e0
			res.acc = &acc
			if acc >= o.targetAcc {
				secs := elapsed.Seconds()
				res.toTarget = &secs
				break
			}
		}
		if over {
			break
		}
	}
	st1, b1, c1, th1, pc1 := rs.Stats(), total(), cpuTime(), throttled(), provCPU()
	n := float64(res.steps)
	res.seconds = elapsed.Seconds()
	res.samplesPerS = n * float64(o.batch) / elapsed.Seconds()
	res.stepMS = float64(elapsed.Microseconds()) / 1e3 / n
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 / n }
	res.computeMS, res.reduceMS, res.updateMS = ms(st1.Compute-st0.Compute), ms(st1.Reduce-st0.Reduce), ms(st1.Update-st0.Update)
	// The providers' bytes to each other in rings (sent, and as much
	// received) count like those on the requester's connections.
	ring := 2 * float64(st1.RingBytes-st0.RingBytes)
	res.ringParts, res.ringBytesPerStep = st1.RingParts, ring/n/float64(len(ps))
	res.bytesPerStep = (float64(b1-b0-evalBytes) + ring) / n / float64(len(ps))
	res.bytesPerSample = (float64(b1-b0-evalBytes) + ring) / (n * float64(o.batch))
	res.cpuMS = ms(c1 - c0) // includes evaluations with -target-acc
	res.throttledMS = ms(th1-th0) / float64(len(ps))
	res.providerCPUMS = ms(pc1-pc0) / float64(len(ps))
	return res, nil
}

// mlp is a ReLU MLP 784-hidden...-10 with a softmax cross-entropy loss.
type mlp struct {
	g      *gorgonia.ExprGraph
	x, y   *gorgonia.Node
	loss   *gorgonia.Node
	learn  gorgonia.Nodes
	xs, ys *tensor.Dense
}

func newMLP(batch int, hidden []int) *mlp {
	rng := rand.New(rand.NewSource(1))
	g := gorgonia.NewGraph()
	m := &mlp{g: g}
	m.x = gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(batch, 784), gorgonia.WithName("x"))
	m.y = gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(batch, 10), gorgonia.WithName("y"))
	h := m.x
	sizes := append(append([]int{784}, hidden...), 10)
	for i := 0; i+1 < len(sizes); i++ {
		w := param(rng, g, fmt.Sprintf("w%d", i), sizes[i], sizes[i+1])
		b := param(rng, g, fmt.Sprintf("b%d", i), sizes[i+1])
		m.learn = append(m.learn, w, b)
		h = gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w)), b, nil, []byte{0}))
		if i+2 < len(sizes) {
			h = gorgonia.Must(gorgonia.Rectify(h))
		}
	}
	m.loss = gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(
		gorgonia.Must(gorgonia.LogSoftMax(h)), m.y))))))
	m.xs = tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(batch, 784))
	m.ys = tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(batch, 10))
	return m
}

func param(rng *rand.Rand, g *gorgonia.ExprGraph, name string, shape ...int) *gorgonia.Node {
	v := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(shape...))
	scale := 0.0
	if len(shape) == 2 {
		scale = math.Sqrt(2 / float64(shape[0]))
	}
	for i := range v.Float32s() {
		v.Float32s()[i] = float32(rng.NormFloat64() * scale)
	}
	return gorgonia.NewTensor(g, tensor.Float32, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name), gorgonia.WithValue(v))
}

// accuracy pulls the parameters and classifies the test set here (the
// time it takes is not counted as training).
func accuracy(ctx context.Context, tr *rookery.Trainer, m *mlp, test *mnist.Set) (float64, error) {
	if err := tr.Pull(ctx); err != nil {
		return 0, err
	}
	ws := make([][]float32, len(m.learn))
	for i, l := range m.learn {
		ws[i] = l.Value().Data().([]float32)
	}
	return classify(ws, test), nil
}

// classify returns the share of test that the MLP with parameters ws
// (w0, b0, w1, b1, ...) classifies right.
func classify(ws [][]float32, test *mnist.Set) float64 {
	n := test.Len()
	act := blas32.General{Rows: n, Cols: 784, Stride: 784, Data: test.Pixels}
	for i := 0; i < len(ws); i += 2 {
		w, b := ws[i], ws[i+1]
		cols := len(b)
		out := blas32.General{Rows: n, Cols: cols, Stride: cols, Data: make([]float32, n*cols)}
		for r := 0; r < n; r++ {
			copy(out.Data[r*cols:(r+1)*cols], b)
		}
		blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, act, blas32.General{Rows: act.Cols, Cols: cols, Stride: cols, Data: w}, 1, out)
		if i+2 < len(ws) {
			for j, v := range out.Data {
				out.Data[j] = max(v, 0)
			}
		}
		act = out
	}
	right := 0
	for r := 0; r < n; r++ {
		row := act.Data[r*10 : (r+1)*10]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if best == int(test.Labels[r]) {
			right++
		}
	}
	return float64(right) / float64(n)
}

// startProfile starts a CPU profile of this process into path, when
// path is not empty; stop ends it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

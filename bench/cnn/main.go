// Command cnn measures Rookery's executors against PyTorch on one thread,
// back to back in one run, on three models trained through ravdl:
//
//   - cnn: the network of examples/cnn on MNIST, Conv2D(8, 5×5)-ReLU-
//     MaxPool(2)-Conv2D(16, 5×5)-ReLU-MaxPool(2)-Dense(10), batch 64,
//     float32, SGD lr 0.05 momentum 0.9; seconds of each epoch's training
//     steps (wall clock) and test accuracy after it;
//   - mlp: the 784-256-10 ReLU MLP of bench/ravdl, batch 64, SGD lr 0.1
//     without momentum; the same figures;
//   - big: Conv2D(32, 3×3, pad 1)-ReLU-MaxPool(2)-Conv2D(64)-…-Conv2D(128)-
//     ReLU-MaxPool(2)-Dense(10) on random 3×32×32 inputs, batch 128, SGD
//     lr 0.01 momentum 0.9; samples per second over --big-steps steps
//     after 5 warm-up steps.
//
// Each model runs on every executor named in --executors, then, unless
// --no-torch, its PyTorch twin (bench/torch_cnn.py, bench/torch_mlp.py,
// run with /usr/bin/python3 on 1 thread), and a Markdown table follows
// with each run's time and its ratio to PyTorch's. PyTorch is Debian's
// python3-torch 1.13; its matrix products go to whatever provides
// libblas.so.3, so install libopenblas0 too (with Debian's reference BLAS
// its MLP epoch takes over 10 times as long):
//
//	go run ./bench/cnn [--executors native,tape] [--models cnn,mlp,big] [--parts 1]
//	    [--epochs 1] [--mlp-epochs 1] [--big-steps 50] [--no-torch] [--allocs] [--quick]
//
// --allocs also reports, for each executor on the CNN, the heap
// allocations (runtime.MemStats Mallocs and TotalAlloc) per training step
// in steady state: two trainings of 2 epochs each, of 50 and 150 steps
// per epoch; the difference between their second epochs, divided by the
// 100 steps between them, is the cost of a step without the fixed cost of
// an epoch's end (ravdl pulls the parameters back into the model). --quick
// is a smoke run: a few hundred images, a few steps.
//
// Executors: "native" is exec/native's, which runs the plans of
// exec/plan on Rookery's own kernels; "tape" is exec.NewCPU, the
// tape-machine executor.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/ravdl"
)

var (
	errUnknownExecutor = errors.New("cnn: unknown executor")
)

// executorFor returns what makes a fresh executor of the named kind.
func executorFor(name string) (func() exec.Executor, error) {
	switch name {
	case "tape":
		return func() exec.Executor { return exec.NewCPU() }, nil
	case "native":
		return func() exec.Executor { return native.New() }, nil
	}
	return nil, fmt.Errorf("%w %q (want native or tape)", errUnknownExecutor, name)
}

type settings struct {
	executors  []string
	parts      int
	epochs     int
	mlpEpochs  int
	bigSteps   int
	torch      bool
	allocs     bool
	quick      bool
	python     string
	scripts    string
	train      int // training images used (0: all)
	test       int // test images used (0: all)
	bigBatch   int
	allocSteps [2]int // steps per epoch of the two --allocs trainings
}

func main() {
	executors := flag.String("executors", "native,tape", "comma-separated executors to measure: native, tape")
	models := flag.String("models", "cnn,mlp,big", "comma-separated models: cnn, mlp, big")
	parts := flag.Int("parts", 1, "parts the model is cut into (one executor each)")
	epochs := flag.Int("epochs", 1, "CNN epochs")
	mlpEpochs := flag.Int("mlp-epochs", 1, "MLP epochs")
	bigSteps := flag.Int("big-steps", 50, "timed steps of the big CNN (rounded up to a multiple of 5), after 5 warm-up steps")
	noTorch := flag.Bool("no-torch", false, "do not run the PyTorch baselines")
	allocs := flag.Bool("allocs", false, "report heap allocations per training step of each executor on the CNN")
	quick := flag.Bool("quick", false, "smoke run: a few hundred images, a few steps")
	python := flag.String("python", "/usr/bin/python3", "the Python that has torch")
	scripts := flag.String("scripts", "bench", "directory holding torch_cnn.py and torch_mlp.py")
	flag.Parse()
	s := settings{parts: *parts, epochs: *epochs, mlpEpochs: *mlpEpochs, bigSteps: *bigSteps, torch: !*noTorch,
		allocs: *allocs, quick: *quick, python: *python, scripts: *scripts, bigBatch: 128, allocSteps: [2]int{50, 150}}
	if s.quick {
		s.train, s.test, s.bigSteps, s.allocSteps = 640, 500, 5, [2]int{5, 10}
	}
	if err := run(context.Background(), os.Stdout, s, split(*executors), split(*models)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func split(list string) []string {
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(ctx context.Context, w io.Writer, s settings, executors, models []string) error {
	if s.parts < 1 || s.epochs < 1 || s.mlpEpochs < 1 || s.bigSteps < 1 {
		return fmt.Errorf("cnn: --parts, --epochs, --mlp-epochs and --big-steps must be at least 1")
	}
	if len(executors) == 0 {
		return fmt.Errorf("cnn: no executor named")
	}
	makers := make([]func() exec.Executor, len(executors))
	for i, name := range executors {
		m, err := executorFor(name)
		if err != nil {
			return err
		}
		makers[i] = m
	}
	for _, m := range models {
		if m != "cnn" && m != "mlp" && m != "big" {
			return fmt.Errorf("cnn: unknown model %q (want cnn, mlp or big)", m)
		}
	}
	fmt.Fprintf(w, "blas: %s, GOMAXPROCS %d, %s\n", exec.BLASName(), runtime.GOMAXPROCS(0), count(s.parts, "part"))
	var train, test *mnist.Set
	if slices.Contains(models, "cnn") || slices.Contains(models, "mlp") {
		var err error
		if train, test, err = mnist.Load(); err != nil {
			return err
		}
		train, test = head(train, s.train), head(test, s.test)
	}
	var tables []string
	for _, model := range models {
		var rows []row
		for i, name := range executors {
			r, err := runRookery(ctx, w, s, model, name, makers[i], train, test)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", model, name, err)
			}
			rows = append(rows, r)
		}
		if s.torch {
			r, err := runTorch(ctx, w, s, model)
			if err != nil {
				return fmt.Errorf("%s on PyTorch: %w", model, err)
			}
			rows = append(rows, r)
		}
		tables = append(tables, table(s, model, rows))
	}
	if s.allocs {
		t, err := allocTable(ctx, w, s, executors, makers, train)
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, strings.Join(tables, "\n"))
	return nil
}

// row is one run's figures: seconds and accuracy per epoch (cnn, mlp) or
// samples per second (big).
type row struct {
	name     string
	torch    bool
	seconds  []float64
	accuracy []float64
	sps      float64
}

func (r row) meanSeconds() float64 {
	var sum float64
	for _, v := range r.seconds {
		sum += v
	}
	return sum / float64(len(r.seconds))
}

func mnistCNN() *ravdl.Model {
	return ravdl.Sequential(
		ravdl.Reshape(1, mnist.Rows, mnist.Cols),
		ravdl.Conv2D(8, 5), ravdl.ReLU(), ravdl.MaxPool2D(2),
		ravdl.Conv2D(16, 5), ravdl.ReLU(), ravdl.MaxPool2D(2),
		ravdl.Flatten(),
		ravdl.Dense(10),
	)
}

func bigCNN() *ravdl.Model {
	return ravdl.Sequential(
		ravdl.Reshape(3, 32, 32),
		ravdl.Conv2D(32, 3, ravdl.Pad(1)), ravdl.ReLU(), ravdl.MaxPool2D(2),
		ravdl.Conv2D(64, 3, ravdl.Pad(1)), ravdl.ReLU(), ravdl.MaxPool2D(2),
		ravdl.Conv2D(128, 3, ravdl.Pad(1)), ravdl.ReLU(), ravdl.MaxPool2D(2),
		ravdl.Flatten(),
		ravdl.Dense(10),
	)
}

func mlp() *ravdl.Model {
	return ravdl.Sequential(ravdl.Dense(256, ravdl.Init(ravdl.HeUniform())), ravdl.ReLU(), ravdl.Dense(10))
}

// executorOpts gives each of the s.parts parts a fresh executor of one kind.
func executorOpts(s settings, newExec func() exec.Executor) []ravdl.Option {
	ex := make([]exec.Executor, s.parts)
	for i := range ex {
		ex[i] = newExec()
	}
	return []ravdl.Option{ravdl.WithExecutors(ex...), ravdl.Parts(s.parts), ravdl.Seed(1), ravdl.Quiet()}
}

func runRookery(ctx context.Context, w io.Writer, s settings, model, name string, newExec func() exec.Executor, train, test *mnist.Set) (row, error) {
	r := row{name: fmt.Sprintf("Rookery %s, %s", name, count(s.parts, "part"))}
	if model == "big" {
		sps, err := runBig(ctx, s, newExec)
		if err != nil {
			return r, err
		}
		r.sps = sps
		fmt.Fprintf(w, "rookery %s big samples_per_s=%.1f\n", name, sps)
		return r, nil
	}
	m, epochs, opt := mnistCNN(), s.epochs, ravdl.SGD(0.05, 0.9)
	if model == "mlp" {
		m, epochs, opt = mlp(), s.mlpEpochs, ravdl.SGD(0.1, 0)
	}
	x, y := tensors(train)
	xt, yt := tensors(test)
	opts := append(executorOpts(s, newExec), ravdl.Epochs(epochs), ravdl.BatchSize(64), ravdl.WithOptimizer(opt),
		ravdl.Validation(xt, yt), ravdl.OnEpoch(func(e ravdl.Epoch) {
			r.seconds = append(r.seconds, e.Seconds)
			r.accuracy = append(r.accuracy, e.ValAccuracy)
			fmt.Fprintf(w, "rookery %s %s epoch=%d steps=%d seconds=%.2f cpu_seconds=%.2f test_acc=%.2f%%\n",
				name, model, e.Epoch, e.Steps, e.Seconds, e.CPUSeconds, 100*e.ValAccuracy)
		}))
	_, err := m.Fit(ctx, x, y, opts...)
	return r, err
}

// bigWarmup is the big CNN's warm-up steps, and the steps of each of its
// epochs: the first epoch warms up, the others are timed.
const bigWarmup = 5

// runBig trains the big CNN on bigWarmup batches of random data, one
// epoch to warm up and then enough epochs for s.bigSteps timed steps, and
// returns the timed samples per second.
func runBig(ctx context.Context, s settings, newExec func() exec.Executor) (float64, error) {
	n, width := bigWarmup*s.bigBatch, 3*32*32
	rng := rand.New(rand.NewSource(1))
	xs, ys := make([]float32, n*width), make([]uint8, n)
	for i := range xs {
		xs[i] = float32(rng.NormFloat64())
	}
	for i := range ys {
		ys[i] = uint8(rng.Intn(10))
	}
	timed := (s.bigSteps + bigWarmup - 1) / bigWarmup
	var seconds float64
	var steps int
	opts := append(executorOpts(s, newExec), ravdl.Epochs(1+timed), ravdl.BatchSize(s.bigBatch),
		ravdl.WithOptimizer(ravdl.SGD(0.01, 0.9)), ravdl.OnEpoch(func(e ravdl.Epoch) {
			if e.Epoch > 1 {
				seconds += e.Seconds
				steps += e.Steps
			}
		}))
	x := tensor.New(tensor.WithShape(n, width), tensor.WithBacking(xs))
	y := tensor.New(tensor.WithShape(n), tensor.WithBacking(ys))
	if _, err := bigCNN().Fit(ctx, x, y, opts...); err != nil {
		return 0, err
	}
	return float64(steps*s.bigBatch) / seconds, nil
}

// torchResult is the JSON line that ends bench/torch_cnn.py's and
// bench/torch_mlp.py's output.
type torchResult struct {
	Model        string    `json:"model"`
	Threads      int       `json:"threads"`
	EpochSeconds []float64 `json:"epoch_seconds"`
	Accuracy     []float64 `json:"accuracy"`
	SamplesPerS  float64   `json:"samples_per_s"`
}

func runTorch(ctx context.Context, w io.Writer, s settings, model string) (row, error) {
	var args []string
	switch model {
	case "cnn":
		args = []string{filepath.Join(s.scripts, "torch_cnn.py"), "--model", "mnist", "--threads", "1", "--epochs", fmt.Sprint(s.epochs)}
		if s.train > 0 {
			args = append(args, "--train", fmt.Sprint(s.train))
		}
	case "mlp":
		args = []string{filepath.Join(s.scripts, "torch_mlp.py"), "--threads", "1", "--epochs", fmt.Sprint(s.mlpEpochs)}
		if s.train > 0 {
			args = append(args, "--train", fmt.Sprint(s.train))
		}
	case "big":
		args = []string{filepath.Join(s.scripts, "torch_cnn.py"), "--model", "big", "--threads", "1",
			"--steps", fmt.Sprint((s.bigSteps + bigWarmup - 1) / bigWarmup * bigWarmup), "--batch", fmt.Sprint(s.bigBatch)}
	}
	var out bytes.Buffer
	cmd := osexec.CommandContext(ctx, s.python, args...)
	cmd.Stdout = io.MultiWriter(w, &out)
	cmd.Stderr = os.Stderr
	// One thread for OpenBLAS too, which PyTorch's own setting may not reach.
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1")
	if err := cmd.Run(); err != nil {
		return row{}, fmt.Errorf("%s %s: %w", s.python, strings.Join(args, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var tr torchResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &tr); err != nil {
		return row{}, fmt.Errorf("%s: the last line is not the JSON figures: %w", args[0], err)
	}
	return row{name: fmt.Sprintf("PyTorch, %d thread", tr.Threads), torch: true,
		seconds: tr.EpochSeconds, accuracy: tr.Accuracy, sps: tr.SamplesPerS}, nil
}

// table is the Markdown table of one model's rows.
func table(s settings, model string, rows []row) string {
	var ref *row
	for i := range rows {
		if rows[i].torch {
			ref = &rows[i]
		}
	}
	var b strings.Builder
	switch model {
	case "big":
		fmt.Fprintf(&b, "### big CNN, random 3×32×32, batch %d, %d timed steps\n\n", s.bigBatch, (s.bigSteps+bigWarmup-1)/bigWarmup*bigWarmup)
		b.WriteString("| run | samples/s | time × PyTorch |\n| --- | ---: | ---: |\n")
		for _, r := range rows {
			ratio := "–"
			if ref != nil && r.sps > 0 {
				ratio = fmt.Sprintf("%.2f", ref.sps/r.sps)
			}
			fmt.Fprintf(&b, "| %s | %.1f | %s |\n", r.name, r.sps, ratio)
		}
		return b.String()
	case "cnn":
		fmt.Fprintf(&b, "### CNN of examples/cnn, MNIST, batch 64, %s\n\n", count(s.epochs, "epoch"))
	case "mlp":
		fmt.Fprintf(&b, "### 784-256-10 MLP, MNIST, batch 64, %s\n\n", count(s.mlpEpochs, "epoch"))
	}
	b.WriteString("| run | seconds per epoch | epochs (s) | test accuracy | time × PyTorch |\n| --- | ---: | --- | ---: | ---: |\n")
	for _, r := range rows {
		ratio, acc := "–", "–"
		if ref != nil && len(r.seconds) > 0 {
			ratio = fmt.Sprintf("%.2f", r.meanSeconds()/ref.meanSeconds())
		}
		if len(r.accuracy) > 0 {
			acc = fmt.Sprintf("%.2f%%", 100*r.accuracy[len(r.accuracy)-1])
		}
		each := make([]string, len(r.seconds))
		for i, v := range r.seconds {
			each[i] = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s | %s | %s |\n", r.name, r.meanSeconds(), strings.Join(each, ", "), acc, ratio)
	}
	return b.String()
}

// allocTable measures each executor's heap allocations per CNN training
// step in steady state (see the package comment) and returns their table.
func allocTable(ctx context.Context, w io.Writer, s settings, executors []string, makers []func() exec.Executor, train *mnist.Set) (string, error) {
	if train == nil {
		var err error
		if train, _, err = mnist.Load(); err != nil {
			return "", err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### heap allocations per CNN training step (steady state, %s)\n\n", count(s.parts, "part"))
	b.WriteString("| executor | mallocs per step | bytes per step | mallocs per epoch besides steps |\n| --- | ---: | ---: | ---: |\n")
	for i, name := range executors {
		var d [2]memDelta
		for j, steps := range s.allocSteps {
			var err error
			if d[j], err = epochAllocs(ctx, s, makers[i], head(train, steps*64)); err != nil {
				return "", fmt.Errorf("allocations on %s: %w", name, err)
			}
		}
		between := float64(s.allocSteps[1] - s.allocSteps[0])
		mallocs := float64(d[1].mallocs-d[0].mallocs) / between
		bytesPer := float64(d[1].bytes-d[0].bytes) / between
		fixed := float64(d[0].mallocs) - mallocs*float64(s.allocSteps[0])
		fmt.Fprintf(w, "rookery %s cnn allocs: epoch of %d steps %d mallocs %d bytes, of %d steps %d mallocs %d bytes\n",
			name, s.allocSteps[0], d[0].mallocs, d[0].bytes, s.allocSteps[1], d[1].mallocs, d[1].bytes)
		fmt.Fprintf(&b, "| %s | %.1f | %.0f | %.0f |\n", name, mallocs, bytesPer, fixed)
	}
	return b.String(), nil
}

type memDelta struct{ mallocs, bytes int64 }

// epochAllocs trains the CNN for 2 epochs on train and returns the heap
// allocations of the second (from the end of the first epoch to the end
// of the second, which includes the pull of the parameters at its end).
func epochAllocs(ctx context.Context, s settings, newExec func() exec.Executor, train *mnist.Set) (memDelta, error) {
	var ms runtime.MemStats
	var start, d memDelta
	x, y := tensors(train)
	opts := append(executorOpts(s, newExec), ravdl.Epochs(2), ravdl.BatchSize(64), ravdl.WithOptimizer(ravdl.SGD(0.05, 0.9)),
		ravdl.OnEpoch(func(e ravdl.Epoch) {
			runtime.ReadMemStats(&ms)
			now := memDelta{int64(ms.Mallocs), int64(ms.TotalAlloc)}
			if e.Epoch == 1 {
				start = now
			} else {
				d = memDelta{now.mallocs - start.mallocs, now.bytes - start.bytes}
			}
		}))
	_, err := mnistCNN().Fit(ctx, x, y, opts...)
	return d, err
}

// head is the first n images of set (all of it where n is 0 or more).
func head(set *mnist.Set, n int) *mnist.Set {
	if n <= 0 || n >= set.Len() {
		return set
	}
	return &mnist.Set{Pixels: set.Pixels[:n*mnist.Pixels], Labels: set.Labels[:n]}
}

func tensors(set *mnist.Set) (x, y *tensor.Dense) {
	x = tensor.New(tensor.WithShape(set.Len(), mnist.Pixels), tensor.WithBacking(set.Pixels))
	y = tensor.New(tensor.WithShape(set.Len()), tensor.WithBacking(set.Labels))
	return x, y
}

// count is n and noun, plural unless n is 1: "1 part", "2 parts".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

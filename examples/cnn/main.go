// Command cnn trains a small convolutional network on MNIST across 3
// Rookery parts (in-process providers), prints its test accuracy and
// saves the model.
//
//	go run ./examples/cnn
//
// The network is Conv2D(8, 5×5)-ReLU-MaxPool(2)-Conv2D(16, 5×5)-ReLU-
// MaxPool(2)-Dense(10), about 6,000 parameters. With no flags it trains 1
// epoch (batch 64, float32, SGD with learning rate 0.05 and momentum
// 0.9). Flags: --parts, --epochs, --batch, --lr, --train n (use only the
// first n training images), --executor native|tape, --out DIR (default
// $TMPDIR/rookery-cnn), --quiet.
//
// Each part runs on the native executor (exec/native: the part's plan on
// Rookery's own kernels) unless --executor tape puts it on Gorgonia's
// tape machine; the program says where each part runs. A part the
// native executor cannot lower runs on the tape machine, and the line
// says why.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/ravdl"
)

func main() {
	parts := flag.Int("parts", 3, "number of parts")
	epochs := flag.Int("epochs", 1, "passes over the training images")
	batch := flag.Int("batch", 64, "mini-batch size")
	lr := flag.Float64("lr", 0.05, "SGD learning rate (momentum 0.9)")
	ntrain := flag.Int("train", 0, "use only the first n training images (0: all)")
	out := flag.String("out", filepath.Join(os.TempDir(), "rookery-cnn"), "directory for cnn.model")
	quiet := flag.Bool("quiet", false, "no progress output")
	executor := flag.String("executor", "native", "where parts run: native (Rookery's kernels) or tape (Gorgonia's tape machine)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *parts, *epochs, *batch, *lr, *ntrain, *executor, *out, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "cnn:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, parts, epochs, batch int, lr float64, ntrain int, executor, out string, quiet bool) error {
	execs, err := executors(executor, parts)
	if err != nil {
		return err
	}
	train, test, err := mnist.Load()
	if err != nil {
		return err
	}
	n := train.Len()
	if ntrain > 0 && ntrain < n {
		n = ntrain
	}
	x := tensor.New(tensor.WithShape(n, mnist.Pixels), tensor.WithBacking(train.Pixels[:n*mnist.Pixels]))
	y := tensor.New(tensor.WithShape(n), tensor.WithBacking(train.Labels[:n]))
	xt := tensor.New(tensor.WithShape(test.Len(), mnist.Pixels), tensor.WithBacking(test.Pixels))
	yt := tensor.New(tensor.WithShape(test.Len()), tensor.WithBacking(test.Labels))

	model := ravdl.Sequential(
		ravdl.Reshape(1, mnist.Rows, mnist.Cols),
		ravdl.Conv2D(8, 5), ravdl.ReLU(), ravdl.MaxPool2D(2),
		ravdl.Conv2D(16, 5), ravdl.ReLU(), ravdl.MaxPool2D(2),
		ravdl.Flatten(),
		ravdl.Dense(10),
	)
	opts := []ravdl.Option{ravdl.Epochs(epochs), ravdl.BatchSize(batch), ravdl.Seed(1), ravdl.Parts(parts), ravdl.WithExecutors(execs...),
		ravdl.WithOptimizer(ravdl.SGD(lr, 0.9)), ravdl.Validation(xt, yt)}
	if quiet {
		opts = append(opts, ravdl.Quiet())
	} else {
		opts = append(opts, ravdl.Progress(os.Stdout))
	}
	if err := model.Build([]int{mnist.Pixels}, ravdl.Seed(1)); err != nil {
		return err
	}
	fmt.Print(model.Summary())
	fmt.Printf("training a CNN on %d MNIST images in %s: %s, batch %d, SGD lr %g momentum 0.9\n", n, count(parts, "part"), count(epochs, "epoch"), batch, lr)
	hist, err := model.Fit(ctx, x, y, opts...)
	if err != nil {
		return err
	}
	last := hist.Epochs[len(hist.Epochs)-1]
	fmt.Printf("parts: %d, test accuracy: %.2f%%\n", hist.Parts, 100*last.ValAccuracy)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(out, "cnn.model")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := model.Save(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println("saved", path)
	return nil
}

// count is n and noun, plural unless n is 1: "1 epoch", "2 epochs".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// executors returns one in-process executor per part, of the kind asked
// for; the native ones say where each part runs as it opens, and share
// the cores among the parts.
func executors(kind string, parts int) ([]exec.Executor, error) {
	if parts < 1 {
		return nil, fmt.Errorf("--parts %d: want at least 1", parts)
	}
	out := make([]exec.Executor, parts)
	for i := range out {
		switch kind {
		case "native":
			out[i] = native.New(native.WithThreads(max(1, runtime.GOMAXPROCS(0)/parts)), native.WithReport(func(p native.Placement) {
				if p.Executor == native.Native {
					fmt.Printf("part %d: native executor (Rookery's kernels)\n", p.Part)
				} else {
					fmt.Printf("part %d: tape machine: %v\n", p.Part, p.Reason)
				}
			}))
		case "tape":
			out[i] = exec.NewCPU()
		default:
			return nil, fmt.Errorf("--executor %q: want native or tape", kind)
		}
	}
	if kind == "tape" {
		fmt.Printf("parts 0-%d: tape machine (--executor tape)\n", parts-1)
	}
	return out, nil
}

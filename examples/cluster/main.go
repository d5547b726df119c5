// Command cluster trains the MNIST-sized MLP (784-256-10, float32) on two
// parts, either on two in-process executors or on two providers leased
// from a seed node, and prints the loss as it goes and at the end.
//
//	go run ./examples/cluster                    # in-process
//	go run ./examples/cluster --seed-node 127.0.0.1:7000 # through a seed node
//
// The two runs print the same losses: the providers compute exactly what
// the in-process executors do, and only the tensors travel. run.sh beside
// this file starts a seed node and two providers on loopback and runs
// both. Flags: --seed-node ADDR, --steps n (default 300), --batch b (default
// 128), --wait d (how long to wait for the seed to know 2 providers),
// --check-ledger URL (after a run through a seed node: read the seed
// node's GET /v1/ledger at URL and check that it holds a receipt of each
// part's session whose FLOPs are the part's cost × steps, within 1%).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/mnist"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport/seednode"
)

func main() {
	seedNode := flag.String("seed-node", "", "seed node to lease 2 providers from (host:port); in-process without it")
	steps := flag.Int("steps", 300, "training steps")
	batch := flag.Int("batch", 128, "mini-batch size")
	wait := flag.Duration("wait", 10*time.Second, "how long to wait for the seed node to know 2 providers")
	checkLedger := flag.String("check-ledger", "", "after training, check the seed node's ledger at this HTTP `URL` (http://host:port)")
	flag.Parse()
	if err := run(*seedNode, *steps, *batch, *wait, *checkLedger); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(seedNode string, steps, batch int, wait time.Duration, checkLedger string) error {
	ctx := context.Background()
	train, _, err := mnist.Load()
	if err != nil {
		return err
	}
	const hidden = 256
	rng := rand.New(rand.NewSource(1))
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(batch, mnist.Pixels), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(batch, mnist.Classes), gorgonia.WithName("y"))
	w1 := param(rng, g, "w1", mnist.Pixels, hidden)
	b1 := param(rng, g, "b1", hidden)
	w2 := param(rng, g, "w2", hidden, mnist.Classes)
	b2 := param(rng, g, "b2", mnist.Classes)
	h := gorgonia.Must(gorgonia.Rectify(gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(x, w1)), b1, nil, []byte{0}))))
	logits := gorgonia.Must(gorgonia.BroadcastAdd(gorgonia.Must(gorgonia.Mul(h, w2)), b2, nil, []byte{0}))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(
		gorgonia.Must(gorgonia.LogSoftMax(logits)), y))))))

	// The first layer holds most of the work and cannot be split, so allow
	// the parts to be unequal.
	const micro = 2
	opts := []rookery.Option{rookery.WithSolver(exec.SGD(0.1, 0.9)), rookery.WithMicroBatches(micro),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(1))}
	where := "2 in-process executors"
	if seedNode != "" {
		if err := awaitProviders(ctx, seedNode, 2, wait); err != nil {
			return err
		}
		opts = append(opts, rookery.WithSeedNode(seedNode, 2))
		where = "2 providers from the seed node at " + seedNode
	} else {
		opts = append(opts, rookery.WithParts(2))
	}
	tr, err := rookery.NewTrainer(ctx, g, loss, gorgonia.Nodes{w1, b1, w2, b2}, gorgonia.Nodes{x, y}, opts...)
	if err != nil {
		return err
	}
	defer tr.Close()
	fmt.Printf("training 784-%d-10 on %s: %s of %d images\n", hidden, where, count(steps, "step"), batch)

	xs := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(batch, mnist.Pixels))
	ys := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(batch, mnist.Classes))
	feeds := map[*gorgonia.Node]*tensor.Dense{x: xs, y: ys}
	start := time.Now()
	var l float64
	for s := 0; s < steps; s++ {
		train.Batch((s*batch)%(train.Len()-batch+1), xs, ys)
		if l, err = tr.Step(ctx, feeds); err != nil {
			return fmt.Errorf("step %d: %w", s, err)
		}
		if s%50 == 0 {
			fmt.Printf("step %4d  loss %.6f\n", s, l)
		}
	}
	el := time.Since(start)
	fmt.Printf("%.1f ms per step\n", float64(el.Microseconds())/1e3/float64(steps))
	fmt.Printf("final loss %.6f\n", l)
	if checkLedger == "" {
		return nil
	}
	// The work the ledger should hold: each part's forward cost on one
	// micro-batch × (1 forward + 2 backward) × micro-batches × steps.
	mg, err := exec.Rebatch(tr.Graph(), exec.NodeIDs(gorgonia.Nodes{x, y}), batch, batch/micro)
	if err != nil {
		return err
	}
	lay, err := exec.NewLayout(mg, tr.Plan().PartNodes(), int64(loss.ID()), exec.NodeIDs(gorgonia.Nodes{x, y}))
	if err != nil {
		return err
	}
	want := make([]int64, len(lay.Specs))
	for i, sp := range lay.Specs {
		want[i] = sp.Graph.TotalCost().FLOPs * 3 * micro * int64(steps)
	}
	// Close sends the sessions' receipts to the seed node's ledger.
	if err := tr.Close(); err != nil {
		return err
	}
	return checkReceipts(ctx, checkLedger, want, int64(steps))
}

func param(rng *rand.Rand, g *gorgonia.ExprGraph, name string, shape ...int) *gorgonia.Node {
	v := tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(shape...))
	scale := 0.01
	if len(shape) == 2 {
		scale = math.Sqrt(2 / float64(shape[0]))
	}
	for i := range v.Float32s() {
		v.Float32s()[i] = float32(rng.NormFloat64() * scale)
	}
	return gorgonia.NewTensor(g, tensor.Float32, len(shape), gorgonia.WithShape(shape...), gorgonia.WithName(name), gorgonia.WithValue(v))
}

// awaitProviders polls the seed node until it knows n providers or wait
// has passed.
func awaitProviders(ctx context.Context, seedNode string, n int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := seednode.Find(fctx, seedNode, seednode.Need{N: n})
		cancel()
		if err == nil {
			return nil
		}
		if !errors.Is(err, seednode.ErrNotEnough) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// count is n and noun, plural unless n is 1: "1 epoch", "2 epochs".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

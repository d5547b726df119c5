package ravdl

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand"
	"os"
	"time"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/partition"
)

// History is what Fit measured.
type History struct {
	Epochs []Epoch
	// StepLoss is the loss of every training step, in order.
	StepLoss []float64
	// Parts is the number of parts the model was cut into, Replicas the
	// number of data-parallel replicas of them.
	Parts, Replicas int
	// LocalSteps is h of LocalSteps (0 without it); then StepLoss and
	// Epoch.Steps count rounds.
	LocalSteps int
	// RingParts is, with replicas, the number of parts whose replicas sum
	// their gradients in a ring between their providers; the others sum
	// them through this process, and RingError says why.
	RingParts int
	RingError error
	// ReduceShare is, with replicas, the share of a step's time spent
	// summing the replicas' gradients (exec.ReplicaStats: Reduce over
	// Compute + Reduce + Update), over the epochs trained; 0 without
	// replicas.
	ReduceShare float64
}

// Epoch is the record of one epoch.
type Epoch struct {
	Epoch   int     // from 1
	Steps   int     // mini-batches trained
	Seconds float64 // time spent training (not evaluating)
	// CPUSeconds is the CPU time this process used meanwhile, on all its
	// threads (0 where not measured). With in-process executors it is the
	// training's own work, unlike Seconds on a busy machine.
	CPUSeconds float64
	Loss       float64 // mean training loss over the epoch's steps
	// ReduceShare is, with replicas, the share of the epoch's step time
	// spent summing the replicas' gradients (see History.ReduceShare).
	ReduceShare float64
	// Validation loss and accuracy (accuracy is NaN for MSE); HasVal is
	// false without Validation.
	HasVal      bool
	ValLoss     float64
	ValAccuracy float64
}

// Fit trains the model on x (samples on axis 0) and targets y (class
// indices or one-hot rows for CrossEntropy, values shaped like the
// outputs otherwise), building it first if needed. It cuts the model
// into parts with the Rookery trainer and trains them on executors (see
// WithExecutors and Parts); the trained parameters come back into the model after
// every epoch, and on error as far as training got. Each call opens a new
// trainer: a second Fit continues from the trained weights but with fresh
// optimiser state (momentum, Adam's moments, the schedule's step count).
// When the training set is smaller than the batch size, the batch is the
// whole set. When a single layer outweighs a part's share of the work,
// the parts are allowed to be as unequal as that layer forces.
func (m *Model) Fit(ctx context.Context, x, y *tensor.Dense, opts ...Option) (*History, error) {
	cfg := newConfig(opts)
	x, n, _, err := rowsOf(x, "x")
	if err != nil {
		return nil, err
	}
	if cfg.epochs < 1 || cfg.batch < 1 {
		return nil, fmt.Errorf("%w: %d epochs of batch %d", ErrConfig, cfg.epochs, cfg.batch)
	}
	if err := cfg.opt.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := m.build(x.Shape()[1:], cfg); err != nil {
		return nil, err
	}
	tg, err := cfg.loss.newTargets(y, m.outShape)
	if err != nil {
		return nil, err
	}
	if tg.n != n {
		return nil, &ShapeError{Layer: -1, Kind: "y", Got: []int(y.Shape().Clone()), Reason: fmt.Sprintf("%d samples, x has %d", tg.n, n)}
	}
	var vt *targets
	var xv *tensor.Dense
	if cfg.xv != nil {
		if xv, err = m.checkX(cfg.xv); err != nil {
			return nil, err
		}
		if vt, err = cfg.loss.newTargets(cfg.yv, m.outShape); err != nil {
			return nil, err
		}
		if vt.n != xv.Shape()[0] {
			return nil, &ShapeError{Layer: -1, Kind: "validation y", Got: []int(cfg.yv.Shape().Clone()), Reason: "not as many samples as the validation x"}
		}
	}
	batch := min(cfg.batch, n)
	ng, err := m.graph(batch, modeTrain, &cfg.loss)
	if err != nil {
		return nil, err
	}
	if cfg.local > 0 {
		return m.fitLocal(ctx, x, tg, xv, vt, ng, cfg)
	}
	topts := []rookery.Option{rookery.WithSolver(cfg.opt.cfg), rookery.WithMicroBatches(cfg.micro)}
	if len(cfg.executors) > 0 {
		topts = append(topts, rookery.WithExecutors(cfg.executors...))
	}
	if cfg.parts > 0 {
		topts = append(topts, rookery.WithParts(cfg.parts))
	}
	if cfg.replicas != 0 {
		topts = append(topts, rookery.WithReplicas(cfg.replicas))
	}
	k := cfg.parts
	if k == 0 && cfg.replicas > 0 {
		k = len(cfg.executors) / cfg.replicas
	} else if k == 0 {
		k = len(cfg.executors)
	}
	if eps, err := imbalanceFor(ng, k); err != nil {
		return nil, err
	} else if eps > partition.DefaultMaxImbalance {
		// A layer outweighs a part's share: let parts be as unequal as
		// that layer forces, rather than fail. Options the caller passes
		// with TrainerOptions come after, and win.
		topts = append(topts, rookery.WithPartitionOptions(partition.WithMaxImbalance(eps)))
	}
	if cfg.resume != nil {
		topts = append(topts, rookery.WithCheckpoint(cfg.resume))
	}
	topts = append(topts, cfg.trainer...)
	tr, err := rookery.NewTrainer(ctx, ng.g, ng.loss, ng.learn, gorgonia.Nodes{ng.x, ng.y}, topts...)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	steps := n / batch
	done := tr.Steps() / steps // epochs the checkpoint records
	if tr.Steps()%steps != 0 || done > cfg.epochs {
		return nil, fmt.Errorf("%w: the checkpoint is at step %d, not the end of one of %d epochs of %d steps", ErrConfig, tr.Steps(), cfg.epochs, steps)
	}
	if done > 0 {
		if err := m.pull(ctx, tr, ng); err != nil {
			return nil, err
		}
	}

	hist := &History{Parts: len(tr.Plan().Parts), Replicas: len(tr.Replicas().Pipelines())}
	// Two sets of batch buffers: the next batch is gathered into one
	// while the trainer steps on the other.
	var sets [2]batchSet
	for i := range sets {
		xb := tensor.New(tensor.Of(m.dtype), tensor.WithShape(ng.x.Shape().Clone()...))
		yb := tensor.New(tensor.Of(m.dtype), tensor.WithShape(ng.y.Shape().Clone()...))
		sets[i] = batchSet{xb: xb, yb: yb, feeds: map[*gorgonia.Node]*tensor.Dense{ng.x: xb, ng.y: yb}}
	}
	_, _, wx, _ := rowsOf(x, "x")
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	rng := rand.New(rand.NewSource(cfg.seed))
	pr := newProgress(cfg)
	if hist.Replicas > 1 {
		hist.RingParts, hist.RingError = tr.Replicas().Stats().RingParts, tr.Replicas().RingError()
		which := "gradients"
		if hist.RingParts > 0 {
			which = fmt.Sprintf("gradients of %d of %d parts", hist.Parts-hist.RingParts, hist.Parts)
		}
		switch {
		case hist.RingParts == hist.Parts:
			pr.note("%d replicas: gradients summed in rings between the providers", hist.Replicas)
		case hist.RingError != nil:
			pr.note("%d replicas: %s summed through this process, not in rings: %v", hist.Replicas, which, hist.RingError)
		default:
			pr.note("%d replicas: %s summed through this process", hist.Replicas, which)
		}
	}
	defer func() {
		if cfg.plot != "" && len(hist.Epochs) > 0 {
			if perr := hist.SavePlot(cfg.plot); perr != nil && err == nil {
				err = perr
			}
		}
	}()
	// gather fills batch set s%2 with mini-batch s of the epoch's order; a
	// goroutine gathers the next one while the trainer steps.
	gather := func(s int) {
		idx := perm[s*batch : (s+1)*batch]
		gatherRows(sets[s%2].xb, x, wx, idx)
		tg.fill(sets[s%2].yb, idx)
	}
	// Buffered: asking must not wait for the gatherer to wake.
	ask, gathered, ended := make(chan int, 1), make(chan struct{}, 1), make(chan struct{})
	go func() {
		defer close(ended)
		for s := range ask {
			gather(s)
			gathered <- struct{}{}
		}
	}()
	defer func() { close(ask); <-ended }()
	for e := 1; e <= cfg.epochs; e++ {
		rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		if e <= done {
			continue // trained before the checkpoint; its order is drawn all the same
		}
		pr.startEpoch(e, cfg.epochs, steps)
		start, cpu0 := time.Now(), cpuSeconds()
		st0 := tr.Replicas().Stats()
		var sum float64
		gather(0)
		for s := 0; s < steps; s++ {
			if err := ctx.Err(); err != nil {
				pr.abort()
				_ = m.pull(ctx, tr, ng)
				return hist, err
			}
			if s+1 < steps {
				ask <- s + 1
			}
			l, err := tr.Step(ctx, sets[s%2].feeds)
			if s+1 < steps {
				<-gathered
			}
			if err != nil {
				pr.abort()
				_ = m.pull(ctx, tr, ng)
				return hist, err
			}
			sum += l
			hist.StepLoss = append(hist.StepLoss, l)
			pr.step(s+1, sum/float64(s+1))
		}
		ep := Epoch{Epoch: e, Steps: steps, Seconds: time.Since(start).Seconds(), CPUSeconds: cpuSeconds() - cpu0, Loss: sum / float64(steps)}
		if hist.Replicas > 1 {
			st := tr.Replicas().Stats()
			hist.ReduceShare = reduceShare(st)
			st.Compute, st.Reduce, st.Update = st.Compute-st0.Compute, st.Reduce-st0.Reduce, st.Update-st0.Update
			ep.ReduceShare = reduceShare(st)
		}
		if err := m.endEpoch(ctx, tr, ng, &ep, x, wx, perm, xv, vt, cfg, pr); err != nil {
			return hist, err
		}
		hist.Epochs = append(hist.Epochs, ep)
		if len(hist.Epochs) == 1 {
			if a := replicaAdvice(ep.ReduceShare, hist.Replicas, batch); a != "" {
				pr.note("%s", a)
			}
		}
		if cfg.ckpt != "" {
			if err := writeCheckpoint(ctx, tr, cfg.ckpt); err != nil {
				return hist, err
			}
		}
		if cfg.onEpoch != nil {
			cfg.onEpoch(ep)
		}
	}
	return hist, nil
}

// imbalanceFor returns the imbalance bound that k equal parts of the
// graph need so that its heaviest node fits in one part.
func imbalanceFor(ng *netGraph, k int) (float64, error) {
	if k < 2 {
		return 0, nil
	}
	ir, err := graph.FromGorgonia(ng.g, graph.Learnables(ng.learn...))
	if err != nil {
		return 0, err
	}
	var heaviest int64
	for _, n := range ir.Nodes() {
		heaviest = max(heaviest, ir.Cost(n.ID).FLOPs)
	}
	total := ir.TotalCost().FLOPs
	if total <= 0 {
		return 0, nil
	}
	return float64(heaviest)/(float64(total)/float64(k))*1.01 - 1, nil
}

// endEpoch finishes epoch ep: the parameters back into the model,
// BatchNorm's statistics calibrated on the rows perm of x, the
// validation figures, and the epoch's progress line.
func (m *Model) endEpoch(ctx context.Context, tr puller, ng *netGraph, ep *Epoch, x *tensor.Dense, wx int, perm []int, xv *tensor.Dense, vt *targets, cfg *config, pr *progress) error {
	fail := func(err error) error {
		pr.abort()
		return err
	}
	if err := m.pull(ctx, tr, ng); err != nil {
		return fail(err)
	}
	if m.hasBN {
		if err := m.calibrate(x, wx, perm, cfg.calib); err != nil {
			return fail(err)
		}
	}
	if vt != nil {
		ep.HasVal = true
		var err error
		if ep.ValLoss, ep.ValAccuracy, err = m.evaluate(ctx, xv, vt, &cfg.loss); err != nil {
			return fail(err)
		}
	}
	pr.endEpoch(*ep, cfg.loss.hasAccuracy())
	return nil
}

// puller is a trainer that writes its parameters into the graph.
type puller interface {
	Pull(ctx context.Context) error
}

// pull copies the trained parameters into the model.
func (m *Model) pull(ctx context.Context, tr puller, ng *netGraph) error {
	if err := tr.Pull(ctx); err != nil {
		return err
	}
	for i, n := range ng.learn {
		v, ok := n.Value().(*tensor.Dense)
		if !ok {
			return fmt.Errorf("ravdl: parameter %s came back as %T", ng.names[i], n.Value())
		}
		if p := m.params[ng.names[i]]; p != v {
			if err := tensor.Copy(p, v); err != nil {
				return fmt.Errorf("ravdl: parameter %s: %w", ng.names[i], err)
			}
		}
	}
	return nil
}

// checkX checks that x holds samples the model takes.
func (m *Model) checkX(x *tensor.Dense) (*tensor.Dense, error) {
	x, _, _, err := rowsOf(x, "x")
	if err != nil {
		return nil, err
	}
	if !equalInts(x.Shape()[1:], m.inShape) {
		return nil, &ShapeError{Layer: -1, Kind: "x", Got: []int(x.Shape().Clone()), Reason: fmt.Sprintf("the model takes samples of shape %v", m.inShape)}
	}
	return x, nil
}

// ---- inference in this process ----

// chunk is the batch size of inference.
const chunk = 1000

// forward runs the model in inference mode (or calibration mode) over
// the rows idx of x, chunk by chunk, and calls sink with each chunk's
// outputs as float64 and the rows they belong to.
func (m *Model) forward(ctx context.Context, x *tensor.Dense, idx []int, mode buildMode, sink func(out []float64, rows []int) error) error {
	if !m.built {
		return ErrNotBuilt
	}
	_, _, wx, err := rowsOf(x, "x")
	if err != nil {
		return err
	}
	type prog struct {
		ng  *netGraph
		vm  gorgonia.VM
		xb  *tensor.Dense
		val gorgonia.Value
	}
	progs := map[int]*prog{}
	defer func() {
		for _, p := range progs {
			p.vm.Close()
		}
	}()
	var buf []float64
	for lo := 0; lo < len(idx); lo += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows := idx[lo:min(lo+chunk, len(idx))]
		p := progs[len(rows)]
		if p == nil {
			ng, err := m.graph(len(rows), mode, nil)
			if err != nil {
				return err
			}
			p = &prog{ng: ng, xb: tensor.New(tensor.Of(m.dtype), tensor.WithShape(ng.x.Shape().Clone()...))}
			roots := gorgonia.Nodes{gorgonia.Read(ng.out, &p.val)}
			if err := gorgonia.Let(ng.x, p.xb); err != nil {
				return err
			}
			var vmOpts []gorgonia.VMOpt
			if mode == modeInfer {
				vmOpts = append(vmOpts, gorgonia.EvalMode())
			}
			p.vm = gorgonia.NewTapeMachine(ng.g.SubgraphRoots(roots...), vmOpts...)
			progs[len(rows)] = p
		}
		gatherRows(p.xb, x, wx, rows)
		p.vm.Reset()
		if err := p.vm.RunAll(); err != nil {
			return fmt.Errorf("ravdl: inference: %w", err)
		}
		buf = appendFloats(buf[:0], p.val)
		if err := sink(buf, rows); err != nil {
			return err
		}
	}
	return nil
}

func appendFloats(dst []float64, v gorgonia.Value) []float64 {
	switch d := v.Data().(type) {
	case []float32:
		for _, f := range d {
			dst = append(dst, float64(f))
		}
	case []float64:
		dst = append(dst, d...)
	case float32:
		dst = append(dst, float64(d))
	case float64:
		dst = append(dst, d)
	}
	return dst
}

func indices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// Predict returns the model's outputs for x, shaped (samples, outputs...)
// in the model's dtype, computed in this process with the current
// parameters (BatchNorm on its measured statistics, no Dropout). For a
// CrossEntropy classifier the outputs are logits; see PredictClasses.
func (m *Model) Predict(ctx context.Context, x *tensor.Dense) (*tensor.Dense, error) {
	if !m.built {
		return nil, ErrNotBuilt
	}
	x, err := m.checkX(x)
	if err != nil {
		return nil, err
	}
	n := x.Shape()[0]
	w := prod(m.outShape)
	out := make([]float64, 0, n*w)
	err = m.forward(ctx, x, indices(n), modeInfer, func(o []float64, _ []int) error {
		out = append(out, o...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return denseOf(m.dtype, out, append([]int{n}, m.outShape...)), nil
}

// PredictClasses returns the index of the largest output of every sample.
func (m *Model) PredictClasses(ctx context.Context, x *tensor.Dense) ([]int, error) {
	if !m.built {
		return nil, ErrNotBuilt
	}
	x, err := m.checkX(x)
	if err != nil {
		return nil, err
	}
	w := prod(m.outShape)
	var classes []int
	err = m.forward(ctx, x, indices(x.Shape()[0]), modeInfer, func(o []float64, rows []int) error {
		for k := range rows {
			classes = append(classes, argmax(o[k*w:(k+1)*w]))
		}
		return nil
	})
	return classes, err
}

func argmax(z []float64) int {
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	return best
}

// Evaluate returns the mean loss and the accuracy (NaN for MSE) of the
// model on (x, y), computed in this process. The loss is CrossEntropy
// unless WithLoss says otherwise.
func (m *Model) Evaluate(ctx context.Context, x, y *tensor.Dense, opts ...Option) (loss, accuracy float64, err error) {
	if !m.built {
		return 0, 0, ErrNotBuilt
	}
	cfg := newConfig(opts)
	if x, err = m.checkX(x); err != nil {
		return 0, 0, err
	}
	t, err := cfg.loss.newTargets(y, m.outShape)
	if err != nil {
		return 0, 0, err
	}
	if t.n != x.Shape()[0] {
		return 0, 0, &ShapeError{Layer: -1, Kind: "y", Got: []int(y.Shape().Clone()), Reason: "not as many samples as x"}
	}
	return m.evaluate(ctx, x, t, &cfg.loss)
}

func (m *Model) evaluate(ctx context.Context, x *tensor.Dense, t *targets, l *Loss) (float64, float64, error) {
	var loss, correct float64
	n := x.Shape()[0]
	err := m.forward(ctx, x, indices(n), modeInfer, func(o []float64, rows []int) error {
		l.score(t, o, rows, &loss, &correct)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	acc := correct / float64(n)
	if !l.hasAccuracy() {
		acc = math.NaN()
	}
	return loss / float64(n), acc, nil
}

// calibrate measures BatchNorm's inference statistics on the first
// samples of perm with the current parameters, in one batch.
func (m *Model) calibrate(x *tensor.Dense, wx int, perm []int, max int) error {
	k := min(max, len(perm))
	if k < 2 {
		return nil
	}
	ng, err := m.graph(k, modeCalib, nil)
	if err != nil {
		return err
	}
	vals := make([]gorgonia.Value, 2*len(ng.stats))
	var roots gorgonia.Nodes
	for i, s := range ng.stats {
		roots = append(roots, gorgonia.Read(s.mean, &vals[2*i]), gorgonia.Read(s.variance, &vals[2*i+1]))
	}
	xb := tensor.New(tensor.Of(m.dtype), tensor.WithShape(ng.x.Shape().Clone()...))
	gatherRows(xb, x, wx, perm[:k])
	if err := gorgonia.Let(ng.x, xb); err != nil {
		return err
	}
	vm := gorgonia.NewTapeMachine(ng.g.SubgraphRoots(roots...))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		return fmt.Errorf("ravdl: measuring batch-norm statistics: %w", err)
	}
	for i, s := range ng.stats {
		s.layer.mean = appendFloats(nil, vals[2*i])
		s.layer.variance = appendFloats(nil, vals[2*i+1])
	}
	return nil
}

// writeCheckpoint writes tr's checkpoint to path through a temporary
// file in the same directory.
func writeCheckpoint(ctx context.Context, tr *rookery.Trainer, path string) error {
	var b bytes.Buffer
	if err := tr.Checkpoint(ctx, &b); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("ravdl: checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ravdl: checkpoint: %w", err)
	}
	return nil
}

// batchSet is one mini-batch's buffers and the feeds that name them.
type batchSet struct {
	xb, yb *tensor.Dense
	feeds  map[*gorgonia.Node]*tensor.Dense
}

// reduceShare is the share of the replicas' step time spent summing their
// gradients.
func reduceShare(st exec.ReplicaStats) float64 {
	total := st.Compute + st.Reduce + st.Update
	if total <= 0 {
		return 0
	}
	return float64(st.Reduce) / float64(total)
}

// replicaAdvice says, when summing the gradients takes more than half of
// a step, why and what scales better; "" otherwise. Every replica sums
// its whole gradients each step, however few rows it has, so the share
// falls as the rows per replica grow.
func replicaAdvice(share float64, replicas, batch int) string {
	if share <= 0.5 {
		return ""
	}
	return fmt.Sprintf("%d replicas: summing their gradients took %.0f%% of each step; each replica has about %d rows of a batch of %d: "+
		"a larger batch gives each replica more work per byte of gradient, and local rounds (LocalSteps) exchange far less",
		replicas, 100*share, (batch+replicas-1)/replicas, batch)
}

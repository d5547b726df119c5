package ravdl

import (
	"io"
	"os"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
)

// Option configures Build, Fit, Evaluate and Predict. Each call reads the
// options it knows and ignores the others.
type Option func(*config)

type config struct {
	epochs    int
	batch     int
	xv, yv    *tensor.Dense
	executors []exec.Executor
	parts     int
	replicas  int
	local     int // LocalSteps
	micro     int
	opt       Optimizer
	loss      Loss
	seed      int64
	dtype     tensor.Dtype
	out       io.Writer // progress goes here; nil: silent
	auto      bool      // progress only when out is a terminal
	plot      string
	calib     int
	trainer   []rookery.Option
	onEpoch   func(Epoch)
	ckpt      string    // CheckpointTo
	resume    io.Reader // ResumeFrom
}

func newConfig(opts []Option) *config {
	c := &config{epochs: 1, batch: 32, micro: 1, opt: SGD(0.01, 0.9), loss: CrossEntropy(),
		dtype: tensor.Float32, out: os.Stdout, auto: true, calib: 4096}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Epochs sets the number of passes over the training data (default 1).
func Epochs(n int) Option { return func(c *config) { c.epochs = n } }

// BatchSize sets the mini-batch size (default 32). Every step trains on
// a full batch; the samples left over at the end of an epoch are dropped
// (they take part in other epochs, as the order is shuffled).
func BatchSize(b int) Option { return func(c *config) { c.batch = b } }

// Validation evaluates the model on (x, y) after every epoch.
func Validation(x, y *tensor.Dense) Option { return func(c *config) { c.xv, c.yv = x, y } }

// WithExecutors trains on these executors, one part each: in-process ones
// (exec.NewCPU) or remote providers (transport.Dial). Without WithExecutors, Fit
// makes one in-process executor per part.
func WithExecutors(executors ...exec.Executor) Option {
	return func(c *config) { c.executors = append([]exec.Executor{}, executors...) }
}

// Parts cuts the model into k parts (default: one per executor given
// with WithExecutors, else 1).
func Parts(k int) Option { return func(c *config) { c.parts = k } }

// Replicas trains r data-parallel replicas of the parts (rookery.WithReplicas):
// every mini-batch is split by rows across them and their gradients are
// summed before each update, so the trained model is the same. With
// WithExecutors, give r × parts executors, executor i*parts+j running part
// j of replica i.
func Replicas(r int) Option { return func(c *config) { c.replicas = r } }

// LocalSteps trains the Replicas by local SGD rounds instead
// (rookery.NewLocalTrainer, as DiLoCo): each replica takes h steps of the
// optimiser on its own shard of the data, then the replicas' parameter
// changes are averaged and an outer Nesterov step (learning rate 0.7,
// momentum 0.9) moves the model. Fit shards the data itself; an epoch is
// as many rounds as make one pass over it. A round exchanges the model
// once each way, compressed to 8 bits per value, where Replicas alone
// exchanges every gradient on every step: the way to train over slow
// links. The trained model is not the one a single process trains, and
// parts, micro-batches and checkpoints do not apply.
func LocalSteps(h int) Option { return func(c *config) { c.local = h } }

// MicroBatches splits every mini-batch into m micro-batches that flow
// through the parts as a pipeline (default 1).
func MicroBatches(m int) Option { return func(c *config) { c.micro = m } }

// WithOptimizer sets the optimiser (default SGD(0.01, 0.9)).
func WithOptimizer(o Optimizer) Option { return func(c *config) { c.opt = o } }

// WithLoss sets the loss (default CrossEntropy).
func WithLoss(l Loss) Option { return func(c *config) { c.loss = l } }

// Seed seeds the initial weights (when Fit builds the model) and the
// order of the samples (default 0).
func Seed(s int64) Option { return func(c *config) { c.seed = s } }

// Float64 builds the model in float64 (default float32). It only has an
// effect when the model is built.
func Float64() Option { return func(c *config) { c.dtype = tensor.Float64 } }

// Quiet turns progress off.
func Quiet() Option { return func(c *config) { c.out = nil } }

// Progress writes progress to w: a bar per epoch (steps/s, ETA, running
// loss) when w is a terminal, and a one-line summary per epoch always.
// The default is os.Stdout, and silence when os.Stdout is not a terminal.
func Progress(w io.Writer) Option { return func(c *config) { c.out, c.auto = w, false } }

// PlotTo writes the training loss (per step, smoothed) and the
// validation loss and accuracy (per epoch) to a PNG file at the end of
// Fit.
func PlotTo(path string) Option { return func(c *config) { c.plot = path } }

// CalibrationSamples sets how many training samples measure BatchNorm's
// inference statistics after each epoch (default 4096).
func CalibrationSamples(n int) Option { return func(c *config) { c.calib = n } }

// TrainerOptions passes options to rookery.NewTrainer, for instance
// rookery.WithSeedNode to train on providers leased from a seed node, or
// rookery.WithPartitionOptions.
func TrainerOptions(opts ...rookery.Option) Option {
	return func(c *config) { c.trainer = append(c.trainer, opts...) }
}

// OnEpoch calls f after every epoch with that epoch's record.
func OnEpoch(f func(Epoch)) Option { return func(c *config) { c.onEpoch = f } }

// CheckpointTo writes the trainer's checkpoint (parameters, optimiser
// state and step count, rookery.Trainer.Checkpoint) to path after every
// epoch, through a temporary file, so that path always holds a whole
// one: a run that stops can go on with ResumeFrom.
func CheckpointTo(path string) Option { return func(c *config) { c.ckpt = path } }

// ResumeFrom continues the run whose checkpoint r holds (written by
// CheckpointTo, with the same model, data, batch size and Seed): Fit
// starts from its parameters and optimiser state, skips the epochs it
// records, and trains the others as the uninterrupted run would have.
func ResumeFrom(r io.Reader) Option { return func(c *config) { c.resume = r } }

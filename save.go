package rookery

import (
	"context"
	"io"

	"github.com/rookery-ml/rookery/checkpoint"
	"github.com/rookery-ml/rookery/exec"
)

// Model is a trained model read by Load (exec.Model): a graph with its
// parameter values, which predicts in this process without any executor.
type Model = exec.Model

// Load reads a model written by Trainer.Save.
func Load(r io.Reader) (*Model, error) { return exec.ReadModel(r) }

// Save writes the trained model: the graph IR with the current parameter
// values, in the rookery.v1 protobuf encoding. Load reads it back.
func (t *Trainer) Save(ctx context.Context, w io.Writer) error {
	return checkpoint.WriteModel(ctx, t.Pipeline(), t.ir, w)
}

// ErrCheckpoint marks a checkpoint that cannot be read or does not fit
// the graph given to NewTrainer (checkpoint.ErrInvalid).
var ErrCheckpoint = checkpoint.ErrInvalid

// CheckpointError says what is wrong with a checkpoint.
type CheckpointError = checkpoint.Error

// WithCheckpoint resumes the training run that Trainer.Checkpoint wrote
// to r: the parameters, the optimiser state and the step count replace
// the graph's initial values. The graph given to NewTrainer must be the
// one the checkpoint was written from (the same nodes, in the same order);
// the number of parts and the executors may differ.
func WithCheckpoint(r io.Reader) Option { return func(c *config) { c.checkpoint = r } }

// Steps returns the number of Steps taken, counting those before the
// checkpoint the trainer resumed from.
func (t *Trainer) Steps() int { return t.steps }

// Checkpoint writes the whole state of the training run (package
// checkpoint): the graph with the current parameters, every part's
// optimiser state and the number of steps. A trainer made with
// WithCheckpoint from it continues the run as if it had not stopped.
func (t *Trainer) Checkpoint(ctx context.Context, w io.Writer) error {
	s, err := checkpoint.Capture(ctx, t.Pipeline(), t.ir, t.solver, t.steps)
	if err != nil {
		return err
	}
	_, err = s.WriteTo(w)
	return err
}

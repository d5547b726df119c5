package rookery

import (
	"io"

	"github.com/rookery-ml/rookery/exec"
)

// Model is a trained model read by Load (exec.Model): a graph with its
// parameter values, which predicts in this process without any executor.
type Model = exec.Model

// Load reads a model written by Trainer.Save.
func Load(r io.Reader) (*Model, error) { return exec.ReadModel(r) }

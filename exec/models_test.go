package exec_test

import (
	"github.com/rookery-ml/rookery/exec/exectest"
)

// The models, the one-process reference and the comparison live in
// exectest, where the equality suite of every executor uses them.
type model = exectest.Model

var (
	mlpModel      = exectest.MLP
	cnnModel      = exectest.BatchNormCNN
	residualModel = exectest.Residual
	reference     = exectest.Reference
	chunks        = exectest.Chunks
	maxRelDiff    = exectest.MaxRelDiff
	randDense     = exectest.Normal
	oneHot        = exectest.OneHot
)

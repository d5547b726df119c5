// Package ravdl is Keras-style deep learning on Rookery: a Sequential
// model of layers, a loss and an optimiser, trained with Fit across
// executors (in-process or borrowed providers) by passing one option,
// without touching partition or exec.
//
// A value moves through it like this. Sequential(layers...) holds the
// layers; Build (or the first Fit) creates their parameters from an
// explicit seed. Fit builds the model as a Gorgonia graph for one
// mini-batch, with the loss, and hands it to rookery.NewTrainer, which
// cuts it into parts (Parts, WithExecutors) and opens a session per part; the
// optimiser runs on the executors. Every step gathers a shuffled
// mini-batch of the caller's data into two reused buffers (the data set
// is never copied) and calls Trainer.Step. After each epoch the trained
// parameters come back into the model (Trainer.Pull), BatchNorm measures
// its inference statistics, and the validation set is scored in this
// process; progress goes to a terminal. Predict and Evaluate run the
// model in this process on Gorgonia's tape machine. Save writes the
// graph and its parameters in the trainer's format (rookery.v1
// protobuf); Load reads it back for prediction and LoadWeights into a
// Sequential of the same layers.
//
// Error policy: data of the wrong shape gives a *ShapeError (ErrShape),
// a class label out of range a *LabelError (ErrLabel), Predict or
// Evaluate before Build or Fit ErrNotBuilt, options that cannot work
// ErrConfig, unreadable files ErrFormat. Errors from the trainer and the
// executors (package rookery, exec, partition, transport) come back
// unchanged. Gorgonia panics while building a graph become a ShapeError.
// Nothing panics on bad input.
package ravdl

// Package rookery trains a Gorgonia model across borrowed machines and
// hands back the trained model, equal to training it in one process.
//
// A value moves through it like this. NewTrainer reads the caller's
// *gorgonia.ExprGraph into the portable IR (package graph), cuts it into
// balanced parts (package partition, or a plan given with WithPlan) and
// opens one session per part on an executor (package exec: in-process CPU
// executors by default, remote providers through package transport). Step
// trains on one mini-batch: the pipeline splits it into micro-batches,
// runs them forward and backward through the parts on the GPipe schedule
// and applies the solver once per part. Pull writes the trained
// parameters back into the caller's graph, so the caller's own tape
// machine computes with them; Save writes the graph and its parameters,
// and Load reads them back into a Model that predicts without any
// executor.
//
// Error policy: configuration that cannot work gives ErrConfig; problems
// reading the graph are the graph package's typed errors; problems while
// training are the exec package's (*exec.FeedError, *exec.SpecError, ...),
// each naming the part, node and shape concerned.
package rookery

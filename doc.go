// Package rookery trains a Gorgonia model across borrowed machines and
// hands back the trained model, equal to training it in one process.
//
// The package only wires the others together. A value moves through it
// like this. NewTrainer reads the caller's *gorgonia.ExprGraph into the
// portable IR (package graph), cuts it into balanced parts (package
// partition, or a plan given with WithPlan) and opens one session per
// part on an executor (package exec: in-process CPU executors by
// default, remote providers through package transport, or providers
// leased from a seed node with WithSeedNode, package transport/seednode;
// each may be protected by package exec/guard). Step trains on one
// mini-batch: exec's pipeline splits it into micro-batches, runs them
// forward and backward through the parts on the GPipe schedule and
// applies the solver once per part (WithReplicas: r such pipelines on
// rows of the mini-batch, gradients summed). Pull writes the trained parameters
// back into the caller's graph, so the caller's own tape machine computes
// with them; Save writes the graph and its parameters, and Load reads
// them back into a Model (exec.Model) that predicts without any executor.
// Checkpoint and WithCheckpoint save and resume a whole run (package
// checkpoint).
//
// Error policy: configuration that cannot work gives ErrConfig; problems
// reading the graph are the graph package's typed errors; problems while
// training are the exec package's (*exec.FeedError, *exec.SpecError, ...),
// each naming the part, node and shape concerned; a checkpoint that does
// not fit gives ErrCheckpoint.
package rookery

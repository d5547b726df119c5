// Package checkpoint reads and writes the whole state of a training run,
// so that a requester that stopped (or crashed) continues it as if it had
// not: the graph with its parameter values, every part's optimiser state
// and the number of steps taken.
//
// A value moves through it like this. Capture reads a running
// exec.Pipeline's parameters and solver slots into a State; WriteTo
// encodes it in the file format described in format.go. Read decodes a
// file into a State, checking every length before it allocates; Apply
// checks that it was written from a given graph (same nodes, in the same
// order) and puts its parameter values there, so that the new pipeline
// opens with them; Restore then puts the optimiser state and the update
// count into every part of that pipeline, however it is partitioned.
//
// Error policy: a file that cannot be read, or that does not fit the
// graph, gives an error matching ErrInvalid, an *Error naming the node
// concerned where there is one; errors of the graph and exec packages
// are wrapped with %w.
package checkpoint

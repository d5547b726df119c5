// Package exec runs the parts of a partitioned model as a training
// pipeline: it owns the Executor and Session interfaces, the CPU executor
// on Gorgonia's tape machine, the solvers, the GPipe schedule and the
// pipeline driver that runs a plan over any set of executors.
//
// A value moves through it like this. NewLayout turns a graph.Graph and an
// assignment of its nodes to parts (a partition.Plan's Parts) into a
// Layout: one SessionSpec per part, in which values from other parts are
// input nodes under their original ids, and the routes between parts.
// NewPipeline rewrites the graph for the micro-batch size (Rebatch), opens
// one Session per part on its Executor, and computes the Schedule with
// GPipe. Every Step then cuts the mini-batch into micro-batches, and a
// goroutine per part walks that part's tasks: Forward receives the part's
// inputs and sends its outputs downstream; Backward receives the
// gradients of its outputs (summed over the parts that consume them) and
// sends the gradients of its inputs upstream. When every micro-batch has
// gone back, every part applies its Solver once to the mean of the
// gradients it accumulated. Activations and gradients are the only values
// that cross parts; parameters stay where they live, and the result equals
// training the same graph in one process.
//
// NewReplicas runs r such pipelines as data-parallel replicas: SplitRows
// gives each a share of every mini-batch's rows (a multiple of the
// micro-batch count, in proportion to WithRowWeights); each runs its rows
// forward and backward; then, for every part concurrently, the requester
// reads each replica's accumulated gradients (GradName), sums them in
// replica order weighted by each replica's share of the rows, and Puts
// the sum back to every replica, which then steps. The loss stays the
// mean over the whole mini-batch and the replicas stay bit-identical.
//
// NewRounds trains replicas of a whole model by local SGD instead (as
// DiLoCo): each replica holds its own shard of the data (ShardName) and
// takes h steps on it in one LocalSteps call, which also applies the last
// round's update and returns the replica's delta since its anchor
// (AnchorName, UpdateName, DeltaName), compressed by exec/compress with
// error feedback on both sides; the requester averages the deltas by rows
// and moves the global parameters with an outer optimiser. This is not
// one-process training; it exchanges the model once per round instead of
// every gradient on every step.
//
// The CPU executor lowers a part into a fresh Gorgonia graph for each
// micro-batch index with Lower, which builds the IR's ML kinds (those that
// Gorgonia has no op for) as forward-only Gorgonia ops running the kernels
// of exec/kernels, and derives its backward pass with Backpropagate from
// the gradients of its outputs (Grad-style, from the loss, on the part
// that holds it). Forward and backward run as one tape-machine program
// that pauses between the two halves, so nothing is computed twice, and
// only the gradients someone needs are compiled. The gradient of a weight
// that a single matrix product uses is computed at Step, once for all
// micro-batches stacked, as one-process training on the whole mini-batch
// computes it.
//
// Resident tensors (a data shard kept on the executor) are copied by Put;
// Keep hands one to an in-process session without a copy, and the session
// binds it to its input node directly where the compiled program never
// writes that input. Close frees everything a session held; a CPU
// session dropped without Close is closed once the garbage collector
// finds it unreachable.
//
// The schedule is a pure function of the graph of parts and the number of
// micro-batches; the driver only reads it, so another schedule (1F1B) can
// replace it.
//
// Every session, whatever its executor, serves Put and Get with a Store
// (resident tensors by name) and keeps its micro-batches with Slots, one
// per index of the SessionSpec's MicroBatches; an executor refuses at Open
// a spec asking for more micro-batches than it holds.
//
// Error policy: calls return errors, never panic, on bad input. Problems
// with a spec are *SpecError (ErrSpec), and a micro-batch count beyond
// the executor's limit a *MicroBatchLimitError (ErrSpec); wrong, missing
// or unknown tensors are *FeedError (ErrFeed); unknown resident names
// *NameError (ErrUnknownName); calls out of order *OrderError (ErrOrder);
// failures of the machine *RunError; a closed session ErrClosed. Each
// names the part, and where it applies the node, the micro-batch and the
// shapes.
package exec

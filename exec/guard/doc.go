// Package guard keeps the parts of a partitioned model training when the
// executors that run them die, hang or lie, so that the trained model is
// the one a fault-free run gives.
//
// A Guard wraps executors: Guard.Executor returns an exec.Executor whose
// sessions drive one or more replicas of a part and are used by the
// pipeline like any other, so the protection composes with every
// executor (in-process, remote, CUDA) and the pipeline does not change.
//
// # How a value moves through it
//
// A guarded session passes each call to its replicas, one call at a time,
// and logs those that change the part's state: Forward (with a copy of
// its feeds), Backward (with a copy of the output gradients), Step, and
// Puts of parameters or optimiser state. Every WithSnapshotEvery Steps it
// Gets the part's parameters, its optimiser state (exec.StateName of
// every solver slot) and the update count (exec.SolverStepName), keeps
// them in this process, and empties the log. Other Puts (data shards)
// are kept for the life of the session, since a snapshot does not cover
// them.
//
// When a call fails because the executor did (an error matching
// exec.ErrUnavailable, which the transport client's errors for an
// unreachable provider or a broken connection do; a call that outlives
// WithCallTimeout; a cancellation the caller did not ask for, as from a
// closed connection; a session the provider no longer knows, exec.ErrClosed)
// the session takes another executor (a spare given with WithSpares, one
// from WithSpareFunc, or, when the spares are used up, the executor that
// failed, after a back-off, in case its connection comes back), opens the
// part there, Puts the snapshot, replays the log and runs the failed call.
// Replayed calls get the very inputs of the first time, so on a
// deterministic executor the rebuilt part is the same to the bit. A call
// whose outcome is unknown (a connection cut while Backward ran) is never
// simply sent again to the same session: Backward and Step are not
// idempotent. After WithMaxReplacements executors in a row have failed,
// the call fails with *FailedError, which matches exec.ErrUnavailable.
// Errors of the call itself (exec.ErrFeed, ErrSpec, ErrUnknownName,
// ErrOrder, ErrSolver, a provider's limits) pass through untouched.
//
// A provider that is gone is noticed by the failure of the next call to
// it; one that is stuck, or whose connection went silent, by
// WithCallTimeout (DefaultCallTimeout unless set: set a bound that fits
// the model's calls to notice sooner). Keepalive pings on an idle
// connection are the transport's business; the guard relies only on
// calls failing or timing out.
//
// With WithRedundancy(r) every part runs on r executors. Forward's
// outputs and loss, Backward's input gradients and Get's values
// (snapshots, and the final parameters) are compared within a Tolerance;
// what a strict majority agrees on is the answer. With no majority (r = 2
// and a disagreement) an arbiter, a spare rebuilt from the snapshot and
// the log, runs the call too and breaks the tie. An executor outside the
// majority is excluded for good, reported in an EventExcluded with a
// *MismatchError that names it, and its replica is replaced by the
// arbiter or by a rebuilt spare. Without redundancy, WithSpotCheck(p)
// re-runs a Forward or Backward with probability p on a checker rebuilt
// the same way and compares; WithLocal lets the checker be this machine,
// whose answer then wins a tie.
//
// # Choosing N
//
// BenchmarkStep (bench_test.go) measures a step of a 64×256→256→256→10
// float64 MLP in 2 parts with Adam. Medians of three runs on a shared
// 2-core machine (go test -run '^$' -bench BenchmarkStep -count 3
// ./exec/guard), in ms per step:
//
//	                      none   N=1    N=10   N=100   r=2
//	in-process            4.2    4.8    4.0    4.2     8.2
//	loopback gRPC         6.4   13.2    8.9    9.4    19.1
//
// A snapshot (parameters and both Adam moments of every part) costs about
// a step over gRPC and a fraction of one in-process; taken every 10
// steps it adds at most a tenth of a step on average (within the noise
// of these runs), while a replacement replays at most 10 steps of one
// part. DefaultSnapshotEvery is 10. Redundancy 2 doubles the work; here
// both replicas share the same two cores, on separate providers they run
// side by side.
//
// # Limits
//
// Exactness needs deterministic executors. Dropout in training mode
// draws its masks from Gorgonia's global random source, so a replayed
// Dropout draws other masks: train models with Dropout in eval mode, or
// accept that a replaced part's replay differs. BatchNorm's running
// statistics live inside the executor and are not part of a snapshot; a
// replaced part restarts them from the last replayed Forwards. The log
// holds copies of the inputs of up to N steps of each part in this
// process, and every resident tensor Put outside parameters.
//
// A spot check catches a lie only with probability p per call, and sees
// a wrong update only through the results of later calls; the final
// parameters are compared only under redundancy.
package guard

// Package ravml runs classic machine-learning algorithms — k-nearest
// neighbours, Gaussian naive Bayes, k-means, linear and logistic
// regression, a multi-layer perceptron and CART decision trees — as
// data-parallel jobs on Rookery executors.
//
// A value moves through it like this: Fit splits the rows of X (a
// *tensor.Dense, rows × features, float64) into shards, opens one session
// per shard on the executors given with WithExecutors (by default two
// in-process CPU executors) and Puts each shard there under exec.InputName, so the data
// stays resident. Every iteration then runs a small forward-only graph on
// all shards at once — distances and a local top-k, per-class sums,
// per-cluster partial sums, XᵀX and Xᵀy, loss gradients, split histograms —
// and the requester reduces the partial results and updates the model.
// Op kinds that Gorgonia lacks (a product searched for its k smallest
// values, top-k, argmin, one-hot, segment sums, tree routing,
// histograms, row gathers) are IR kinds of package graph, so remote
// providers run them natively. The number of shards does not change the
// result: exactly for KNN, naive Bayes predictions, linear regression and
// trees, within a small tolerance for the iterative algorithms.
//
// A KNN shard screens its rows in float32 where the data allow, and the
// requester re-ranks each shard's candidates with exact float64
// distances; an error bound on the float32 product proves that no row
// left out could be nearer (or, where it cannot, the requester measures
// that shard's rows itself), so neighbours and distances are the exact
// float64 ones. Data whose rows crowd together at the k-th distance —
// many exact ties, or near-duplicates closer than float32 resolves — fall
// back to that full measurement often, and predict more slowly.
//
// Shards made resident on in-process executors are handed over with
// exec.Keep, not copied, and a closed model's sessions free them.
//
// Every model has Fit(ctx, X, y), Predict(ctx, X) and Score(ctx, X, y)
// (accuracy, R², or for KMeans the adjusted Rand index against y), and
// Save/Load write and read a fitted model.
//
// Errors: bad input is reported before any work starts, as a *DataError
// matching ErrData (ragged rows, NaN or Inf, labels out of range, wrong
// width), ErrParam (k larger than the data, bad options, an option the
// model does not read) or ErrNotFitted;
// failures of an executor come back wrapped with %w, so errors.Is and
// errors.As reach the exec and transport errors underneath.
package ravml

// Package synth builds synthetic model graphs for Rookery's partitioner
// tests, benchmarks and the `rookery plan --synthetic` tool.
//
// A spec string such as "mlp:layers=50,width=1024", "resnet:blocks=16" or
// "random-dag:nodes=100000,seed=1" goes through Parse, which calls MLP,
// ResNet or RandomDAG; each returns a *graph.Graph built from real IR ops
// (inputs, learnable parameters, matmul, broadcast_add, add, mul, concat and
// elementwise unary ops) whose shapes agree with what the ops compute, so
// every node passes graph.Add's validation. Nodes are added in the order a
// model would be written down, each learnable parameter just before its
// first use; that order is also the graph's Nodes() order.
//
// Error policy: a malformed spec or out-of-range parameter is a *SpecError;
// an error from graph.Add (which would be a bug here) is returned wrapped.
// Builders never panic.
package synth

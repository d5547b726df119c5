// Package rookeryv1 holds the Go types generated from Rookery's rookery.v1
// protobuf package: the graph IR (graph.proto: Graph, Node, Attr, Tensor)
// as it travels between requesters and providers, the Provider service
// (provider.proto) that exposes an executor's sessions over gRPC with
// tensors streamed in chunks, the Seed service (seed.proto) where
// providers register and requesters find them, and the leases
// (lease.proto) that a seed node signs so that a provider serves a
// requester.
//
// The code here is generated from the .proto files beside it by
// `go generate ./proto/...`; edit the .proto files, never the .pb.go files.
// Package graph converts the IR messages to and from its Graph, and package
// transport serves and calls the services, checking every size against
// limits.
package rookeryv1

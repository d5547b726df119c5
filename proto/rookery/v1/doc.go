// Package rookeryv1 holds the Go types generated from Rookery's rookery.v1
// protobuf package: the graph IR (Graph, Node, Attr, Tensor) as it travels
// between requesters and providers.
//
// The code here is generated from the .proto files beside it by
// `go generate ./proto/...`; edit the .proto files, never the .pb.go files.
// Package graph converts these messages to and from its Graph, checking
// every size against limits.
package rookeryv1

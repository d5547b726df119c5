// Package proto holds Rookery's protobuf definitions, one directory per
// package and version (rookery/v1), and the Go code generated from them,
// committed beside each .proto file. It holds no hand-written logic.
//
// Regenerate everything with
//
//	go generate ./proto/...
//
// which runs protoc with the protoc-gen-go and protoc-gen-go-grpc versions
// pinned by the tool directives in go.mod. CI fails when regenerating
// changes the tree.
package proto

//go:generate sh -c "protoc --proto_path=. --plugin=protoc-gen-go=\"$(go tool -n protoc-gen-go)\" --plugin=protoc-gen-go-grpc=\"$(go tool -n protoc-gen-go-grpc)\" --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative rookery/v1/*.proto"

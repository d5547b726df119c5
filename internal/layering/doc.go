// Package layering holds the test that keeps Rookery's packages in their
// layers: which package may import which, as README's "Packages" section
// draws it. It has no code of its own; `go test ./internal/layering`
// fails when an import crosses a layer, naming the file and the import.
package layering

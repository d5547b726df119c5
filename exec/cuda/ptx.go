package cuda

import (
	"embed"
	"io/fs"
	"sort"
)

//go:generate sh kernels/gen.sh

// ptxFS holds the kernels compiled to PTX by kernels/gen.sh; the driver
// JIT-compiles them for the GPU it finds when the executor starts.
//
//go:embed kernels/*.ptx
var ptxFS embed.FS

// ptxModules returns the PTX modules by file name, in name order.
func ptxModules() ([]string, map[string][]byte, error) {
	names, err := fs.Glob(ptxFS, "kernels/*.ptx")
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	mods := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := ptxFS.ReadFile(n)
		if err != nil {
			return nil, nil, err
		}
		mods[n] = b
	}
	return names, mods, nil
}

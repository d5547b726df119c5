// Package providers turns the --providers and --seed flags that Rookery's
// examples share into executors: remote providers dialled by address, or
// providers found on a seed node.
//
// Resolve returns no executors when neither flag is given, so the caller
// falls back to in-process executors. Errors name the provider or seed
// node that failed; executors already dialled are closed on failure.
package providers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
)

// ErrBothFlags says that --providers and --seed were both given.
var ErrBothFlags = errors.New("give --providers or --seed, not both")

// Resolve dials the comma-separated addresses in list, or asks the seed
// node at seed for n providers and dials them. It returns nil executors
// when both strings are empty, and a description of where the work runs.
func Resolve(ctx context.Context, list, seed string, n int) ([]exec.Executor, string, error) {
	var addrs []string
	switch {
	case list != "" && seed != "":
		return nil, "", ErrBothFlags
	case list != "":
		for _, a := range strings.Split(list, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
	case seed != "":
		entries, err := transport.FindProviders(ctx, seed, transport.Need{N: n})
		if err != nil {
			return nil, "", fmt.Errorf("seed node %s: %w", seed, err)
		}
		for _, e := range entries {
			addrs = append(addrs, e.GetAddress())
		}
	default:
		return nil, "", nil
	}
	execs := make([]exec.Executor, 0, len(addrs))
	for _, a := range addrs {
		e, err := transport.Dial(ctx, a)
		if err != nil {
			closeAll(execs)
			return nil, "", fmt.Errorf("provider %s: %w", a, err)
		}
		execs = append(execs, e)
	}
	where := fmt.Sprintf("%d remote providers", len(execs))
	if seed != "" {
		where += " from seed " + seed
	}
	return execs, where, nil
}

func closeAll(execs []exec.Executor) {
	for _, e := range execs {
		if c, ok := e.(interface{ Close() error }); ok {
			c.Close()
		}
	}
}

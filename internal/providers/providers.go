// Package providers turns the --providers and --seed-node flags that
// Rookery's examples share into executors: remote providers dialled by
// address, or providers leased from a seed node (seednode.Lease, which
// presents each provider's lease and reports their speeds).
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
	"github.com/rookery-ml/rookery/transport/seednode"
)

// ErrBothFlags says that --providers and --seed-node were both given.
var ErrBothFlags = errors.New("give --providers or --seed-node, not both")

// Placement is where an example's work runs.
type Placement struct {
	// Executors are the remote providers, one per address or leased
	// provider; nil when neither flag is given.
	Executors []exec.Executor
	// Capacities are the leased providers' measured speeds, for
	// partition.WithCapacities; nil for providers dialled by address, or
	// when a provider reports no speed.
	Capacities []float64
	// Where describes the executors for people.
	Where string

	close func()
}

// Close closes the connections to the providers; call it once the
// sessions on them are closed. (A leased provider's connection waits for
// its last session anyway.)
func (p *Placement) Close() {
	if p.close != nil {
		p.close()
	}
}

// Resolve dials the comma-separated addresses in list, or leases n
// providers from the seed node at seedNode. It returns a Placement
// without executors when both strings are empty. opts apply to the seed
// node and to every provider; an address that does not answer within the
// dial timeout (transport.WithDialTimeout, default
// transport.DefaultDialTimeout) gives a *transport.DialError naming it.
func Resolve(ctx context.Context, list, seedNode string, n int, opts ...transport.DialOption) (*Placement, error) {
	switch {
	case list != "" && seedNode != "":
		return nil, ErrBothFlags
	case seedNode != "":
		execs, caps, release, err := seednode.Lease(ctx, seedNode, seednode.Need{N: n}, opts...)
		if de := (*transport.DialError)(nil); errors.As(err, &de) && de.Addr == seedNode {
			return nil, err // it names the seed node
		}
		if err != nil {
			return nil, fmt.Errorf("seed node %s: %w", seedNode, err)
		}
		return &Placement{Executors: execs, Capacities: caps, close: release,
			Where: fmt.Sprintf("%s from seed node %s", count(len(execs), "remote provider"), seedNode)}, nil
	case list == "":
		return &Placement{}, nil
	}
	var execs []exec.Executor
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		e, err := transport.Dial(ctx, a, opts...)
		if err != nil {
			closeAll(execs)
			if de := (*transport.DialError)(nil); errors.As(err, &de) {
				return nil, err // it names the address
			}
			return nil, fmt.Errorf("provider %s: %w", a, err)
		}
		execs = append(execs, e)
	}
	return &Placement{Executors: execs, Where: count(len(execs), "remote provider"),
		close: func() { closeAll(execs) }}, nil
}

func closeAll(execs []exec.Executor) {
	for _, e := range execs {
		if c, ok := e.(interface{ Close() error }); ok {
			c.Close()
		}
	}
}

// count is n and noun, plural unless n is 1: "1 provider", "2 providers".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

package rookery

import (
	"context"
	"errors"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// addrExecutor is an executor known by its address.
type addrExecutor struct {
	exec.Executor
	addr string
}

func (a addrExecutor) Addr() string { return a.addr }

// TestReplacementRetryAsksEnough: a search for a replacement that found
// no provider new to the run does not count as one more replica leaving,
// so the next search still asks the seed node for the providers in use
// and one more, and finds the one that has joined meanwhile.
func TestReplacementRetryAsksEnough(t *testing.T) {
	// The seed node offers the providers in use first; "c" joins after the
	// first search.
	live := []string{"b"}
	var asked []int
	tr := &LocalTrainer{handed: []string{"a", "b"}, more: func(ctx context.Context, n int) ([]exec.Executor, func(), error) {
		asked = append(asked, n)
		if n > len(live) {
			return nil, nil, seednode.ErrNotEnough
		}
		var out []exec.Executor
		for _, a := range live[:n] {
			out = append(out, addrExecutor{addr: a})
		}
		return out, func() {}, nil
	}}
	// replica "a" left
	if _, err := tr.replacement(context.Background()); !errors.Is(err, seednode.ErrNotEnough) {
		t.Fatalf("first search: %v, want ErrNotEnough", err)
	}
	live = append(live, "c")
	ex, err := tr.replacement(context.Background())
	if err != nil {
		t.Fatalf("second search (asked for %v providers): %v", asked, err)
	}
	if a := addrOf(ex); a != "c" {
		t.Fatalf("replacement %q, want c", a)
	}
}

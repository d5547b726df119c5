package rookery_test

import (
	"context"
	"slices"
	"testing"

	"gorgonia.org/gorgonia"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/partition"
)

// remote is an in-process executor that names an address, and a path
// when path is set, as a provider's client does.
type remote struct {
	exec.Executor
	addr string
}

func (r remote) Addr() string { return r.addr }

type remotePath struct {
	remote
	path string
}

func (r remotePath) Path() string { return r.path }

// TestPlacement: Placement names, part by part, an executor of this
// process, or a provider's address and the path of its connection.
func TestPlacement(t *testing.T) {
	ctx := context.Background()
	m := newMLP(8, 6, 10, 3)
	for _, tc := range []struct {
		name string
		opts []rookery.Option
		want []string
	}{
		{"in process", []rookery.Option{rookery.WithParts(2)},
			[]string{"part 1: in process", "part 2: in process"}},
		{"providers", []rookery.Option{rookery.WithExecutors(
			remotePath{remote{exec.NewCPU(), "/p2p/12D3KooWA"}, "relayed"},
			remote{exec.NewCPU(), "10.0.0.2:7070"},
			exec.NewCPU())},
			[]string{"part 1: provider /p2p/12D3KooWA (relayed)", "part 2: provider 10.0.0.2:7070", "part 3: in process"}},
		{"replicas", []rookery.Option{rookery.WithParts(2), rookery.WithReplicas(2), rookery.WithExecutors(
			remotePath{remote{exec.NewCPU(), "a:1"}, "direct"},
			remotePath{remote{exec.NewCPU(), "b:1"}, "tcp"},
			exec.NewCPU(),
			remotePath{remote{exec.NewCPU(), "/p2p/12D3KooWB"}, "relayed"})},
			[]string{"replica 1 part 1: provider a:1 (direct)", "replica 1 part 2: provider b:1 (tcp)",
				"replica 2 part 1: in process", "replica 2 part 2: provider /p2p/12D3KooWB (relayed)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]rookery.Option{rookery.WithPartitionOptions(partition.WithMaxImbalance(4))}, tc.opts...)
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, gorgonia.Nodes{m.x, m.y}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if got := tr.Placement(); !slices.Equal(got, tc.want) {
				t.Errorf("placement %q, want %q", got, tc.want)
			}
		})
	}
}

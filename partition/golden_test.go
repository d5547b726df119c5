package partition_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/internal/synth"
	"github.com/rookery-ml/rookery/partition"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenPlans pins whole plans for small graphs: any change in what
// Split decides shows up as a diff of these files. Rewrite them with
//
//	go test ./partition -run Golden -update
func TestGoldenPlans(t *testing.T) {
	tests := []struct {
		file string
		spec string
		k    int
		opts []partition.Option
	}{
		{"resnet3.txt", "resnet:blocks=2,width=8,batch=2", 3, []partition.Option{partition.WithCapacities([]float64{1, 1, 2})}},
		{"tied4.txt", "", 4, nil},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			var g *graph.Graph
			if tc.spec == "" {
				g = tiedWeights(t)
			} else {
				var err error
				if g, err = synth.Parse(tc.spec); err != nil {
					t.Fatal(err)
				}
			}
			plan, err := partition.Split(g, tc.k, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := plan.Validate(g); err != nil {
				t.Fatal(err)
			}
			got := describe(g, plan)
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("plan differs from %s (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

// describe writes everything a plan says, one fact a line.
func describe(g *graph.Graph, p *partition.Plan) []byte {
	var b bytes.Buffer
	name := func(id int64) string {
		n, _ := g.Node(id)
		return fmt.Sprintf("%d:%s", id, n.Name)
	}
	fmt.Fprintf(&b, "method %v\n", p.Method)
	fmt.Fprintf(&b, "order %v\n", p.Order)
	fmt.Fprintf(&b, "imbalance %.6f (bound %v)\n", p.Imbalance(), p.MaxImbalance)
	fmt.Fprintf(&b, "cut bytes %d (baseline %d)\n", p.CutBytes(), p.BaselineCutBytes)
	for i, pt := range p.Parts {
		fmt.Fprintf(&b, "part %d: capacity %v share %.6f cost %.0f param bytes %d\n", i, p.Capacities[i], pt.Share, pt.Cost, pt.ParamBytes)
		for _, id := range pt.Nodes {
			fmt.Fprintf(&b, "  %s\n", name(id))
		}
	}
	for _, c := range p.Cuts {
		fmt.Fprintf(&b, "cut %s part %d -> part %d: %d bytes\n", name(c.Producer), c.From, c.To, c.Bytes)
	}
	for _, s := range p.SharedParams {
		fmt.Fprintf(&b, "shared %s owner %d users %v\n", name(s.Param), s.Owner, s.Users)
	}
	return b.Bytes()
}

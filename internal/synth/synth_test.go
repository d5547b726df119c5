package synth

import (
	"errors"
	"reflect"
	"testing"

	"github.com/rookery-ml/rookery/graph"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec  string
		nodes int
	}{
		{"mlp:layers=50,width=1024", 251},
		{"mlp", MLPNodes(50)},
		{"mlp:layers=3,width=4,batch=2", 16},
		{"resnet:blocks=16", 0},
		{"resnet:blocks=1,width=8", 0},
		{"random-dag:nodes=1000,seed=1", 1000},
		{"random-dag:nodes=1,seed=1", 1},
		{"random-dag:nodes=5000,seed=9,width=8,batch=2", 5000},
	}
	for _, tc := range tests {
		g, err := Parse(tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		if tc.nodes > 0 && g.Len() != tc.nodes {
			t.Errorf("%s: %d nodes, want %d", tc.spec, g.Len(), tc.nodes)
		}
		if err := g.Validate(); err != nil {
			t.Errorf("%s: %v", tc.spec, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, spec := range []string{
		"", "cnn:layers=3", "mlp:layers", "mlp:layers=x", "mlp:layers=0", "mlp:depth=3",
		"mlp:layers=2,layers=3", "resnet:width=7", "random-dag:nodes=-1",
	} {
		_, err := Parse(spec)
		var se *SpecError
		if !errors.As(err, &se) {
			t.Errorf("%q: got %v, want a *SpecError", spec, err)
		}
	}
}

// TestShapes checks what each builder is made of: the MLP is a chain with
// a weight and bias per layer, the ResNet has skip adds and a concat, and
// the random DAG has varied ops and out-degrees.
func TestShapes(t *testing.T) {
	count := func(g *graph.Graph) map[graph.OpKind]int {
		m := map[graph.OpKind]int{}
		for _, n := range g.Nodes() {
			m[n.Op.Kind]++
		}
		return m
	}
	mlp, _ := MLP(10, 8, 2)
	if c := count(mlp); c[graph.KindMatMul] != 10 || c[graph.KindBroadcastAdd] != 10 || c[graph.KindTanh] != 10 || len(mlp.Learnables()) != 20 {
		t.Errorf("mlp: %v", c)
	}
	res, _ := ResNet(8, 16, 2)
	if c := count(res); c[graph.KindConcat] != 2 || c[graph.KindAdd] != 8 {
		t.Errorf("resnet: %v", c)
	}
	for _, n := range res.Nodes() {
		if n.Op.Kind == graph.KindAdd {
			// A skip: one operand is the block's input, produced well before.
			if res.Pos(n.Inputs[0]) >= res.Pos(n.Inputs[1])-1 {
				t.Errorf("add %d is no skip connection: inputs %v", n.ID, n.Inputs)
			}
		}
	}
	dag, _ := RandomDAG(20000, 1, 64, 16)
	c := count(dag)
	for _, k := range []graph.OpKind{graph.KindMatMul, graph.KindAdd, graph.KindConcat, graph.KindBroadcastAdd, graph.KindTanh} {
		if c[k] == 0 {
			t.Errorf("random dag has no %s: %v", k, c)
		}
	}
	deg := map[int]int{}
	for _, n := range dag.Nodes() {
		deg[min(len(dag.Consumers(n.ID)), 4)]++
	}
	for d := 0; d <= 4; d++ {
		if deg[d] == 0 {
			t.Errorf("no node with out-degree %d (4 means at least 4): %v", d, deg)
		}
	}
	if deg[0] > dag.Len()/10 {
		t.Errorf("%d of %d nodes are unused", deg[0], dag.Len())
	}
}

func TestDeterministic(t *testing.T) {
	a, _ := RandomDAG(3000, 7, 32, 4)
	b, _ := RandomDAG(3000, 7, 32, 4)
	c, _ := RandomDAG(3000, 8, 32, 4)
	if !reflect.DeepEqual(a.Nodes(), b.Nodes()) {
		t.Error("same seed, different graphs")
	}
	if reflect.DeepEqual(a.Nodes(), c.Nodes()) {
		t.Error("different seeds, same graph")
	}
}

func BenchmarkRandomDAG1M(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := RandomDAG(1_000_000, 1, 64, 16); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMLP1M(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := MLP(200_000, 1024, 32); err != nil {
			b.Fatal(err)
		}
	}
}

package cuda

import (
	"context"
	"errors"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
)

func TestFallback(t *testing.T) {
	ctx := context.Background()
	m := graph.Shape{3, 4}
	ok := opCase{op: graph.NewOp(graph.KindTanh), in: []graph.Shape{m}, out: m}.spec(t, newRand())
	refused := opCase{op: graph.NewOp(graph.KindAvgPool2D, graph.ShapeAttr("kernel", 2, 2), graph.ShapeAttr("pad", 0, 0, 0, 0), graph.ShapeAttr("stride", 2, 2)),
		in: []graph.Shape{{1, 1, 4, 4}}, out: graph.Shape{1, 1, 2, 2}}.spec(t, newRand())
	refused.Part = 3
	var noted []int
	e := Fallback(newReference(), exec.NewCPU(), func(part int, err error) {
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("fallback for %v", err)
		}
		noted = append(noted, part)
	})
	s, err := e.Open(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	if _, isGPU := s.(*session); !isGPU {
		t.Errorf("a supported part opened as %T, want the CUDA executor's session", s)
	}
	s.Close()
	s, err = e.Open(ctx, refused)
	if err != nil {
		t.Fatal(err)
	}
	if _, isGPU := s.(*session); isGPU {
		t.Error("an unsupported part opened on the CUDA executor")
	}
	if _, err := s.Forward(ctx, 0, nil); err != nil {
		t.Errorf("the CPU session does not run: %v", err)
	}
	s.Close()
	if len(noted) != 1 || noted[0] != 3 {
		t.Errorf("fallbacks noted for parts %v, want [3]", noted)
	}
	bad := ok
	bad.Graph = nil
	if _, err := e.Open(ctx, bad); !errors.Is(err, exec.ErrSpec) {
		t.Errorf("invalid spec: got %v, want ErrSpec, not a fallback", err)
	}
}

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
	ok := opCase{Op: graph.NewOp(graph.KindTanh), In: []graph.Shape{m}, Out: m}.Spec(t, newRand())
	refused := opCase{Op: graph.NewOp(graph.KindAvgPool2D, graph.ShapeAttr("kernel", 2, 2), graph.ShapeAttr("pad", 0, 0, 0, 0), graph.ShapeAttr("stride", 2, 2)),
		In: []graph.Shape{{1, 1, 4, 4}}, Out: graph.Shape{1, 1, 2, 2}}.Spec(t, newRand())
	refused.Part = 3
	var noted []int
	cpu := &countOpens{Executor: exec.NewCPU()}
	e := Fallback(newReference(), cpu, func(part int, err error) {
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("fallback for %v", err)
		}
		noted = append(noted, part)
	})
	s, err := e.Open(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	if cpu.opens != 0 {
		t.Errorf("a supported part opened on the CPU executor")
	}
	s.Close()
	s, err = e.Open(ctx, refused)
	if err != nil {
		t.Fatal(err)
	}
	if cpu.opens != 1 {
		t.Error("an unsupported part did not open on the CPU executor")
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

// countOpens counts the sessions an executor opens.
type countOpens struct {
	exec.Executor
	opens int
}

func (c *countOpens) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	c.opens++
	return c.Executor.Open(ctx, spec)
}

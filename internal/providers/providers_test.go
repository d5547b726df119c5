package providers

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
)

func TestResolve(t *testing.T) {
	ctx := context.Background()
	if p, err := Resolve(ctx, "", "", 2); err != nil || p.Executors != nil || p.Where != "" {
		t.Errorf("no flags: got %+v, %v; want nothing", p, err)
	}
	if _, err := Resolve(ctx, "a:1", "b:2", 2); !errors.Is(err, ErrBothFlags) {
		t.Errorf("both flags: got %v, want ErrBothFlags", err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(exec.NewCPU())
	go srv.Serve(lis)
	defer srv.Stop()
	p, err := Resolve(ctx, lis.Addr().String()+", "+lis.Addr().String(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.Executors) != 2 || p.Where != "2 remote providers" {
		t.Errorf("got %d executors, %q; want 2, \"2 remote providers\"", len(p.Executors), p.Where)
	}
}

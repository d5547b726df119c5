package providers

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

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
	one, err := Resolve(ctx, lis.Addr().String(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	one.Close()
	if one.Where != "1 remote provider" {
		t.Errorf("one address: got %q, want \"1 remote provider\"", one.Where)
	}
	p, err := Resolve(ctx, lis.Addr().String()+", "+lis.Addr().String(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.Executors) != 2 || p.Where != "2 remote providers" {
		t.Errorf("got %d executors, %q; want 2, \"2 remote providers\"", len(p.Executors), p.Where)
	}
}

// An address where nothing listens fails within the dial timeout with an
// error naming it, for --providers and --seed-node alike.
func TestResolveUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	for _, tc := range []struct{ list, seedNode, peer string }{
		{addr, "", "provider"},
		{"", addr, "seed node"},
	} {
		_, err := Resolve(context.Background(), tc.list, tc.seedNode, 1, transport.WithDialTimeout(200*time.Millisecond))
		var de *transport.DialError
		if !errors.As(err, &de) || de.Addr != addr || de.Peer != tc.peer {
			t.Errorf("list %q seed node %q: got %v, want a *DialError for %s %s", tc.list, tc.seedNode, err, tc.peer, addr)
		}
		if want := "transport: dial " + addr + ": no " + tc.peer + " answered within 200ms"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("got %v, want it to start with %q", err, want)
		}
	}
}

package seednode_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// An unreachable seed node gives an error that names it and the cause,
// within the dial timeout, rather than the caller's bare deadline.
func TestFindUnreachableSeedNode(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	for _, call := range []struct {
		name string
		f    func() error
	}{
		{"find", func() error {
			_, err := seednode.Find(context.Background(), addr, seednode.Need{N: 1}, transport.WithDialTimeout(200*time.Millisecond))
			return err
		}},
		{"lease", func() error {
			_, _, _, err := seednode.Lease(context.Background(), addr, seednode.Need{N: 1}, transport.WithDialTimeout(200*time.Millisecond))
			return err
		}},
	} {
		t.Run(call.name, func(t *testing.T) {
			err := call.f()
			var de *transport.DialError
			if !errors.As(err, &de) || de.Addr != addr || de.Peer != "seed node" {
				t.Fatalf("got %v, want a *DialError for seed node %s", err, addr)
			}
			for _, want := range []string{addr, "no seed node answered within 200ms", "connection refused"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

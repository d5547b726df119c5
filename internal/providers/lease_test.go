package providers

import (
	"context"
	"crypto/ed25519"
	"net"
	"reflect"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/ravml"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// leasedCluster starts a seed node that signs leases and n providers
// that require them, all in this process on loopback, and returns the
// seed node's address once all n are registered.
func leasedCluster(t *testing.T, n int) string {
	t.Helper()
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := seednode.NewRegistry(seednode.WithLeaseSigning(key, time.Minute))
	go seed.Serve(lis)
	t.Cleanup(seed.Stop)
	addr := lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for i := 0; i < n; i++ {
		plis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0),
			transport.WithLeaseKey(key.Public().(ed25519.PublicKey), plis.Addr().String()))
		go srv.Serve(plis)
		done := make(chan error, 1)
		go func() { done <- srv.Announce(ctx, addr, plis.Addr().String()) }()
		t.Cleanup(func() {
			cancel()
			<-done
			srv.Stop()
		})
	}
	for {
		_, err := seednode.Find(ctx, addr, seednode.Need{N: n})
		if err == nil {
			return addr
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blobs returns rows around two centres, labelled by centre.
func blobs(rows int) (*tensor.Dense, []float64) {
	x := make([]float64, 0, 2*rows)
	y := make([]float64, rows)
	for i := range rows {
		c := float64(i % 2)
		d := float64(i%7) / 10
		x = append(x, 4*c+d, -4*c+d/2)
		y[i] = c
	}
	return tensor.New(tensor.WithShape(rows, 2), tensor.WithBacking(x)), y
}

// TestResolveLeased: providers leased from a seed node that signs
// leases, and that require them, run ravml's KNN and k-means (which opens
// sessions again and again on the same executors) as in-process
// executors do.
func TestResolveLeased(t *testing.T) {
	addr := leasedCluster(t, 2)
	ctx := context.Background()
	p, err := Resolve(ctx, "", addr, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	execs := p.Executors
	if len(execs) != 2 || p.Where != "2 remote providers from seed node "+addr {
		t.Fatalf("got %d executors, %q", len(execs), p.Where)
	}
	x, y := blobs(40)
	for _, tc := range []struct {
		name        string
		local, wire interface {
			Fit(context.Context, *tensor.Dense, []float64) error
			Predict(context.Context, *tensor.Dense) ([]float64, error)
		}
	}{
		{"KNNClassifier", ravml.NewKNNClassifier(3), ravml.NewKNNClassifier(3, ravml.WithExecutors(execs...))},
		{"KMeans", ravml.NewKMeans(2, ravml.NInit(2)), ravml.NewKMeans(2, ravml.NInit(2), ravml.WithExecutors(execs...))},
	} {
		var got [2][]float64
		for i, m := range []interface {
			Fit(context.Context, *tensor.Dense, []float64) error
			Predict(context.Context, *tensor.Dense) ([]float64, error)
		}{tc.local, tc.wire} {
			if err := m.Fit(ctx, x, y); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got[i], err = m.Predict(ctx, x); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if c, ok := m.(interface{ Close() error }); ok {
				c.Close()
			}
		}
		if !reflect.DeepEqual(got[1], got[0]) {
			t.Errorf("%s: predictions on leased providers %v, in process %v", tc.name, got[1], got[0])
		}
	}
}

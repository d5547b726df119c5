package ravml

import (
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
)

// TestRemoteProviders runs KNN, k-means and a tree on two providers
// served over loopback TCP and checks that they answer as in-process
// executors do: the new op kinds cross the wire and run on the provider.
func TestRemoteProviders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var execs []exec.Executor
	for i := 0; i < 2; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(time.Millisecond))
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		e, err := transport.Dial(ctx, lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		execs = append(execs, e)
	}
	d := loadSplit(t, "digits")
	for _, tc := range []struct {
		name  string
		local model
		wire  model
	}{
		{"KNNClassifier", NewKNNClassifier(5), NewKNNClassifier(5, WithExecutors(execs...))},
		{"KMeans", NewKMeans(10, NInit(1)), NewKMeans(10, NInit(1), WithExecutors(execs...))},
		{"DecisionTreeClassifier", NewDecisionTreeClassifier(MaxDepth(6)), NewDecisionTreeClassifier(MaxDepth(6), WithExecutors(execs...))},
	} {
		var got, want []float64
		for _, m := range []model{tc.local, tc.wire} {
			if err := m.Fit(ctx, d.trX, d.trY); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			p, err := m.Predict(ctx, d.teX)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if c, ok := m.(interface{ Close() error }); ok {
				c.Close()
			}
			got, want = p, got
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: predictions over gRPC differ from in-process ones", tc.name)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/internal/netlab"
)

// TestMain runs the test binary as a requester when Run starts it so in
// a namespace, as the program does with itself.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "requester" {
		if err := requesterMain(os.Args[1:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "requester:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lineLog writes what it is given to the test's log, a line at a time.
type lineLog struct {
	t  *testing.T
	mu sync.Mutex
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.t.Log(line)
	}
	return len(p), nil
}

// TestNATTopology runs the whole story of the program on an emulated
// internet: two seed nodes, providers behind two cone NATs and a
// symmetric one, a requester behind its own NAT. It needs root, iproute2,
// nftables and network namespaces, and skips without them unless
// ROOKERY_NETLAB_REQUIRED is set (as in CI), when it fails.
func TestNATTopology(t *testing.T) {
	if err := netlab.Available(); err != nil {
		if os.Getenv("ROOKERY_NETLAB_REQUIRED") != "" {
			t.Fatalf("ROOKERY_NETLAB_REQUIRED is set, but no emulated internet can be built here: %v", err)
		}
		t.Skipf("no emulated internet here (%v): the test needs root, iproute2 (ip), nftables (nft) and network namespaces", err)
	}
	if testing.Short() {
		t.Skip("-short: the emulated internet takes about 40 s")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "rookery")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rookery-ml/rookery/cmd/rookery").CombinedOutput(); err != nil {
		t.Fatalf("building rookery: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("nt%d", os.Getpid()%100000000)
	// ROOKERY_NAT_LOGS keeps the processes' logs there.
	res, err := Run(ctx, Config{Rookery: bin, Self: self, Out: &lineLog{t: t}, Prefix: prefix, Logs: os.Getenv("ROOKERY_NAT_LOGS")})
	if left, lerr := netlab.Namespaces(prefix); lerr != nil || len(left) > 0 {
		t.Errorf("namespaces left behind: %v (%v)", left, lerr)
		_ = netlab.Cleanup(prefix)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("result: %+v", *res)
	// The providers behind cone NATs end on direct connections after
	// hole punching; the one behind the symmetric NAT stays relayed.
	want := map[string]string{"a": "direct", "b": "direct", "c": "relayed"}
	for name, path := range want {
		if res.Paths[name] != path {
			t.Errorf("provider %s: path %q, want %q (all: %v)", name, res.Paths[name], path, res.Paths)
		}
	}
	if res.Direct != 2 || res.Relayed != 1 {
		t.Errorf("%d direct and %d relayed connections, want 2 and 1", res.Direct, res.Relayed)
	}
	if !res.SameModel {
		t.Errorf("the model trained across the NATs differs from the one trained in process by %g", res.MaxDiff)
	}
	// Leasable within 10 s of starting, behind NAT.
	if !(res.JoinSeconds > 0 && res.JoinSeconds <= 10) {
		t.Errorf("providers leasable %.2f s after they started, want within 10 s", res.JoinSeconds)
	}
	// After seed 1 stopped, a new requester found them through seed 2.
	if res.FoundViaSeed2 < 2 {
		t.Errorf("a new requester found %d providers with seed 1 stopped, want 2", res.FoundViaSeed2)
	}
	// AutoNAT found none of them reachable (those it has answered yet:
	// libp2p schedules its probes).
	private := 0
	for _, name := range []string{"a", "b", "c"} {
		switch res.Reachability[name] {
		case "Public":
			t.Errorf("AutoNAT told provider %s it is reachable, behind NAT (all: %v)", name, res.Reachability)
		case "Private":
			private++
		}
	}
	t.Logf("AutoNAT answered %d of the 3 providers by the end: %v", private, res.Reachability)
	if !(res.StepMsDirect > 0 && res.StepMsRelayed > 0 && res.StepMsTCP > 0) {
		t.Errorf("step times direct %.2f, relayed %.2f, tcp %.2f ms: all must be measured", res.StepMsDirect, res.StepMsRelayed, res.StepMsTCP)
	}
}

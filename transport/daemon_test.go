package transport_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/exectest"
	"github.com/rookery-ml/rookery/exec/native"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// The tests here run the real `rookery provider` binary as a child
// process on loopback. It is built once per test run into a temporary
// directory; set ROOKERY_BIN to use a binary built elsewhere.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func rookeryBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("ROOKERY_BIN"); p != "" {
			binPath = p
			return
		}
		binDir, binErr = os.MkdirTemp("", "rookery-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "rookery")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := osexec.CommandContext(ctx, goTool, "build", "-o", binPath, "github.com/rookery-ml/rookery/cmd/rookery").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/rookery: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// daemon is a running `rookery provider` or `rookery seed`.
type daemon struct {
	cmd     *osexec.Cmd
	addr    string            // gRPC address
	extra   map[string]string // other addresses it printed: "metrics", "http"
	stderr  *lockedBuffer
	exited  chan error
	stopped bool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon starts `rookery args...` and waits (at most 60s) for it to
// print "listening on ADDR". It is stopped with SIGTERM when the test
// ends, if the test has not stopped it.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	cmd := osexec.Command(rookeryBin(t), args...)
	// A provider keeps its identity key under the home directory: give
	// each daemon its own, so that tests write nothing outside their own.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	d := &daemon{cmd: cmd, extra: map[string]string{}, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = d.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		d.exited <- cmd.Wait()
	}()
	timeout := time.After(60 * time.Second)
	for d.addr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("rookery %v exited before listening: %s", args, d.stderr)
			}
			if what, addr, ok := strings.Cut(line, " on "); ok {
				if what == "listening" {
					d.addr = addr
				} else {
					d.extra[what] = addr
				}
			}
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("rookery %v did not start within 60s: %s", args, d.stderr)
		}
	}
	go func() {
		for range lines { // keep draining stdout until it closes
		}
	}()
	t.Cleanup(func() {
		if !d.stopped {
			if err := d.stop(); err != nil {
				t.Errorf("stopping rookery %v: %v", args, err)
			}
		}
	})
	return d
}

// stop sends SIGTERM and waits at most 20s for a clean exit.
func (d *daemon) stop() error {
	d.stopped = true
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("exit: %v; stderr:\n%s", err, d.stderr)
		}
		return nil
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("no exit within 20s of SIGTERM; killed")
	}
}

func dialDaemon(t testing.TB, addr string) *transport.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformanceDaemon runs the conformance suite against a `rookery
// provider` child process over loopback TCP, a fresh connection for each
// sub-test.
func TestConformanceDaemon(t *testing.T) {
	d := startDaemon(t, "provider", "--listen", "127.0.0.1:0", "--bench", "0")
	exectest.Run(t, func(t *testing.T) exec.Executor { return dialDaemon(t, d.addr) })
}

// TestPipelineDaemon trains the MLP over two `rookery provider`
// processes: the same losses and parameters, bit for bit, as in-process
// on the executor a provider serves on a CPU (the native one).
func TestPipelineDaemon(t *testing.T) {
	const steps = 5
	m := newMLP(t, tensor.Float32, 16, 64, 32, 10)
	cfg := exec.Adam(0.001)
	wantLoss, wantP := m.train(t, []exec.Executor{native.New(), native.New()}, 2, steps, cfg)
	a := startDaemon(t, "provider", "--listen", "127.0.0.1:0", "--bench", "0")
	b := startDaemon(t, "provider", "--listen", "127.0.0.1:0", "--bench", "0")
	gotLoss, gotP := m.train(t, []exec.Executor{dialDaemon(t, a.addr), dialDaemon(t, b.addr)}, 2, steps, cfg)
	requireSameTraining(t, wantLoss, gotLoss, wantP, gotP)
}

// TestDaemonLifecycle: the daemon answers health checks, serves metrics,
// registers with a seed node, and on SIGTERM closes its sessions,
// deregisters and exits 0.
func TestDaemonLifecycle(t *testing.T) {
	seed := startDaemon(t, "seed", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--ttl", "5s")
	p := startDaemon(t, "provider", "--listen", "127.0.0.1:0", "--bench", "50ms", "--metrics", "127.0.0.1:0",
		"--seed-node", seed.addr, "--name", "lifecycle", "--max-memory", "1GiB", "--log-format", "json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cc, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "rookery.v1.Provider"})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v, %v", hr, err)
	}

	// Server reflection lists the services.
	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	rs.CloseSend()
	var services []string
	for _, sv := range rr.GetListServicesResponse().GetService() {
		services = append(services, sv.Name)
	}
	if got := strings.Join(services, " "); !strings.Contains(got, "rookery.v1.Provider") || !strings.Contains(got, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %q", got)
	}

	c := dialDaemon(t, p.addr)
	if caps := c.Capabilities(); caps.Name != "lifecycle" || caps.MemoryBytes != 1<<30 || !(caps.Gflops > 0) || len(caps.OpKinds) == 0 {
		t.Errorf("capabilities: %v", caps)
	}
	// It shows up at the seed node.
	var found bool
	for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); {
		got, err := seednode.Find(ctx, seed.addr, seednode.Need{N: 1})
		found = err == nil && got[0].Address == p.addr
		if !found {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !found {
		t.Fatal("provider never registered with the seed node")
	}
	body := httpGet(t, "http://"+seed.extra["http"]+"/v1/providers")
	if !strings.Contains(body, `"name": "lifecycle"`) || strings.Contains(body, `"measured_gflops": 0,`) {
		t.Errorf("seed HTTP view lacks the provider or its measured speed:\n%s", body)
	}

	// A session with some work done, left open.
	m := newMLP(t, tensor.Float32, 8, 20, 16, 4)
	s, err := openFirstPart(t, c, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "shard", m.feeds[m.data[0]]); err != nil {
		t.Fatal(err)
	}
	text := httpGet(t, "http://"+p.extra["metrics"]+"/metrics")
	metrics := parseMetrics(t, text)
	if v, ok := metrics.value("rookery_provider_sessions"); !ok || v != 1 {
		t.Errorf("metrics: rookery_provider_sessions %v (present %v), want 1:\n%s", v, ok, text)
	}
	// One put here, and the two matrices of the seed node's speed
	// benchmark.
	if v, ok := metrics.value("rookery_provider_calls_total", "method", "put", "code", "OK"); !ok || v != 3 {
		t.Errorf(`metrics: rookery_provider_calls_total{method="put",code="OK"} %v (present %v), want 3:\n%s`, v, ok, text)
	}
	if _, ok := metrics.value("rookery_provider_received_bytes_total"); !ok {
		t.Errorf("metrics lack rookery_provider_received_bytes_total:\n%s", text)
	}

	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	logs := p.stderr.String()
	for _, want := range []string{`"msg":"session closed"`, `"reason":"shutdown"`, `"msg":"provider stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	// Gone from the seed node at once (deregistered, not expired).
	if _, err := seednode.Find(ctx, seed.addr, seednode.Need{N: 1}); !errors.Is(err, seednode.ErrNotEnough) {
		t.Errorf("after SIGTERM the seed still lists the provider: %v", err)
	}
	if _, err := s.Get(ctx, "shard"); !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("call after the provider stopped: got %v, want ErrUnavailable", err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

// TestDaemonVersion: --version prints the version and exits 0.
func TestDaemonVersion(t *testing.T) {
	out, err := osexec.Command(rookeryBin(t), "provider", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "rookery "+transport.Version+" ") {
		t.Fatalf("--version printed %q", out)
	}
}

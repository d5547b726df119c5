package rookery_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/exec/guard"
	"github.com/rookery-ml/rookery/exec/guard/guardtest"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport"
)

// guardOpts are the training options every run here shares with its
// fault-free reference.
func guardOpts() []rookery.Option {
	return []rookery.Option{rookery.WithParts(2), rookery.WithMicroBatches(2), rookery.WithSolver(exec.Adam(0.02)),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(2))}
}

// reference trains m for n steps on in-process executors, without faults.
func reference(t testing.TB, batch, in, hid, classes, n int) [][]float64 {
	t.Helper()
	m := newMLP(batch, in, hid, classes)
	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), guardOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	trainSteps(t, tr, m, n)
	return params(t, tr, m)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// rookeryBin builds cmd/rookery once per test run.
func rookeryBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rookery-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "rookery")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		out, err := osexec.Command(goTool, "build", "-o", binPath, "./cmd/rookery").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/rookery: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// providerProcess starts `rookery provider` on loopback and returns its
// process and address. The test kills it at the end if it still runs.
func providerProcess(t testing.TB) (*osexec.Cmd, string) {
	t.Helper()
	cmd := osexec.Command(rookeryBin(t), "provider", "--listen", "127.0.0.1:0", "--bench", "0", "--log-level", "error")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
			go io.Copy(io.Discard, out)
			return cmd, addr
		}
	}
	t.Fatalf("rookery provider exited before listening: %v", sc.Err())
	return nil, ""
}

// killOnCall is an executor that starts kill as its n-th Forward or
// Backward call (counted over its sessions) starts, so that the provider
// dies before the call reaches it, while it runs, or just after.
type killOnCall struct {
	exec.Executor
	n     int64
	calls atomic.Int64
	kill  func()
}

func (k *killOnCall) String() string {
	return fmt.Sprint(k.Executor.(interface{ Addr() string }).Addr())
}

func (k *killOnCall) Open(ctx context.Context, spec exec.SessionSpec) (exec.Session, error) {
	s, err := k.Executor.Open(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &killSession{Session: s, k: k}, nil
}

type killSession struct {
	exec.Session
	k *killOnCall
}

func (s *killSession) count() {
	if s.k.calls.Add(1) == s.k.n {
		go s.k.kill()
	}
}

func (s *killSession) Forward(ctx context.Context, mb int, f map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	s.count()
	return s.Session.Forward(ctx, mb, f)
}

func (s *killSession) Backward(ctx context.Context, mb int, g map[int64]*tensor.Dense) (map[int64]*tensor.Dense, error) {
	s.count()
	return s.Session.Backward(ctx, mb, g)
}

// TestProviderProcessKilled kills a `rookery provider` process with
// SIGKILL in the middle of a seeded random step (a seeded delay after one
// of its Forward or Backward calls starts); its part moves to the spare provider,
// restored from the last snapshot and the replayed log, and the final
// parameters equal the fault-free run's.
func TestProviderProcessKilled(t *testing.T) {
	const steps = 12
	want := reference(t, 8, 6, 10, 3, steps)
	for _, seed := range []int64{1, 2} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			victim := rng.Intn(2)
			call := 1 + rng.Int63n(steps*4-1) // 4 calls a step: 2 micro-batches forward and backward
			ctx := context.Background()
			var execs []exec.Executor
			var procs []*osexec.Cmd
			for range 3 {
				cmd, addr := providerProcess(t)
				c, err := transport.Connect(ctx, addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				execs = append(execs, c)
				procs = append(procs, cmd)
			}
			delay := time.Duration(rng.Int63n(int64(2 * time.Millisecond)))
			killed := make(chan struct{})
			execs[victim] = &killOnCall{Executor: execs[victim], n: call, kill: func() {
				defer close(killed)
				time.Sleep(delay)
				if err := procs[victim].Process.Signal(syscall.SIGKILL); err != nil {
					t.Error(err)
				}
				_ = procs[victim].Wait()
			}}
			var mu sync.Mutex
			var events []guard.Event
			m := newMLP(8, 6, 10, 3)
			opts := append(guardOpts(), rookery.WithExecutors(execs[0], execs[1]), rookery.WithSpares(execs[2]),
				rookery.WithSnapshotEvery(4), rookery.WithCallTimeout(30*time.Second),
				rookery.WithEvents(func(e guard.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			trainSteps(t, tr, m, steps)
			got := params(t, tr, m)
			select {
			case <-killed:
			default:
				t.Fatal("the provider was never killed")
			}
			d := maxAbsDiff(got, want)
			mu.Lock()
			var replaced []string
			for _, e := range events {
				if e.Kind == guard.EventReplaced {
					replaced = append(replaced, e.String())
				}
			}
			mu.Unlock()
			t.Logf("provider of part %d killed (SIGKILL) %v after its call %d started (step %d); %v; max |difference| from the fault-free run %g",
				victim, delay, call, (call-1)/4, replaced, d)
			if len(replaced) != 1 {
				t.Errorf("replacements %v, want one", replaced)
			}
			if d > 1e-9 {
				t.Errorf("parameters differ from the fault-free run by %g", d)
			}
		})
	}
}

// proxy forwards TCP connections to a backend and misbehaves: it delays
// every chunk, cuts a connection with probability cut per chunk, and with
// probability stall stops forwarding one without closing it (as a network
// that drops everything), all drawn from a seeded source.
type proxy struct {
	lis     net.Listener
	backend string
	delay   time.Duration
	cut     float64
	stall   float64

	mu     sync.Mutex
	rng    *rand.Rand
	conns  []net.Conn
	cuts   int
	stalls int
	closed bool
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, backend string, seed int64, delay time.Duration, cut, stall float64) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, backend: backend, delay: delay, cut: cut, stall: stall, rng: rand.New(rand.NewSource(seed))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			b.Close()
			return
		}
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, b)
		go p.pipe(b, c)
	}
}

// draw decides what happens to the next chunk.
func (p *proxy) draw() (cut, stall bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	x := p.rng.Float64()
	switch {
	case x < p.cut:
		p.cuts++
		return true, false
	case x < p.cut+p.stall:
		p.stalls++
		return false, true
	}
	return false, false
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	stalled := false
	for {
		n, err := src.Read(buf)
		if n > 0 && !stalled {
			time.Sleep(p.delay)
			cut, stall := p.draw()
			if cut {
				src.Close()
				dst.Close()
				return
			}
			stalled = stall
			if !stalled {
				if _, err := dst.Write(buf[:n]); err != nil {
					src.Close()
					return
				}
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.lis.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) faults() (cuts, stalls int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts, p.stalls
}

// TestFlakyNetwork trains through proxies that delay, cut and black-hole
// connections at random (seeded). Each run either finishes with the
// fault-free model or stops with a *guard.FailedError after bounded
// retries; never with a wrong model.
func TestFlakyNetwork(t *testing.T) {
	const steps = 8
	want := reference(t, 8, 6, 10, 3, steps)
	// Fault rates per forwarded chunk; ROOKERY_FLAKY="cut,stall" sets
	// others (at higher rates runs end with *guard.FailedError too).
	cut, stall := 0.02, 0.002
	if v := os.Getenv("ROOKERY_FLAKY"); v != "" {
		if _, err := fmt.Sscanf(v, "%g,%g", &cut, &stall); err != nil {
			t.Fatalf("ROOKERY_FLAKY=%q: %v", v, err)
		}
	}
	finished, failed, cuts, stalls := 0, 0, 0, 0
	for seed := int64(1); seed <= 4; seed++ {
		ctx := context.Background()
		var execs []exec.Executor
		var proxies []*proxy
		for i := range 4 {
			_, c := inProcessProvider(t)
			p := newProxy(t, c.Addr(), seed*10+int64(i), 200*time.Microsecond, cut, stall)
			proxies = append(proxies, p)
			// Connecting crosses the faulty network too: retry, a bounded
			// number of times.
			var pc *transport.Client
			var err error
			for try := 0; try < 10; try++ {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				pc, err = transport.Connect(cctx, p.addr())
				cancel()
				if err == nil {
					break
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			execs = append(execs, pc)
		}
		m := newMLP(8, 6, 10, 3)
		opts := append(guardOpts(), rookery.WithExecutors(execs[0], execs[1]), rookery.WithSpares(execs[2:]...),
			rookery.WithSnapshotEvery(2), rookery.WithCallTimeout(500*time.Millisecond), rookery.WithGuardOptions(guard.WithMaxReplacements(6)))
		tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
		if err == nil {
			for s := 0; s < steps && err == nil; s++ {
				_, err = tr.Step(ctx, m.feeds())
			}
		}
		if err == nil {
			got := params(t, tr, m)
			if d := maxAbsDiff(got, want); d > 1e-9 {
				t.Errorf("seed %d: finished with parameters %g away from the fault-free run", seed, d)
			}
			finished++
		} else {
			var fe *guard.FailedError
			if !errors.As(err, &fe) || !errors.Is(err, exec.ErrUnavailable) {
				t.Errorf("seed %d: %v, want a *guard.FailedError", seed, err)
			}
			t.Logf("seed %d: %v", seed, err)
			failed++
		}
		if tr != nil {
			tr.Close()
		}
		for _, p := range proxies {
			c, s := p.faults()
			cuts, stalls = cuts+c, stalls+s
		}
	}
	t.Logf("4 runs through faulty proxies: %d cuts and %d black-holed connections injected; %d runs finished with the right model, %d ended with *guard.FailedError",
		cuts, stalls, finished, failed)
	if cuts+stalls == 0 {
		t.Error("no faults were injected")
	}
	if finished == 0 && os.Getenv("ROOKERY_FLAKY") == "" {
		t.Error("no run finished")
	}
}

// inProcessProvider serves a CPU executor on loopback in this process.
func inProcessProvider(t testing.TB, opts ...transport.ServerOption) (*transport.Server, *transport.Client) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(exec.NewCPU(), append([]transport.ServerOption{transport.WithBenchmark(0)}, opts...)...)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c, err := transport.Connect(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// TestTrainerRedundancyAndSpotChecks: through the trainer's options, a
// liar is caught under redundancy 2 and under spot checks on this
// machine, and the model equals the honest run's.
func TestTrainerRedundancyAndSpotChecks(t *testing.T) {
	const steps = 8
	want := reference(t, 8, 6, 10, 3, steps)
	cases := map[string]func(liar exec.Executor) []rookery.Option{
		"redundancy 2": func(liar exec.Executor) []rookery.Option {
			return []rookery.Option{rookery.WithExecutors(exec.NewCPU(), liar), rookery.WithRedundancy(2),
				rookery.WithSpares(exec.NewCPU(), exec.NewCPU(), exec.NewCPU())}
		},
		"redundancy 3": func(liar exec.Executor) []rookery.Option {
			return []rookery.Option{rookery.WithExecutors(liar, exec.NewCPU()), rookery.WithRedundancy(3),
				rookery.WithSpares(exec.NewCPU(), exec.NewCPU(), exec.NewCPU(), exec.NewCPU(), exec.NewCPU())}
		},
		"spot checks": func(liar exec.Executor) []rookery.Option {
			return []rookery.Option{rookery.WithExecutors(exec.NewCPU(), liar), rookery.WithSpotCheck(0.5)}
		},
	}
	for name, opts := range cases {
		for _, lie := range []guardtest.Lie{guardtest.Noise, guardtest.FlipSign, guardtest.Stale} {
			t.Run(fmt.Sprint(name, "/", lie), func(t *testing.T) {
				var mu sync.Mutex
				var excluded []guard.Event
				liar := guardtest.Liar("liar", exec.NewCPU(), lie, 9, 3)
				m := newMLP(8, 6, 10, 3)
				o := append(guardOpts(), opts(liar)...)
				o = append(o, rookery.WithEvents(func(e guard.Event) {
					if e.Kind == guard.EventExcluded {
						mu.Lock()
						excluded = append(excluded, e)
						mu.Unlock()
					}
				}))
				ctx := context.Background()
				tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), o...)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				trainSteps(t, tr, m, steps)
				if d := maxAbsDiff(params(t, tr, m), want); d > 1e-9 {
					t.Errorf("parameters differ from the honest run by %g", d)
				}
				if len(excluded) != 1 || excluded[0].Provider != "liar" {
					t.Errorf("exclusions %v, want the liar", excluded)
				}
			})
		}
	}
}

func TestTrainerGuardConfigErrors(t *testing.T) {
	ctx := context.Background()
	m := newMLP(8, 6, 10, 3)
	for _, o := range []rookery.Option{rookery.WithRedundancy(0), rookery.WithSnapshotEvery(-1), rookery.WithSpotCheck(2)} {
		if _, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), o); !errors.Is(err, rookery.ErrConfig) || !errors.Is(err, guard.ErrConfig) {
			t.Errorf("got %v, want rookery.ErrConfig and guard.ErrConfig", err)
		}
	}
	// Redundancy 2 with no spare for the second replicas.
	_, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), rookery.WithParts(1), rookery.WithRedundancy(2))
	if !errors.Is(err, guard.ErrNoSpare) {
		t.Errorf("redundancy without spares: %v, want guard.ErrNoSpare", err)
	}
}

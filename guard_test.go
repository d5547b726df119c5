package rookery_test

import (
	"bufio"
	"cmp"
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
	"slices"
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
	cmd := osexec.Command(rookeryBin(t), "provider", "--listen", "127.0.0.1:0", "--bench", "0", "--log-level", "error",
		"--key", filepath.Join(t.TempDir(), "provider.key"))
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

// proxy forwards TCP connections to a backend and misbehaves at set
// points of the requester's bytes: counting the bytes it has forwarded
// from requester to provider, over all its connections, it cuts the
// connection that carries a cut's byte, or from a stall's byte on stops
// forwarding that connection without closing it (as a network that drops
// everything). The faults are a function of the byte count alone, so
// every run injects the same faults at the same bytes.
type proxy struct {
	lis     net.Listener
	backend string

	mu     sync.Mutex
	faults []netFault // in order of at
	sent   int64      // bytes forwarded from requester to provider
	cuts   int
	stalls int
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// netFault is a cut, or a stall, at byte at of the requester's stream.
type netFault struct {
	at    int64
	stall bool
}

func newProxy(t testing.TB, backend string, faults ...netFault) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(faults, func(a, b netFault) int { return cmp.Compare(a.at, b.at) })
	p := &proxy{lis: lis, backend: backend, faults: faults}
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
		go p.pipe(b, c, true)
		go p.pipe(c, b, false)
	}
}

// take counts n more bytes of the requester's stream and returns how many
// of them to forward before a fault, and that fault (nil: none).
func (p *proxy) take(n int) (int, *netFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.faults) > 0 && p.sent+int64(n) >= p.faults[0].at {
		f := p.faults[0]
		p.faults = p.faults[1:]
		k := int(max(f.at-p.sent, 0))
		p.sent += int64(k)
		if f.stall {
			p.stalls++
		} else {
			p.cuts++
		}
		return k, &f
	}
	p.sent += int64(n)
	return n, nil
}

// pipe copies src to dst; faults apply to the requester's stream (up).
func (p *proxy) pipe(dst, src net.Conn, up bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	stalled := false
	for {
		n, err := src.Read(buf)
		chunk := buf[:n]
		for len(chunk) > 0 && !stalled {
			k, f := len(chunk), (*netFault)(nil)
			if up {
				k, f = p.take(len(chunk))
			}
			if _, err := dst.Write(chunk[:k]); err != nil {
				src.Close()
				return
			}
			chunk = chunk[k:]
			switch {
			case f == nil:
			case f.stall:
				stalled = true // read on, forward nothing
			default:
				src.Close()
				dst.Close()
				return
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

// injected returns the faults injected so far, the bytes forwarded from
// the requester, and the faults not reached.
func (p *proxy) injected() (cuts, stalls int, sent int64, left int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts, p.stalls, p.sent, len(p.faults)
}

// Where TestFlakyNetwork's faults fall in each primary provider's stream
// of requester bytes: after Connect (163 bytes) and well before the end of
// a fault-free run (about 11,800 bytes to the first part's provider and
// 3,900 to the second's), so that every fault is reached.
const flakyFrom = 256

var flakyTo = [2]int64{8 << 10, 3 << 10}

// TestFlakyNetwork trains through proxies that cut or black-hole the
// connection of each primary provider once, at a byte of its stream drawn
// from a seeded source: every run injects the same faults at the same
// bytes and finishes with the fault-free model.
func TestFlakyNetwork(t *testing.T) {
	const steps = 8
	want := reference(t, 8, 6, 10, 3, steps)
	for seed := int64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var plan [2]netFault // a fault for each primary
		for i := range plan {
			plan[i] = netFault{at: flakyFrom + rng.Int63n(flakyTo[i]-flakyFrom), stall: rng.Intn(3) == 0}
		}
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			ctx := context.Background()
			var execs []exec.Executor
			var proxies []*proxy
			for i := range 4 {
				_, c := inProcessProvider(t)
				var p *proxy
				if i < len(plan) {
					p = newProxy(t, c.Addr(), plan[i])
				} else {
					p = newProxy(t, c.Addr())
				}
				proxies = append(proxies, p)
				pc, err := transport.Connect(ctx, p.addr())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { pc.Close() })
				execs = append(execs, pc)
			}
			var mu sync.Mutex
			var replaced []string
			m := newMLP(8, 6, 10, 3)
			opts := append(guardOpts(), rookery.WithExecutors(execs[0], execs[1]), rookery.WithSpares(execs[2:]...),
				rookery.WithSnapshotEvery(2), rookery.WithCallTimeout(time.Second), rookery.WithGuardOptions(guard.WithMaxReplacements(6)),
				rookery.WithEvents(func(e guard.Event) {
					if e.Kind == guard.EventReplaced {
						mu.Lock()
						replaced = append(replaced, e.String())
						mu.Unlock()
					}
				}))
			tr, err := rookery.NewTrainer(ctx, m.g, m.loss, m.learn, inputsOf(m), opts...)
			if err != nil {
				t.Fatal(err)
			}
			for s := 0; s < steps; s++ {
				if _, err := tr.Step(ctx, m.feeds()); err != nil {
					t.Fatalf("step %d: %v", s, err)
				}
			}
			got := params(t, tr, m)
			if d := maxAbsDiff(got, want); d > 1e-9 {
				t.Errorf("parameters %g away from the fault-free run", d)
			}
			for i, p := range proxies {
				cuts, stalls, sent, left := p.injected()
				wantCuts, wantStalls := 0, 0
				if i < len(plan) {
					if plan[i].stall {
						wantStalls = 1
					} else {
						wantCuts = 1
					}
				}
				if cuts != wantCuts || stalls != wantStalls || left != 0 {
					t.Errorf("provider %d: %d cuts and %d stalls injected, %d not reached after %d bytes; want %d cuts and %d stalls (%+v)",
						i, cuts, stalls, left, sent, wantCuts, wantStalls, plan)
				}
			}
			mu.Lock()
			t.Logf("faults %+v: replacements %v", plan, replaced)
			mu.Unlock()
			// A black-holed connection would hold the trainer's Close of
			// the abandoned session until its timeout: cut them all first.
			for _, p := range proxies {
				p.close()
			}
			tr.Close()
		})
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

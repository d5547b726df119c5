// Command nat trains across providers behind NATs on a small internet
// emulated on this machine (internal/netlab), and prints what happens:
//
//	sudo go run ./examples/nat
//
// It builds, from Linux network namespaces, an internet holding two seed
// nodes (198.18.0.1 and 198.18.0.2), providers a and b behind cone NATs,
// provider c behind a symmetric NAT, and a requester behind its own cone
// NAT. Every process runs the real daemon (`rookery seed --p2p`,
// `rookery provider --p2p`) or this program's requester, in its own
// namespace. Then:
//
//  1. a requester waits until the seed nodes list all three providers,
//     which start meanwhile (join_seconds: from their start until they
//     are listed), leases them, and trains
//     the 784-256-10 MLP in two parts on the providers it reached
//     directly after hole punching, keeping the relayed one as a spare;
//  2. after the first epoch, seed 1 is stopped; training goes on, and
//     the model must equal one trained in process;
//  3. a new requester, with hole punching off, finds the providers
//     through seed 2 (seed 1 first in its list) and trains over relays;
//  4. two providers on plain TCP over loopback give the baseline.
//
// The last line is one JSON object: direct and relayed connections,
// same_model, join_seconds, and the step times of the three ways.
// Everything is torn down on any exit, Ctrl-C included. It needs root,
// iproute2 and nftables; examples/nat/run.sh checks them first.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rookery-ml/rookery/internal/netlab"
)

// roleEnv, set to "requester", makes this program (or its test binary)
// run as a requester: the orchestrator starts itself that way inside the
// requester's namespace.
const roleEnv = "ROOKERY_NAT_ROLE"

// publicNet is the emulated internet's range: libp2p must take it for
// public (it is reserved for benchmarking networks).
const publicNet = "198.18.0.0/16"

// Result is the run's summary, printed as the last line.
type Result struct {
	Direct         int               `json:"direct"`
	Relayed        int               `json:"relayed"`
	SameModel      bool              `json:"same_model"`
	JoinSeconds    float64           `json:"join_seconds"`
	StepMsDirect   float64           `json:"step_ms_direct"`
	StepMsRelayed  float64           `json:"step_ms_relayed"`
	StepMsTCP      float64           `json:"step_ms_tcp"`
	FoundViaSeed2  int               `json:"found_via_seed2"`
	Paths          map[string]string `json:"paths"`
	MaxDiff        float64           `json:"max_diff"`
	Seed1StoppedAt int               `json:"seed1_stopped_after_epoch"`
	// Reachability is what AutoNAT told each provider (the last
	// "p2p: reachability" line of its log).
	Reachability map[string]string `json:"reachability"`
}

func main() {
	if os.Getenv(roleEnv) == "requester" {
		if err := requesterMain(os.Args[1:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "requester:", err)
			os.Exit(1)
		}
		return
	}
	rookeryBin := flag.String("rookery", "", "the rookery binary (default: built from ./cmd/rookery)")
	timeout := flag.Duration("timeout", 5*time.Minute, "bound on the whole run")
	prefix := flag.String("prefix", "", "prefix of the network namespaces the run makes (default nat<pid>)")
	logs := flag.String("logs", "", "keep the daemons' and requesters' logs in this folder (default: a temporary one, removed)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nat:", err)
		os.Exit(1)
	}
	res, err := Run(ctx, Config{Rookery: *rookeryBin, Self: self, Out: os.Stdout, Prefix: *prefix, Logs: *logs})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nat:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

// Config configures Run.
type Config struct {
	Rookery string    // the rookery binary; built into a temporary folder when empty
	Self    string    // a binary that runs requesterMain when roleEnv is "requester"
	Out     io.Writer // where the story goes
	Prefix  string    // the lab's namespace prefix (default nat<pid>)
	// Logs, when set, is where the daemons' and requesters' logs are
	// written and kept; by default they go to a temporary folder that is
	// removed at the end.
	Logs string
}

// Run builds the lab, runs the story and tears everything down.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if err := netlab.Available(); err != nil {
		return nil, err
	}
	say := func(format string, a ...any) { fmt.Fprintf(cfg.Out, format+"\n", a...) }
	procs := &group{}
	dir := cfg.Logs
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rookery-nat-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// Say what the daemons logged, for the error's sake.
			for _, p := range procs.all() {
				fmt.Fprintf(cfg.Out, "--- %s (%s), last lines:\n%s\n", p.name, p.log, p.tail())
			}
		}
		if cfg.Logs == "" {
			os.RemoveAll(dir)
		} else {
			_ = os.Remove(filepath.Join(dir, "rookery")) // the binary built here, if any
		}
	}()
	if cfg.Rookery == "" {
		cfg.Rookery = filepath.Join(dir, "rookery")
		say("building ./cmd/rookery")
		build := exec.CommandContext(ctx, "go", "build", "-o", cfg.Rookery, "./cmd/rookery")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building rookery: %v\n%s", err, out)
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("nat%d", os.Getpid()%1000000)
	}
	lab, err := netlab.New(ctx, cfg.Prefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		procs.stopAll()
		if cerr := lab.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := lab.AddInternetAddr("198.18.0.2"); err != nil {
		return nil, err
	}
	homes := map[string]*netlab.Node{}
	for _, h := range []struct {
		name string
		nat  netlab.NAT
	}{{"a", netlab.Cone}, {"b", netlab.Cone}, {"c", netlab.Symmetric}, {"r", netlab.Cone}} {
		if homes[h.name], err = lab.AddHome(h.name, h.nat); err != nil {
			return nil, err
		}
		say("home %s: %s behind a %s NAT at %s", h.name, homes[h.name].IP, h.nat, homes[h.name].PublicIP)
	}
	inet := lab.Internet()

	// Both seed nodes sign leases with one key, so that providers trust
	// a lease from either.
	leaseKey := filepath.Join(dir, "lease.key")
	out, err := exec.CommandContext(ctx, cfg.Rookery, "seed", "--lease-key", leaseKey, "--print-lease-key").Output()
	if err != nil {
		return nil, fmt.Errorf("lease key: %w", err)
	}
	leasePub := strings.TrimSpace(string(out))

	var seedAddrs []string
	seeds := make([]*proc, 2)
	for i, ip := range []string{"198.18.0.1", "198.18.0.2"} {
		listen := fmt.Sprintf("/ip4/%s/tcp/4001,/ip4/%s/udp/4001/quic-v1", ip, ip)
		cmd := inet.Command(ctx, cfg.Rookery, "seed", "--p2p", listen, "--p2p-key", filepath.Join(dir, fmt.Sprintf("seed%d.key", i+1)),
			"--http", "", "--no-ledger", "--lease-key", leaseKey, "--p2p-public-net", publicNet, "--ttl", "10s")
		p, err := procs.start(fmt.Sprintf("seed%d", i+1), cmd, filepath.Join(dir, fmt.Sprintf("seed%d.log", i+1)))
		if err != nil {
			return nil, err
		}
		seeds[i] = p
		lines, err := p.until(ctx, "listening on ", 30*time.Second)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if a, ok := strings.CutPrefix(l, "p2p address "); ok && !strings.Contains(a, "/127.0.0.1/") {
				seedAddrs = append(seedAddrs, a)
			}
		}
		say("seed %d at %s", i+1, ip)
	}
	seedList := strings.Join(seedAddrs, ",")

	// 1 and 2: a requester waits for three providers; they start; it
	// leases all three, trains on those it reached directly, and seed 1
	// stops after the first epoch.
	req := cfg.requester(ctx, homes["r"], "--seeds", seedList, "--n", "3", "--parts", "2",
		"--pause", "--compare", "--public-net", publicNet)
	rp, err := procs.start("requester", req, filepath.Join(dir, "requester.log"))
	if err != nil {
		return nil, err
	}
	if _, err := rp.until(ctx, "waiting for ", 30*time.Second); err != nil {
		return nil, err
	}
	say("the requester waits for 3 providers")
	started := time.Now()
	provs := map[string]*proc{}
	for _, name := range []string{"a", "b", "c"} {
		cmd := homes[name].Command(ctx, cfg.Rookery, "provider", "--p2p", "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1",
			"--seed-node", seedList, "--seed-pubkey", leasePub, "--key", filepath.Join(dir, name+".key"), "--name", name,
			"--p2p-public-net", publicNet, "--bench", "100ms", "--gpu", "off")
		p, err := procs.start("provider "+name, cmd, filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		provs[name] = p
	}
	say("providers a, b, c started")
	lines, err := rp.until(ctx, "PAUSE", 3*time.Minute)
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		say("requester: %s", l)
	}
	say("stopping seed 1")
	if err := seeds[0].stop(); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(rp.stdin, "go\n"); err != nil {
		return nil, err
	}
	main, err := rp.result(ctx, 3*time.Minute, say)
	if err != nil {
		return nil, err
	}
	res = &Result{Paths: main.Paths, StepMsDirect: main.StepMs, Seed1StoppedAt: 1,
		JoinSeconds: float64(main.FoundUnixMs-started.UnixMilli()) / 1000}
	for _, p := range main.Paths {
		switch p {
		case "direct":
			res.Direct++
		case "relayed":
			res.Relayed++
		}
	}
	if main.SameModel != nil {
		res.SameModel, res.MaxDiff = *main.SameModel, main.MaxDiff
	}

	// 3: a new requester finds the providers through seed 2 and trains
	// over the relay.
	runRequester := func(name string, n *netlab.Node, log string, args ...string) (*requesterResult, error) {
		p, err := procs.start(name, cfg.requester(ctx, n, args...), filepath.Join(dir, log))
		if err != nil {
			return nil, err
		}
		return p.result(ctx, 3*time.Minute, say)
	}
	relayed, err := runRequester("requester 2", homes["r"], "requester2.log",
		"--seeds", seedList, "--n", "2", "--parts", "2", "--epochs", "1", "--no-holepunch", "--public-net", publicNet)
	if err != nil {
		return nil, err
	}
	res.FoundViaSeed2, res.StepMsRelayed = relayed.Found, relayed.StepMs

	// 4: plain TCP on the internet namespace's loopback.
	var tcp []string
	for i := range 2 {
		cmd := inet.Command(ctx, cfg.Rookery, "provider", "--listen", "127.0.0.1:0", "--key", filepath.Join(dir, fmt.Sprintf("tcp%d.key", i)),
			"--bench", "100ms", "--gpu", "off")
		p, err := procs.start(fmt.Sprintf("tcp provider %d", i+1), cmd, filepath.Join(dir, fmt.Sprintf("tcp%d.log", i)))
		if err != nil {
			return nil, err
		}
		lines, err := p.until(ctx, "listening on ", 30*time.Second)
		if err != nil {
			return nil, err
		}
		tcp = append(tcp, strings.TrimPrefix(lines[len(lines)-1], "listening on "))
	}
	base, err := runRequester("tcp requester", inet, "requester3.log", "--tcp", strings.Join(tcp, ","), "--parts", "2", "--epochs", "1")
	if err != nil {
		return nil, err
	}
	res.StepMsTCP = base.StepMs

	// AutoNAT: the seed nodes dial each provider back; none of them is
	// reachable. An answer takes the dial-back's timeout (15 s) and comes
	// when libp2p schedules a probe, so wait a little for those not in
	// yet, and report what there is ("" for no answer yet).
	res.Reachability = map[string]string{}
	for i := 0; i < 40; i++ {
		for name, p := range provs {
			res.Reachability[name] = p.reachability()
		}
		if res.Reachability["a"] != "" && res.Reachability["b"] != "" && res.Reachability["c"] != "" {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	say("AutoNAT told the providers: %v", res.Reachability)
	return res, nil
}

// reachability is the last reachability the process logged ("p2p:
// reachability" lines), or "".
func (p *proc) reachability() string {
	b, _ := os.ReadFile(p.log)
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "p2p: reachability") {
			if _, v, ok := strings.Cut(l, "reachability="); ok {
				last = strings.Fields(v)[0]
			}
		}
	}
	return last
}

// requester is the command that runs this program as a requester in n.
func (cfg Config) requester(ctx context.Context, n *netlab.Node, args ...string) *exec.Cmd {
	cmd := n.Command(ctx, cfg.Self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=requester")
	return cmd
}

// group holds the processes a run started, to stop them all at the end.
type group struct {
	mu    sync.Mutex
	procs []*proc
}

// proc is one child process: its stdout comes line by line, its stderr
// goes to a log file.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	log   string
}

func (g *group) start(name string, cmd *exec.Cmd, logFile string) (*proc, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = lf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 1024), done: make(chan struct{}), log: logFile}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody reads: drop
			}
		}
		_ = cmd.Wait()
		lf.Close()
		close(p.lines) // after every line, and after Wait set ProcessState
		close(p.done)
	}()
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
	return p, nil
}

// until returns the lines up to and including the first that starts
// with prefix, waiting at most d.
func (p *proc) until(ctx context.Context, prefix string, d time.Duration) ([]string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	var got []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return got, fmt.Errorf("%s exited before %q (%s):\n%s", p.name, prefix, p.cmd.ProcessState, p.tail())
			}
			got = append(got, l)
			if strings.HasPrefix(l, prefix) {
				return got, nil
			}
		case <-t.C:
			return got, fmt.Errorf("%s: no %q within %v:\n%s", p.name, prefix, d, p.tail())
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// result waits for the requester's RESULT line, telling its other lines.
func (p *proc) result(ctx context.Context, d time.Duration, say func(string, ...any)) (*requesterResult, error) {
	lines, err := p.until(ctx, "RESULT ", d)
	for _, l := range lines {
		if !strings.HasPrefix(l, "RESULT ") {
			say("%s: %s", p.name, l)
		}
	}
	if err != nil {
		return nil, err
	}
	var r requesterResult
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[len(lines)-1], "RESULT ")), &r); err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	say("%s: %s", p.name, strings.TrimPrefix(lines[len(lines)-1], "RESULT "))
	return &r, nil
}

// tail is the end of the process's log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// stop ends the process with SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

func (g *group) all() []*proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*proc(nil), g.procs...)
}

func (g *group) stopAll() {
	g.mu.Lock()
	procs := g.procs
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.stop()
		}()
	}
	wg.Wait()
}

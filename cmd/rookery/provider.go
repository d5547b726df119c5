package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
)

func init() {
	register(command{"provider", "serve this machine to requesters as a provider (gRPC), optionally registered with a seed node", providerMain})
}

const providerUsage = `usage: rookery provider [flags]

Serve this machine's CPU to requesters as a Rookery provider: a gRPC
server (rookery.v1 Provider, health, reflection) that runs the parts of
models that requesters send. It prints "listening on ADDR" once it
accepts connections, logs to stderr, and shuts down cleanly on SIGINT or
SIGTERM.

flags:
`

// providerMain runs `rookery provider` until ctx is done or a signal
// arrives.
func providerMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("provider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, providerUsage)
		fs.PrintDefaults()
	}
	d := transport.DefaultLimits
	var (
		listen     = fs.String("listen", "127.0.0.1:7070", "address to serve on (host:port; port 0 picks a free one)")
		advertise  = fs.String("advertise", "", "address requesters dial, as told to the seed node (default: the address served on)")
		seed       = fs.String("seed", "", "seed node to register with (host:port); none by default")
		name       = fs.String("name", defaultName(), "name reported to requesters and the seed node")
		metrics    = fs.String("metrics", "", "address for the Prometheus metrics endpoint (GET /metrics); none by default")
		maxMem     = sizeFlag(fs, "max-memory", d.MaxProviderBytes, "memory budget: encoded parts, resident tensors and tensors in flight of all sessions (e.g. 8GiB)")
		maxSessMem = sizeFlag(fs, "max-session-memory", d.MaxSessionBytes, "memory budget of one session")
		maxTensor  = sizeFlag(fs, "max-tensor", d.MaxTensorBytes, "largest tensor accepted")
		maxGraph   = sizeFlag(fs, "max-graph", d.MaxGraphBytes, "largest encoded part accepted")
		chunk      = sizeFlag(fs, "chunk", int64(d.ChunkBytes), "largest data payload of one frame")
		maxSess    = fs.Int("max-sessions", d.MaxSessions, "sessions open at once")
		maxNodes   = fs.Int("max-nodes", d.MaxNodes, "IR nodes of one part")
		idle       = fs.Duration("idle-timeout", d.IdleTimeout, "close sessions unused for this long")
		bench      = fs.Duration("bench", 200*time.Millisecond, "how long the start-up micro-benchmark runs (0 skips it)")
		grace      = fs.Duration("shutdown-timeout", 30*time.Second, "how long calls in flight may finish after SIGINT or SIGTERM before they are cancelled")
		tlsCert    = fs.String("tls-cert", "", "PEM certificate file: serve over TLS (with --tls-key)")
		tlsKey     = fs.String("tls-key", "", "PEM private key file of --tls-cert")
		seedCA     = fs.String("seed-ca", "", "PEM file of the CA that signed the seed node's certificate: reach the seed over TLS")
		logFormat  = fs.String("log-format", "text", "log format: text or json")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn or error")
		version    = fs.Bool("version", false, "print the version and exit")
	)
	if done, err := parseDaemonFlags(fs, args, version, stdout); done || err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if *chunk <= 0 || *chunk > 64<<20 {
		return fmt.Errorf("provider: --chunk %d must be in (0, 64MiB]", *chunk)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("provider: %w", err)
	}
	serverOpts, err := tlsServerOptions(*tlsCert, *tlsKey)
	if err != nil {
		lis.Close()
		return err
	}
	warnClearText(log, lis.Addr(), len(serverOpts) > 0)
	var seedOpts []transport.DialOption
	if *seedCA != "" {
		creds, err := credentials.NewClientTLSFromFile(*seedCA, "")
		if err != nil {
			lis.Close()
			return fmt.Errorf("--seed-ca: %w", err)
		}
		seedOpts = append(seedOpts, transport.WithTransportCredentials(creds))
	}
	srv := transport.NewServer(exec.NewCPU(),
		transport.WithServerOptions(serverOpts...),
		transport.WithName(*name),
		transport.WithLogger(log),
		transport.WithBenchmark(*bench),
		transport.WithLimits(transport.Limits{
			MaxSessions:      *maxSess,
			MaxNodes:         *maxNodes,
			MaxGraphBytes:    *maxGraph,
			MaxTensorBytes:   *maxTensor,
			MaxSessionBytes:  *maxSessMem,
			MaxProviderBytes: *maxMem,
			IdleTimeout:      *idle,
			ChunkBytes:       int(*chunk),
		}))
	addr := lis.Addr().String()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(lis); err != nil {
			errc <- fmt.Errorf("provider: serve: %w", err)
		}
	}()
	var ms *http.Server
	if *metrics != "" {
		mlis, err := net.Listen("tcp", *metrics)
		if err != nil {
			srv.Stop()
			wg.Wait()
			return fmt.Errorf("provider: metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		ms = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ms.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("provider: metrics: %w", err)
			}
		}()
		log.Info("metrics serving", "addr", mlis.Addr().String())
		fmt.Fprintf(stdout, "metrics on %s\n", mlis.Addr())
	}
	annCtx, annCancel := context.WithCancel(context.Background())
	if *seed != "" {
		adv := *advertise
		if adv == "" {
			adv = addr
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Announce(annCtx, *seed, adv, seedOpts...); err != nil {
				errc <- fmt.Errorf("provider: seed: %w", err)
			}
		}()
	}
	caps := srv.Capabilities()
	log.Info("provider ready", "addr", addr, "name", caps.Name, "version", caps.Version, "cpu", caps.CpuModel,
		"cores", caps.CpuCores, "memory_bytes", caps.MemoryBytes, "gflops", fmt.Sprintf("%.1f", caps.Gflops))
	fmt.Fprintf(stdout, "listening on %s\n", addr)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case runErr = <-errc:
		log.Error("stopping", "err", runErr)
	}
	annCancel() // deregisters from the seed node
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("calls cancelled at shutdown", "err", err)
	}
	if ms != nil {
		_ = ms.Shutdown(sctx)
	}
	wg.Wait()
	log.Info("provider stopped")
	return runErr
}

// tlsServerOptions loads a certificate and key for a TLS server; none
// given means clear text.
func tlsServerOptions(cert, key string) ([]grpc.ServerOption, error) {
	if cert == "" && key == "" {
		return nil, nil
	}
	if cert == "" || key == "" {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	creds, err := credentials.NewServerTLSFromFile(cert, key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return []grpc.ServerOption{grpc.Creds(creds)}, nil
}

// warnClearText logs a warning when a clear-text server listens beyond
// loopback.
func warnClearText(log *slog.Logger, addr net.Addr, tls bool) {
	if tcp, ok := addr.(*net.TCPAddr); ok && !tls && !tcp.IP.IsLoopback() {
		log.Warn("serving in clear text beyond loopback; use --tls-cert and --tls-key on untrusted networks", "addr", addr.String())
	}
}

func defaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "rookery-provider"
	}
	return h
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "rookery %s (%s %s/%s)\n", transport.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// newLogger returns a slog logger writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// byteSize is a flag value in bytes that reads 8GiB, 512MiB, 4KiB, 2G,
// 100M, 10k or a plain number.
type byteSize struct{ v *int64 }

func sizeFlag(fs *flag.FlagSet, name string, def int64, usage string) *int64 {
	v := def
	fs.Var(byteSize{&v}, name, usage)
	return &v
}

func (b byteSize) String() string {
	if b.v == nil {
		return "0"
	}
	return formatSize(*b.v)
}

func (b byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b.v = n
	return nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
}

func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("size %q: want a number of bytes such as 8GiB, 512MiB or 1048576", s)
	}
	return int64(f * float64(mult)), nil
}

func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

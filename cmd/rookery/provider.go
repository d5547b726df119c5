package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/p2p"
)

func init() {
	register(command{"provider", "serve this machine to requesters as a provider (gRPC), optionally registered with a seed node", providerMain})
}

const providerUsage = `usage: rookery provider [flags]

Serve this machine to requesters as a Rookery provider: a gRPC server
(rookery.v1 Provider, health, reflection) that runs the parts of models
that requesters send. It prints "listening on ADDR" once it accepts
connections, logs to stderr, and shuts down cleanly on SIGINT or SIGTERM.

Where parts run: on NVIDIA GPU 0 when the CUDA driver (libcuda.so.1) and
cuBLAS are found at start-up (parts holding an op the GPU executor cannot
lower run on the CPU, each one logged), otherwise on the CPU, with the
reason logged. --gpu off keeps everything on the CPU; --gpu require
refuses to start without a GPU.

Who gets in: with --seed-pubkey, only requesters holding a lease that the
seed node signed for this provider (seednode.Lease fetches them); with
--token-file, only callers with one of its bearer tokens or a client
certificate verified against --client-ca. A session belongs to the
requester that opened it. The key is given, never learnt from the seed
node: copy the line "lease key KEY" that the seed prints, or fetch
GET /v1/lease-key from its HTTP view over a channel you trust.

Who it is: an ed25519 identity key, kept in --key (created on the first
start, readable by its owner only). It signs the provider's
registration, heartbeats and deregistration with the seed node, and
answers the seed node's challenge at the advertised address before the
seed node lists it; only that key can renew, replace or remove the
entry. The public part is logged ("identity") and shown in the seed
node's listing.

Beyond loopback it serves TLS only (--tls-cert and --tls-key) unless
--insecure is given, and reaches the seed node over TLS only (--seed-ca).
When a requester's replicas sum their gradients in a ring between their
providers, this provider dials the next one: in clear text to loopback,
over TLS with --peer-ca (or in clear text with --insecure), through
libp2p with --p2p; where it cannot, the requester sums them itself.
The segments of a ring travel on the provider's own port, on one
connection to the next provider (secured like the gRPC service) rather
than on a gRPC stream per step, which costs less CPU per byte.

Behind NAT (a laptop, a home router): --p2p serves over libp2p instead
of TCP, with the identity key as its peer ID; connections are encrypted
and authenticated by libp2p (Noise or TLS 1.3), so it needs no
certificate. Give --seed-node the seed nodes' multiaddrs, as
"rookery seed --p2p" prints them ("p2p address ..."), comma-separated.
The provider holds a relay slot on every seed node and registers with
each, as /p2p/PEER-ID; requesters reach it directly where the NATs let
hole punching through, and through a seed node's relay where not.

  rookery provider --p2p default --seed-node /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...

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
		seedNode   = fs.String("seed-node", "", "seed node to register with (host:port; with --p2p, a comma-separated list of seed multiaddrs ending in /p2p/ID); none by default")
		p2pListen  = fs.String("p2p", "", "serve peer-to-peer over libp2p instead of TCP: comma-separated multiaddrs to listen on, or \"default\" (TCP and QUIC on all interfaces, port 0); reachable behind NAT through the seed nodes' relays and hole punching")
		publicNet  = fs.String("p2p-public-net", "", "with --p2p, comma-separated networks (CIDR) to take for public internet addresses, for emulated internets built from reserved ranges (198.18.0.0/15)")
		keyFile    = fs.String("key", defaultKeyFile(), "file of the provider's ed25519 identity key, created on the first start")
		name       = fs.String("name", defaultName(), "name reported to requesters and the seed node")
		metrics    = fs.String("metrics", "", "address for the Prometheus metrics endpoint (GET /metrics); none by default")
		maxMem     = sizeFlag(fs, "max-memory", d.MaxProviderBytes, "memory budget of all sessions: encoded parts, resident tensors, tensors in flight and the executor's estimated working memory (gradients, solver state, activations per micro-batch); a session that would exceed it is refused (e.g. 8GiB)")
		maxSessMem = sizeFlag(fs, "max-session-memory", d.MaxSessionBytes, "memory budget of one session")
		maxTensor  = sizeFlag(fs, "max-tensor", d.MaxTensorBytes, "largest tensor accepted")
		maxGraph   = sizeFlag(fs, "max-graph", d.MaxGraphBytes, "largest encoded part accepted")
		chunk      = sizeFlag(fs, "chunk", int64(d.ChunkBytes), "largest data payload of one frame")
		maxSess    = fs.Int("max-sessions", d.MaxSessions, "sessions open at once")
		maxPerID   = fs.Int("max-sessions-per-requester", 0, "sessions one requester (token or certificate identity; anonymous callers by host) may hold open at once; 0: a quarter of --max-sessions")
		maxNodes   = fs.Int("max-nodes", d.MaxNodes, "IR nodes of one part")
		idle       = fs.Duration("idle-timeout", d.IdleTimeout, "close sessions unused for this long")
		stall      = fs.Duration("stream-idle-timeout", d.StreamIdleTimeout, "cut a call whose requester sends no new tensor and less than 64KiB of data for this long, releasing the memory its headers reserved")
		unused     = fs.Duration("unused-timeout", d.UnusedTimeout, "close sessions that no call has used since they were opened after this long (at most --idle-timeout)")
		gpuMode    = fs.String("gpu", gpuAuto, "GPU use: auto (GPU 0 when the CUDA driver and cuBLAS are found, else the CPU), off, or require (refuse to start without one)")
		bench      = fs.Duration("bench", 200*time.Millisecond, "how long the start-up micro-benchmark runs (0 skips it)")
		grace      = fs.Duration("shutdown-timeout", 30*time.Second, "how long calls in flight may finish after SIGINT or SIGTERM before they are cancelled")
		tlsCert    = fs.String("tls-cert", "", "PEM certificate file: serve over TLS (with --tls-key)")
		tlsKey     = fs.String("tls-key", "", "PEM private key file of --tls-cert")
		seedCA     = fs.String("seed-ca", "", "PEM file of the CA that signed the seed node's certificate: reach the seed over TLS")
		seedToken  = fs.String("seed-token", "", "file holding the bearer token to present to the seed node")
		seedPub    = fs.String("seed-pubkey", "", "the seed node's lease key (a file, or the base64 text itself): serve only requesters with a lease it signed for this provider")
		tokenFile  = fs.String("token-file", "", "file of allowed bearer tokens, one a line: TOKEN [NAME]; callers need one (or a client certificate, with --client-ca)")
		clientCA   = fs.String("client-ca", "", "PEM file of the CA whose client certificates to require and verify (mTLS; needs --tls-cert)")
		insecure   = fs.Bool("insecure", false, "allow clear text beyond loopback, to requesters, to the seed node and to other providers (trusted networks only)")
		peerCA     = fs.String("peer-ca", "", "PEM file of the CA that signed other providers' certificates: reach them over TLS when replicas sum their gradients in a ring (with --tls-cert, presented as this provider's client certificate)")
		callTime   = fs.Duration("call-timeout", transport.DefaultCallTimeout, "cancel any one call that runs longer")
		logFormat  = fs.String("log-format", "text", "log format: text or json")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn or error")
		version    = fs.Bool("version", false, "print the version and exit")
		cpuProfile = fs.String("cpuprofile", "", "write a CPU profile of the provider, from start to exit, to this file (go tool pprof reads it)")
	)
	if done, err := parseDaemonFlags(fs, args, version, stdout); done || err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("provider: --cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("provider: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if *chunk <= 0 || *chunk > 64<<20 {
		return fmt.Errorf("provider: --chunk %d must be in (0, 64MiB]", *chunk)
	}
	creds, err := tlsServerCreds(*tlsCert, *tlsKey, *clientCA)
	if err != nil {
		return err
	}
	p2pMode := *p2pListen != ""
	if p2pMode && (creds != nil || *seedCA != "") {
		return usagef("--p2p connections are encrypted and authenticated by libp2p: drop --tls-cert, --tls-key, --client-ca and --seed-ca")
	}
	if !p2pMode {
		if err := transport.CheckListen(*listen, creds != nil, *insecure); err != nil {
			return err
		}
	}
	// How this provider reaches the other providers of a gradient ring.
	var peerOpts []transport.DialOption
	switch {
	case *peerCA != "" && p2pMode:
		return usagef("--p2p connections are encrypted and authenticated by libp2p: drop --peer-ca")
	case *peerCA != "":
		cfg, err := peerTLS(*peerCA, *tlsCert, *tlsKey)
		if err != nil {
			return err
		}
		peerOpts = append(peerOpts, transport.WithTransportCredentials(credentials.NewTLS(cfg)))
	case *insecure:
		peerOpts = append(peerOpts, transport.WithInsecure())
	}
	var seedOpts []transport.DialOption
	if *seedNode != "" && !p2pMode {
		if *seedCA == "" && !*insecure && !transport.IsLoopback(*seedNode) {
			return fmt.Errorf("%w: --seed-node %s is beyond loopback; give --seed-ca to reach it over TLS, or --insecure on a trusted network", transport.ErrInsecure, *seedNode)
		}
		if *insecure {
			seedOpts = append(seedOpts, transport.WithInsecure())
		}
	}
	if *seedCA != "" {
		creds, err := credentials.NewClientTLSFromFile(*seedCA, "")
		if err != nil {
			return fmt.Errorf("--seed-ca: %w", err)
		}
		seedOpts = append(seedOpts, transport.WithTransportCredentials(creds))
	}
	if *seedToken != "" {
		tok, err := readToken(*seedToken)
		if err != nil {
			return err
		}
		seedOpts = append(seedOpts, transport.WithToken(tok))
	}
	var authOpts []transport.ServerOption
	if *tokenFile != "" {
		ts, err := transport.LoadTokens(*tokenFile)
		if err != nil {
			return err
		}
		authOpts = append(authOpts, transport.WithTokens(ts))
	}
	var pub ed25519.PublicKey
	if *seedPub != "" {
		if pub, err = loadPublicKey(*seedPub); err != nil {
			return err
		}
	}
	identity, created, err := transport.LoadIdentity(*keyFile)
	if err != nil {
		return fmt.Errorf("provider: --key: %w", err)
	}
	log.Info("identity key", "identity", transport.EncodeIdentityKey(identity.Public().(ed25519.PublicKey)), "file", *keyFile, "created", created)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var (
		lis   net.Listener
		host  *p2p.Host
		seeds = []string{*seedNode}
		adv   = *advertise
	)
	if p2pMode {
		seeds = splitList(*seedNode)
		host, err = p2p.New(p2p.Config{Key: identity, Listen: p2pListenAddrs(*p2pListen), Seeds: seeds,
			Reserve: true, PublicNets: splitList(*publicNet), Logger: log})
		if err != nil {
			return fmt.Errorf("provider: %w", err)
		}
		defer host.Close()
		if lis, err = host.Listen(); err != nil {
			return fmt.Errorf("provider: %w", err)
		}
		adv = host.Address()
		seedOpts = append(seedOpts, transport.WithDialer(host.DialContext))
		peerOpts = append(peerOpts, transport.WithDialer(host.DialContext))
		// One registration per seed node, however many addresses it has.
		if seeds, err = p2p.PeerAddresses(seeds); err != nil {
			return fmt.Errorf("provider: --seed-node: %w", err)
		}
		log.Info("peer-to-peer", "address", adv, "listen", strings.Join(host.Addrs(), " "))
	} else {
		if lis, err = net.Listen("tcp", *listen); err != nil {
			return fmt.Errorf("provider: %w", err)
		}
		warnClearText(log, lis.Addr(), creds != nil)
		if adv == "" {
			adv = lis.Addr().String()
		}
	}
	if pub != nil {
		authOpts = append(authOpts, transport.WithLeaseKey(pub, adv))
		log.Info("serving leased requesters only", "seed_key", transport.EncodeLeasePublicKey(pub), "address", adv)
	} else if tcp, ok := lis.Addr().(*net.TCPAddr); (ok && !tcp.IP.IsLoopback()) || p2pMode {
		log.Warn("serving any requester that reaches this address: give --seed-pubkey to require leases from a seed node", "addr", lis.Addr().String())
	}
	opts := append([]transport.ServerOption{
		transport.WithPeerDialOptions(peerOpts...),
		transport.WithCallTimeout(*callTime),
		transport.WithName(*name),
		transport.WithIdentity(identity),
		transport.WithLogger(log),
		transport.WithBenchmark(*bench),
		transport.WithLimits(transport.Limits{
			MaxSessions:            *maxSess,
			MaxSessionsPerIdentity: *maxPerID,
			MaxNodes:               *maxNodes,
			MaxGraphBytes:          *maxGraph,
			MaxTensorBytes:         *maxTensor,
			MaxSessionBytes:        *maxSessMem,
			MaxProviderBytes:       *maxMem,
			IdleTimeout:            *idle,
			UnusedTimeout:          *unused,
			StreamIdleTimeout:      *stall,
			ChunkBytes:             int(*chunk),
		}),
	}, authOpts...)
	if creds != nil {
		opts = append(opts, transport.WithCredentials(creds))
	}
	executor, gpus, releaseGPU, err := chooseExecutor(*gpuMode, log)
	if err != nil {
		lis.Close()
		return err
	}
	defer releaseGPU()
	if len(gpus) > 0 {
		opts = append(opts, transport.WithGPUs(gpus...))
	}
	srv := transport.NewServer(executor, opts...)
	addr := lis.Addr().String()
	if p2pMode {
		addr = adv
	}
	var wg sync.WaitGroup
	errc := make(chan error, 3+len(seeds))
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
	if *seedNode != "" {
		// A provider registers with every seed node it knows, so that a
		// requester may ask any of them.
		for _, seed := range seeds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := srv.Announce(annCtx, seed, adv, seedOpts...); err != nil {
					errc <- fmt.Errorf("provider: seed %s: %w", seed, err)
				}
			}()
		}
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

// peerTLS is the TLS configuration a provider dials other providers with:
// their certificates verified against the CA in caFile, and this
// provider's own certificate presented where it has one (providers that
// require client certificates).
func peerTLS(caFile, cert, key string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--peer-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--peer-ca: no PEM certificate in %s", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != "" && key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// tlsServerOptions is tlsServerCreds as gRPC server options.
func tlsServerOptions(cert, key, clientCA string) ([]grpc.ServerOption, error) {
	creds, err := tlsServerCreds(cert, key, clientCA)
	if err != nil || creds == nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(creds)}, nil
}

// tlsServerCreds loads a certificate and key for a TLS server, and with
// clientCA requires client certificates signed by that CA (mTLS); none
// given means clear text (nil).
func tlsServerCreds(cert, key, clientCA string) (credentials.TransportCredentials, error) {
	if cert == "" && key == "" {
		if clientCA != "" {
			return nil, usagef("--client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	if cert == "" || key == "" {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		b, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--client-ca %s: no PEM certificate", clientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

// readToken reads a bearer token from file: its first non-blank line.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("token file %s is empty", file)
}

// loadPublicKey reads a lease public key: the text itself (base64), or a
// file holding it.
func loadPublicKey(s string) (ed25519.PublicKey, error) {
	if pub, err := transport.ParseLeasePublicKey(s); err == nil {
		return pub, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("--seed-pubkey: neither a base64 key nor a readable file: %w", err)
	}
	pub, err := transport.ParseLeasePublicKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("--seed-pubkey %s: %w", s, err)
	}
	return pub, nil
}

// warnClearText logs a warning when a clear-text server listens beyond
// loopback.
func warnClearText(log *slog.Logger, addr net.Addr, tls bool) {
	if tcp, ok := addr.(*net.TCPAddr); ok && !tls && !tcp.IP.IsLoopback() {
		log.Warn("serving in clear text beyond loopback; use --tls-cert and --tls-key on untrusted networks", "addr", addr.String())
	}
}

// defaultKeyFile is where a provider keeps its identity key unless told:
// in the user's configuration directory, else in the working directory.
func defaultKeyFile() string {
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "rookery", "provider.key")
	}
	return "rookery-provider.key"
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

package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/rookery-ml/rookery/ledger"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/p2p"
	"github.com/rookery-ml/rookery/transport/seednode"
)

func init() {
	register(command{"seed", "run a seed node: the registry where providers announce themselves and requesters find them", seedMain})
}

const seedUsage = `usage: rookery seed [flags]

Run a seed node: a registry where providers announce themselves and renew
their entry by heartbeat, and where requesters find them
(rookery.WithSeedNode, seednode.Lease). It serves gRPC (rookery.v1 Seed, health, reflection)
on --listen and an HTTP/JSON view (GET /v1/providers) on --http, prints
"listening on ADDR" and "http on ADDR" once ready, and shuts down cleanly
on SIGINT or SIGTERM.

With --lease-key it signs, for each provider a requester finds, a lease
naming the provider, the requester and an expiry (--lease-ttl); providers
started with --seed-pubkey serve only requesters holding one. The key is
created (mode 0600) when the file does not exist; its public half is
printed as "lease key KEY", served at GET /v1/lease-key, and printed
alone by --print-lease-key. With --token-file or --client-ca, providers
and requesters must authenticate, and leases name the requester's token
name or certificate name.

It keeps a ledger (--ledger; none with --no-ledger): receipts of work
co-signed by providers and requesters, and faults requesters caught,
in a hash-chained, append-only bbolt database. Requesters add to it
(Seed.Submit, seednode.Submit); the HTTP view serves it (GET /v1/ledger,
GET /v1/standing?key=KEY), and Find prefers providers in good standing
and leaves out, for --fault-cooldown, one with a fresh fault. At start
the whole ledger is verified: a ledger that was edited or corrupted
stops the seed node with an error naming the first bad entry.

Beyond loopback it serves TLS only (--tls-cert and --tls-key) unless
--insecure is given.

Peer-to-peer (--p2p LISTEN-MULTIADDRS): the seed node serves over libp2p
instead, with --p2p-key as its peer ID, and is then also a bootstrap
peer, a circuit relay (v2: at most 128 reservations, 16 relayed
connections per peer; no byte or time limit, since they carry training,
unless --relay-max-bytes or --relay-max-duration sets one) for
providers behind NAT, and an AutoNAT server that tells nodes whether
they are reachable. It prints "p2p address MULTIADDR" for each address;
give them to providers and requesters as --seed-node. Several seed nodes
can serve side by side: providers register with each, and a requester
asks them in turn until one answers. Give them one --lease-key so that
providers trust the leases of any.

flags:
`

// seedMain runs `rookery seed` until ctx is done or a signal arrives.
func seedMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, seedUsage)
		fs.PrintDefaults()
	}
	var (
		listen     = fs.String("listen", "127.0.0.1:7000", "gRPC address to serve on (port 0 picks a free one)")
		httpAddr   = fs.String("http", "127.0.0.1:7080", "HTTP address of the JSON view (GET /v1/providers, /v1/lease-key, /v1/ledger, /v1/standing), over TLS with --tls-cert; empty for none")
		ttl        = fs.Duration("ttl", 30*time.Second, "drop a provider that sends no heartbeat for this long")
		grace      = fs.Duration("shutdown-timeout", 10*time.Second, "how long calls in flight may finish after SIGINT or SIGTERM")
		tlsCert    = fs.String("tls-cert", "", "PEM certificate file: serve gRPC over TLS (with --tls-key)")
		tlsKey     = fs.String("tls-key", "", "PEM private key file of --tls-cert")
		clientCA   = fs.String("client-ca", "", "PEM file of the CA whose client certificates to require and verify (mTLS; needs --tls-cert)")
		tokenFile  = fs.String("token-file", "", "file of allowed bearer tokens, one a line: TOKEN [NAME]; callers need one (or a client certificate, with --client-ca)")
		leaseKey   = fs.String("lease-key", "", "file of the ed25519 key to sign leases with (created if absent); no leases without it")
		leaseTTL   = fs.Duration("lease-ttl", seednode.DefaultLeaseTTL, "how long a lease lets its requester open sessions")
		printKey   = fs.Bool("print-lease-key", false, "print the public key of --lease-key, as --seed-pubkey reads it, and exit")
		insecure   = fs.Bool("insecure", false, "allow clear text beyond loopback (trusted networks only)")
		p2pListen  = fs.String("p2p", "", "serve peer-to-peer over libp2p instead of TCP: comma-separated multiaddrs to listen on (e.g. /ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1); the seed node is then also a bootstrap peer, a circuit relay and an AutoNAT server, and prints \"p2p address MULTIADDR\" for providers' and requesters' --seed-node")
		p2pKey     = fs.String("p2p-key", "", "with --p2p, file of the seed node's ed25519 identity key, its peer ID (created if absent; default: a new key each start)")
		relayBytes = fs.Int64("relay-max-bytes", 0, "with --p2p, cut a relayed connection after it carried this many bytes each way (0: no limit; training over a relay moves the activations and gradients of every step)")
		relayTime  = fs.Duration("relay-max-duration", 0, "with --p2p, cut a relayed connection after this long (0: no limit)")
		publicNet  = fs.String("p2p-public-net", "", "with --p2p, comma-separated networks (CIDR) to take for public internet addresses, for emulated internets built from reserved ranges (198.18.0.0/15)")
		probeCA    = fs.String("probe-ca", "", "PEM file of the CA that signed the providers' certificates: reach them over TLS when checking a registration's address")
		probeTok   = fs.String("probe-token", "", "file holding the bearer token to present to providers (those with --token-file) when checking a registration's address")
		probeID    = fs.String("probe-identity", "", "the identity providers know --probe-token by (token:NAME), which the leases for the seed node's own speed measurements name; default: an anonymous requester")
		ledgerArg  = fs.String("ledger", "", "ledger database file (created if absent; default ledger.db in $XDG_DATA_HOME/rookery, else ~/.local/share/rookery)")
		noLedger   = fs.Bool("no-ledger", false, "keep no ledger: refuse Seed.Submit and rank providers by speed alone")
		cooldown   = fs.Duration("fault-cooldown", seednode.DefaultFaultCooldown, "leave a provider out of Find's answers for this long after a fault in the ledger (0: never)")
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
	if *ttl <= 0 {
		return fmt.Errorf("seed: --ttl %v must be positive", *ttl)
	}
	if *leaseTTL <= 0 {
		return fmt.Errorf("seed: --lease-ttl %v must be positive", *leaseTTL)
	}
	if *printKey && *leaseKey == "" {
		return usagef("--print-lease-key needs --lease-key")
	}
	opts := []seednode.Option{seednode.WithTTL(*ttl), seednode.WithLogger(log)}
	var pubText string
	if *leaseKey != "" {
		key, created, err := transport.LoadOrCreateLeaseKey(*leaseKey)
		if err != nil {
			return err
		}
		pubText = transport.EncodeLeasePublicKey(key.Public().(ed25519.PublicKey))
		if *printKey {
			fmt.Fprintln(stdout, pubText)
			return nil
		}
		if created {
			log.Info("created a lease key", "file", *leaseKey)
		}
		opts = append(opts, seednode.WithLeaseSigning(key, *leaseTTL))
	}
	// Before listing a provider, the seed node checks that its address
	// answers with the identity key that signed the registration.
	var probeOpts []transport.DialOption
	p2pMode := *p2pListen != ""
	var host *p2p.Host
	if p2pMode {
		if *tlsCert != "" || *clientCA != "" || *probeCA != "" {
			return usagef("--p2p connections are encrypted and authenticated by libp2p: drop --tls-cert, --tls-key, --client-ca and --probe-ca")
		}
		var key ed25519.PrivateKey
		if *p2pKey != "" {
			if key, _, err = transport.LoadIdentity(*p2pKey); err != nil {
				return fmt.Errorf("seed: --p2p-key: %w", err)
			}
		} else if _, key, err = ed25519.GenerateKey(nil); err != nil {
			return err
		}
		if *relayBytes < 0 || *relayTime < 0 {
			return usagef("--relay-max-bytes and --relay-max-duration must not be negative")
		}
		relay := p2p.DefaultRelay()
		if *relayBytes > 0 || *relayTime > 0 {
			// libp2p applies both bounds of a limit: what is not given is
			// as good as none.
			relay.Limit = &relayv2.RelayLimit{Data: *relayBytes, Duration: *relayTime}
			if *relayBytes == 0 {
				relay.Limit.Data = math.MaxInt64
			}
			if *relayTime == 0 {
				relay.Limit.Duration = 10 * 365 * 24 * time.Hour // what a deadline can hold
			}
		}
		host, err = p2p.New(p2p.Config{Key: key, Listen: p2pListenAddrs(*p2pListen), Seed: true, Relay: &relay,
			PublicNets: splitList(*publicNet), Logger: log})
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		defer host.Close()
		probeOpts = append(probeOpts, transport.WithDialer(host.DialContext))
	}
	if *insecure {
		probeOpts = append(probeOpts, transport.WithInsecure())
	}
	if *probeCA != "" {
		creds, err := credentials.NewClientTLSFromFile(*probeCA, "")
		if err != nil {
			return fmt.Errorf("--probe-ca: %w", err)
		}
		probeOpts = append(probeOpts, transport.WithTransportCredentials(creds))
	}
	if *probeTok != "" {
		tok, err := readToken(*probeTok)
		if err != nil {
			return err
		}
		probeOpts = append(probeOpts, transport.WithToken(tok))
	}
	// It also measures each provider's speed itself, in a session it
	// opens there, and ranks providers by that measurement.
	opts = append(opts, seednode.WithProber(seednode.DialProber(seednode.DefaultProbeTimeout, probeOpts...)),
		seednode.WithSpeedProbe(seednode.DialSpeedProbe(seednode.DefaultProbeTimeout, nil, probeOpts...)))
	if *probeID != "" {
		opts = append(opts, seednode.WithProbeRequester(*probeID))
	}
	if *tokenFile != "" {
		ts, err := transport.LoadTokens(*tokenFile)
		if err != nil {
			return err
		}
		opts = append(opts, seednode.WithTokens(ts))
	}
	serverOpts, err := tlsServerOptions(*tlsCert, *tlsKey, *clientCA)
	if err != nil {
		return err
	}
	if !p2pMode {
		if err := transport.CheckListen(*listen, len(serverOpts) > 0, *insecure); err != nil {
			return err
		}
	}
	if *httpAddr != "" {
		if err := transport.CheckListen(*httpAddr, len(serverOpts) > 0, *insecure); err != nil {
			return fmt.Errorf("--http: %w", err)
		}
	}
	if *noLedger && *ledgerArg != "" {
		return usagef("--no-ledger and --ledger %s", *ledgerArg)
	}
	if *cooldown < 0 {
		return usagef("--fault-cooldown %v must not be negative", *cooldown)
	}
	if !*noLedger {
		path := *ledgerArg
		if path == "" {
			if path, err = defaultLedgerFile(); err != nil {
				return err
			}
		}
		// Open verifies every entry and signature: a corrupt ledger is
		// refused here, before anything is served.
		store, err := ledger.Open(path)
		if errors.Is(err, ledger.ErrCorrupt) {
			return fmt.Errorf("seed: refusing to serve a corrupt ledger %s: %w", path, err)
		}
		if err != nil {
			return fmt.Errorf("seed: ledger %s: %w", path, err)
		}
		defer store.Close()
		seq, head := store.Head()
		log.Info("ledger verified", "file", path, "entries", seq, "head", fmt.Sprintf("%x", head))
		opts = append(opts, seednode.WithLedger(store), seednode.WithFaultCooldown(*cooldown))
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var lis net.Listener
	if p2pMode {
		if lis, err = host.Listen(); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	} else {
		if lis, err = net.Listen("tcp", *listen); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		warnClearText(log, lis.Addr(), len(serverOpts) > 0)
	}
	seed := seednode.NewRegistry(append(opts, seednode.WithServerOptions(serverOpts...))...)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := seed.Serve(lis); err != nil {
			errc <- fmt.Errorf("seed: serve: %w", err)
		}
	}()
	var hs *http.Server
	if *httpAddr != "" {
		hlis, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			seed.Stop()
			wg.Wait()
			return fmt.Errorf("seed: http: %w", err)
		}
		hs = &http.Server{Handler: seed.Handler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if *tlsCert != "" {
				err = hs.ServeTLS(hlis, *tlsCert, *tlsKey)
			} else {
				err = hs.Serve(hlis)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("seed: http: %w", err)
			}
		}()
		log.Info("http view serving", "addr", hlis.Addr().String(), "path", "/v1/providers")
		fmt.Fprintf(stdout, "http on %s\n", hlis.Addr())
	}
	if pubText != "" {
		log.Info("signing leases", "public_key", pubText, "lease_ttl", *leaseTTL)
		fmt.Fprintf(stdout, "lease key %s\n", pubText)
	}
	if p2pMode {
		for _, a := range host.Addrs() {
			fmt.Fprintf(stdout, "p2p address %s\n", a)
		}
		fmt.Fprintf(stdout, "listening on %s\n", host.Address())
	} else {
		fmt.Fprintf(stdout, "listening on %s\n", lis.Addr())
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case runErr = <-errc:
		log.Error("stopping", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	_ = seed.Shutdown(sctx)
	if hs != nil {
		_ = hs.Shutdown(sctx)
	}
	wg.Wait()
	log.Info("seed stopped")
	return runErr
}

// defaultLedgerFile is where a seed node keeps its ledger unless told:
// ledger.db in $XDG_DATA_HOME/rookery, else in ~/.local/share/rookery.
func defaultLedgerFile() (string, error) {
	if dir := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "rookery", "ledger.db"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("seed: no place for the ledger (%w): give --ledger or --no-ledger", err)
	}
	return filepath.Join(home, ".local", "share", "rookery", "ledger.db"), nil
}

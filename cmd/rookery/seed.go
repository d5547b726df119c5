package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rookery-ml/rookery/transport"
)

func init() {
	register(command{"seed", "run a seed node: the registry where providers announce themselves and requesters find them", seedMain})
}

const seedUsage = `usage: rookery seed [flags]

Run a seed node: a registry where providers announce themselves and renew
their entry by heartbeat, and where requesters find them
(rookery.WithSeed). It serves gRPC (rookery.v1 Seed, health, reflection)
on --listen and an HTTP/JSON view (GET /v1/providers) on --http, prints
"listening on ADDR" and "http on ADDR" once ready, and shuts down cleanly
on SIGINT or SIGTERM.

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
		listen    = fs.String("listen", "127.0.0.1:7000", "gRPC address to serve on (port 0 picks a free one)")
		httpAddr  = fs.String("http", "127.0.0.1:7080", "HTTP address of the JSON view (GET /v1/providers); empty for none")
		ttl       = fs.Duration("ttl", 30*time.Second, "drop a provider that sends no heartbeat for this long")
		grace     = fs.Duration("shutdown-timeout", 10*time.Second, "how long calls in flight may finish after SIGINT or SIGTERM")
		tlsCert   = fs.String("tls-cert", "", "PEM certificate file: serve gRPC over TLS (with --tls-key)")
		tlsKey    = fs.String("tls-key", "", "PEM private key file of --tls-cert")
		logFormat = fs.String("log-format", "text", "log format: text or json")
		logLevel  = fs.String("log-level", "info", "log level: debug, info, warn or error")
		version   = fs.Bool("version", false, "print the version and exit")
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
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	serverOpts, err := tlsServerOptions(*tlsCert, *tlsKey)
	if err != nil {
		lis.Close()
		return err
	}
	warnClearText(log, lis.Addr(), len(serverOpts) > 0)
	seed := transport.NewSeed(transport.WithTTL(*ttl), transport.WithSeedLogger(log), transport.WithSeedServerOptions(serverOpts...))
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
			if err := hs.Serve(hlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("seed: http: %w", err)
			}
		}()
		log.Info("http view serving", "addr", hlis.Addr().String(), "path", "/v1/providers")
		fmt.Fprintf(stdout, "http on %s\n", hlis.Addr())
	}
	fmt.Fprintf(stdout, "listening on %s\n", lis.Addr())
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

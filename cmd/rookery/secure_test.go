package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	mrand "math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery"
	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/graph"
	"github.com/rookery-ml/rookery/partition"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// pki is a certificate authority and the files of a server certificate
// and a client certificate it signed, made for one test in its temporary
// directory.
type pki struct {
	dir               string
	caFile            string
	certFile, keyFile string // server, for 127.0.0.1
	clientCert        tls.Certificate
	pool              *x509.CertPool
	caCert            *x509.Certificate
	caKey             *ecdsa.PrivateKey
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rookery test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.caCert)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	p.certFile, p.keyFile, _ = p.leaf(t, "server", x509.ExtKeyUsageServerAuth)
	_, _, p.clientCert = p.leaf(t, "alice-laptop", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	file := filepath.Join(p.dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func (p *pki) leaf(t *testing.T, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, cn+".pem", "CERTIFICATE", der), p.write(t, cn+".key", "EC PRIVATE KEY", kb),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// creds are the TLS credentials of a requester that trusts the CA, with
// the client certificate when client is set.
func (p *pki) creds(client bool) transport.DialOption {
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if client {
		cfg.Certificates = []tls.Certificate{p.clientCert}
	}
	return transport.WithTransportCredentials(credentials.NewTLS(cfg))
}

// syncBuffer is a bytes.Buffer that a daemon writes to while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCommand runs a daemon command in this process until the test ends,
// and returns the value of its first stdout line "WORD VALUE" for each
// word asked (e.g. "listening on" → the address).
func startCommand(t *testing.T, main func(context.Context, []string, io.Writer, io.Writer) error, args []string, words ...string) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() { done <- main(ctx, args, &out, &errOut) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%v: %v", args, err)
		}
	})
	vals := make([]string, len(words))
	for i := 0; i < 1000; i++ {
		missing := false
		for j, w := range words {
			for _, line := range strings.Split(out.String(), "\n") {
				if v, ok := strings.CutPrefix(line, w+" "); ok && vals[j] == "" {
					vals[j] = strings.TrimSpace(v)
				}
			}
			missing = missing || vals[j] == ""
		}
		if !missing {
			return vals
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%v ended: %v\n%s", args, err, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%v printed no %q:\n%s\n%s", args, words, out.String(), errOut.String())
	return nil
}

// classifier is a two-layer classifier with its data.
func classifier() (*gorgonia.ExprGraph, *gorgonia.Node, gorgonia.Nodes, gorgonia.Nodes, map[*gorgonia.Node]*tensor.Dense) {
	const batch, in, hidden, classes = 8, 12, 16, 3
	rng := mrand.New(mrand.NewSource(5))
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, in), gorgonia.WithName("x"))
	y := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(batch, classes), gorgonia.WithName("y"))
	randDense := func(scale float64, shape ...int) *tensor.Dense {
		d := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(shape...))
		for i := range d.Float64s() {
			d.Float64s()[i] = rng.NormFloat64() * scale
		}
		return d
	}
	w1 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(in, hidden), gorgonia.WithName("w1"), gorgonia.WithValue(randDense(0.3, in, hidden)))
	w2 := gorgonia.NewMatrix(g, tensor.Float64, gorgonia.WithShape(hidden, classes), gorgonia.WithName("w2"), gorgonia.WithValue(randDense(0.3, hidden, classes)))
	h := gorgonia.Must(gorgonia.Tanh(gorgonia.Must(gorgonia.Mul(x, w1))))
	logits := gorgonia.Must(gorgonia.Mul(h, w2))
	loss := gorgonia.Must(gorgonia.Neg(gorgonia.Must(gorgonia.Mean(gorgonia.Must(gorgonia.HadamardProd(
		gorgonia.Must(gorgonia.LogSoftMax(logits)), y))))))
	xs := randDense(1, batch, in)
	ys := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(batch, classes))
	for i := 0; i < batch; i++ {
		ys.Float64s()[i*classes+i%classes] = 1
	}
	return g, loss, gorgonia.Nodes{w1, w2}, gorgonia.Nodes{x, y}, map[*gorgonia.Node]*tensor.Dense{x: xs, y: ys}
}

// train runs three steps and returns the losses.
func train(t *testing.T, opts ...rookery.Option) []float64 {
	t.Helper()
	g, loss, learn, inputs, feeds := classifier()
	opts = append(opts, rookery.WithMicroBatches(2), rookery.WithSolver(exec.SGD(0.1, 0.9)),
		rookery.WithPartitionOptions(partition.WithMaxImbalance(1)))
	ctx := context.Background()
	tr, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var losses []float64
	for i := 0; i < 3; i++ {
		l, err := tr.Step(ctx, feeds)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, l)
	}
	return losses
}

func requireAuth(t *testing.T, what string, err error, sentinel error, reason transport.AuthReason) {
	t.Helper()
	var ae *transport.AuthError
	if !errors.Is(err, sentinel) || !errors.As(err, &ae) || ae.Reason != reason {
		t.Errorf("%s: got %v, want an *AuthError matching %v with reason %q", what, err, sentinel, reason)
	}
}

// TestSecureCluster starts a real seed node and two real providers in
// this process on loopback, with TLS, bearer tokens and leases, and shows
// who gets in: a requester with a token trains through the seed node and
// gets the same losses as in process; an expired lease, a lease signed by
// another key, another provider's lease, no token, and another
// requester's session are all refused with the right typed error.
func TestSecureCluster(t *testing.T) {
	ctx := context.Background()
	p := newPKI(t)
	const (
		alice = "alice-0123456789abcdef"
		bob   = "bob-0123456789abcdef00"
		prov  = "provider-0123456789abcd"
	)
	tokenFile := filepath.Join(p.dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte(alice+" alice\n"+bob+" bob\n"+prov+" providers\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	provToken := filepath.Join(p.dir, "provider-token")
	if err := os.WriteFile(provToken, []byte(prov+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	leaseKey := filepath.Join(p.dir, "lease.key")
	got := startCommand(t, seedMain, []string{"--listen", "127.0.0.1:0", "--http", "", "--tls-cert", p.certFile, "--tls-key", p.keyFile,
		"--token-file", tokenFile, "--lease-key", leaseKey, "--log-level", "warn", "--probe-ca", p.caFile, "--probe-token", provToken,
		"--probe-identity", "token:providers"}, "listening on", "lease key")
	seedAddr, pubText := got[0], got[1]
	key, created, err := transport.LoadOrCreateLeaseKey(leaseKey)
	if err != nil || created {
		t.Fatalf("the seed node did not save its lease key: %v", err)
	}
	if transport.EncodeLeasePublicKey(key.Public().(ed25519.PublicKey)) != pubText {
		t.Fatal("the seed node printed another public key than the one it saved")
	}
	fi, err := os.Stat(leaseKey)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lease key file: %v, %v", fi.Mode(), err)
	}
	var out syncBuffer
	if err := seedMain(ctx, []string{"--lease-key", leaseKey, "--print-lease-key"}, &out, io.Discard); err != nil || strings.TrimSpace(out.String()) != pubText {
		t.Fatalf("--print-lease-key: %q, %v", out.String(), err)
	}

	var provs []string
	for _, name := range []string{"p1", "p2"} {
		got := startCommand(t, providerMain, []string{"--listen", "127.0.0.1:0", "--name", name, "--bench", "0",
			"--tls-cert", p.certFile, "--tls-key", p.keyFile, "--token-file", tokenFile, "--seed-pubkey", pubText,
			"--seed-node", seedAddr, "--seed-ca", p.caFile, "--seed-token", provToken, "--log-level", "warn",
			"--key", filepath.Join(p.dir, name+".key")}, "listening on")
		provs = append(provs, got[0])
	}
	aliceOpts := []transport.DialOption{p.creds(false), transport.WithToken(alice)}
	var entries map[string]string // address → provider id
	for i := 0; ; i++ {
		es, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 2}, aliceOpts...)
		if err == nil {
			entries = map[string]string{es[0].Address: es[0].Id, es[1].Address: es[1].Id}
			// The seed node measured both itself, over TLS with its
			// token and a lease it signed for that identity.
			for _, e := range es {
				if e.MeasuredGflops <= 0 || e.UnverifiedSpeed {
					t.Fatalf("%s: measured %v GFLOP/s, unverified_speed %v; want a measurement", e.Address, e.MeasuredGflops, e.UnverifiedSpeed)
				}
			}
			break
		}
		if i == 500 {
			t.Fatalf("providers did not register: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A requester with a token trains through leased providers.
	want := train(t, rookery.WithParts(2))
	gotLoss := train(t, rookery.WithSeedNode(seedAddr, 2, aliceOpts...))
	for i := range want {
		if gotLoss[i] != want[i] {
			t.Errorf("step %d: loss %v on leased providers, %v in process", i, gotLoss[i], want[i])
		}
	}
	// Without a token the seed node hands out nothing.
	_, err = seednode.Find(ctx, seedAddr, seednode.Need{N: 1}, p.creds(false))
	requireAuth(t, "find without a token", err, transport.ErrUnauthenticated, transport.ReasonMissing)

	g, loss, learn, inputs, _ := classifier()
	// open starts a one-part trainer on the provider at addr.
	open := func(addr string, opts ...transport.DialOption) error {
		t.Helper()
		c, err := transport.Connect(ctx, addr, opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		tr, err := rookery.NewTrainer(ctx, g, loss, learn, inputs, rookery.WithExecutors(c))
		if err != nil {
			return err
		}
		return tr.Close()
	}
	lease := func(k ed25519.PrivateKey, addr string, issued, expires time.Time) string {
		t.Helper()
		tok, err := transport.SignLease(k, transport.Lease{ProviderID: entries[addr], ProviderAddress: addr, Requester: "token:alice", IssuedAt: issued, Expires: expires})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	foreign, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	with := func(opts ...transport.DialOption) []transport.DialOption {
		return append(append([]transport.DialOption{}, aliceOpts...), opts...)
	}
	err = open(provs[0], with(transport.WithLease(lease(key, provs[0], now.Add(-2*time.Hour), now.Add(-time.Hour))))...)
	requireAuth(t, "expired lease", err, transport.ErrUnauthenticated, transport.ReasonExpired)
	err = open(provs[0], with(transport.WithLease(lease(foreign, provs[0], now, now.Add(time.Hour))))...)
	requireAuth(t, "lease signed by another key", err, transport.ErrUnauthenticated, transport.ReasonSignature)
	err = open(provs[0], with(transport.WithLease(lease(key, provs[1], now, now.Add(time.Hour))))...)
	requireAuth(t, "another provider's lease", err, transport.ErrPermissionDenied, transport.ReasonOtherProvider)
	err = open(provs[0], with()...)
	requireAuth(t, "no lease", err, transport.ErrUnauthenticated, transport.ReasonMissing)
	err = open(provs[0], p.creds(false), transport.WithLease(lease(key, provs[0], now, now.Add(time.Hour))))
	requireAuth(t, "no token", err, transport.ErrUnauthenticated, transport.ReasonMissing)
	err = open(provs[0], p.creds(false), transport.WithToken(bob+"x"), transport.WithLease(lease(key, provs[0], now, now.Add(time.Hour))))
	requireAuth(t, "wrong token", err, transport.ErrUnauthenticated, transport.ReasonBadToken)

	// Another requester's session: alice opens one with her lease; bob,
	// with his own token and lease for the same provider, cannot use or
	// close it.
	aliceEntries, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 2}, aliceOpts...)
	if err != nil {
		t.Fatal(err)
	}
	bobOpts := []transport.DialOption{p.creds(false), transport.WithToken(bob)}
	bobEntries, err := seednode.Find(ctx, seedAddr, seednode.Need{N: 2}, bobOpts...)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := transport.Connect(ctx, aliceEntries[0].Address, with(transport.WithLease(aliceEntries[0].Lease))...)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	var bobLease string
	for _, e := range bobEntries {
		if e.Address == aliceEntries[0].Address {
			bobLease = e.Lease
		}
	}
	bc, err := transport.Connect(ctx, aliceEntries[0].Address, append(bobOpts, transport.WithLease(bobLease))...)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	s, err := ac.Open(ctx, onePart(t))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := transport.SessionID(s)
	w := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(2))
	requireAuth(t, "another requester's Put", bc.Attach(id, 0).Put(ctx, "x", w), transport.ErrPermissionDenied, transport.ReasonNotOwner)
	requireAuth(t, "another requester's Close", bc.Attach(id, 0).Close(), transport.ErrPermissionDenied, transport.ReasonNotOwner)
	if err := s.Put(ctx, "x", w); err != nil {
		t.Errorf("the owner's session after the attempts: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

// onePart is a spec of the whole classifier as one part.
func onePart(t *testing.T) exec.SessionSpec {
	t.Helper()
	g, loss, learn, inputs, _ := classifier()
	ir, err := graph.FromGorgonia(g, graph.Learnables(learn...), graph.WithValues())
	if err != nil {
		t.Fatal(err)
	}
	var all []int64
	for _, n := range ir.Nodes() {
		if n.Role == graph.RoleOp || n.Role == graph.RoleLearnable {
			all = append(all, n.ID)
		}
	}
	lay, err := exec.NewLayout(ir, [][]int64{all}, int64(loss.ID()), []int64{int64(inputs[0].ID()), int64(inputs[1].ID())})
	if err != nil {
		t.Fatal(err)
	}
	spec := lay.Specs[0]
	spec.Solver = exec.SGD(0.1, 0)
	return spec
}

// TestClientCA: a provider with --client-ca serves only requesters with a
// client certificate signed by that CA.
func TestClientCA(t *testing.T) {
	p := newPKI(t)
	addr := startCommand(t, providerMain, []string{"--listen", "127.0.0.1:0", "--bench", "0", "--log-level", "warn",
		"--tls-cert", p.certFile, "--tls-key", p.keyFile, "--client-ca", p.caFile}, "listening on")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Connect(ctx, addr, p.creds(true))
	if err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if _, err := c.Open(ctx, onePart(t)); err != nil {
		t.Errorf("open with a client certificate: %v", err)
	}
	c.Close()
	short, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if c, err := transport.Connect(short, addr, p.creds(false)); err == nil {
		c.Close()
		t.Error("a requester without a client certificate connected")
	}
}

// TestRefuseClearText: the daemons refuse to serve, and the provider to
// reach its seed node, in clear text beyond loopback without --insecure,
// before they listen on or dial anything.
func TestRefuseClearText(t *testing.T) {
	tests := []struct {
		cmd  func(context.Context, []string, io.Writer, io.Writer) error
		args []string
		want string
	}{
		{providerMain, []string{"--listen", "0.0.0.0:0"}, "--tls-cert and --tls-key"},
		{providerMain, []string{"--listen", "[::]:0"}, "--insecure"},
		{providerMain, []string{"--listen", ":7070"}, "refusing to serve"},
		{providerMain, []string{"--listen", "127.0.0.1:0", "--seed-node", "192.0.2.1:7000"}, "--seed-ca"},
		{seedMain, []string{"--listen", "0.0.0.0:0"}, "--tls-cert and --tls-key"},
		{seedMain, []string{"--listen", "[::]:0", "--http", ""}, "refusing to serve"},
		{seedMain, []string{"--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"}, "--http"},
	}
	for _, tc := range tests {
		err := tc.cmd(context.Background(), tc.args, io.Discard, io.Discard)
		if !errors.Is(err, transport.ErrInsecure) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want ErrInsecure mentioning %q", tc.args, err, tc.want)
		}
	}
	code, _, errOut := runArgs("provider", "--client-ca", "ca.pem")
	if code != 2 || !strings.Contains(errOut, "--client-ca needs --tls-cert") {
		t.Errorf("--client-ca without TLS: exit %d, %s", code, errOut)
	}
	code, _, errOut = runArgs("seed", "--print-lease-key")
	if code != 2 || !strings.Contains(errOut, "needs --lease-key") {
		t.Errorf("--print-lease-key without a key: exit %d, %s", code, errOut)
	}
}

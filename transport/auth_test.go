package transport_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/test/bufconn"
	"gorgonia.org/tensor"

	"github.com/rookery-ml/rookery/exec"
	"github.com/rookery-ml/rookery/transport"
	"github.com/rookery-ml/rookery/transport/seednode"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
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
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a certificate for 127.0.0.1 with common name cn, usable by
// a server and a client.
func (ca *testCA) leaf(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serve starts srv on lis and stops it when the test ends.
func serve(t *testing.T, srv *transport.Server, lis net.Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
}

// bufDialer starts srv on an in-memory listener and returns a function
// that connects clients to it.
func bufDialer(t *testing.T, srv *transport.Server) func(opts ...transport.DialOption) (*transport.Client, error) {
	t.Helper()
	lis := bufconn.Listen(4 << 20)
	serve(t, srv, lis)
	return func(opts ...transport.DialOption) (*transport.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		opts = append([]transport.DialOption{transport.WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		})}, opts...)
		c, err := transport.Connect(ctx, "bufnet", opts...)
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
}

func requireAuth(t *testing.T, err error, sentinel error, reason transport.AuthReason) {
	t.Helper()
	var ae *transport.AuthError
	if !errors.Is(err, sentinel) || !errors.As(err, &ae) {
		t.Fatalf("got %v, want an *AuthError matching %v", err, sentinel)
	}
	if ae.Reason != reason {
		t.Fatalf("got reason %q (%v), want %q", ae.Reason, err, reason)
	}
}

func tokens(t *testing.T, text string) *transport.TokenSet {
	t.Helper()
	ts, err := transport.ParseTokens(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

const (
	aliceToken = "alice-0123456789abcdef"
	bobToken   = "bob-0123456789abcdef00"
)

func TestParseTokens(t *testing.T) {
	ts := tokens(t, "# requesters\n"+aliceToken+" alice\n\n"+bobToken+"\n")
	if name, ok := ts.Lookup(aliceToken); !ok || name != "alice" {
		t.Errorf("alice: got %q %v", name, ok)
	}
	if name, ok := ts.Lookup(bobToken); !ok || !strings.HasPrefix(name, "token-") || len(name) != len("token-")+12 {
		t.Errorf("unnamed token: got %q %v", name, ok)
	}
	for _, bad := range []string{aliceToken[:len(aliceToken)-1], "", aliceToken + "x", "alice"} {
		if name, ok := ts.Lookup(bad); ok {
			t.Errorf("Lookup(%q) = %q, true", bad, name)
		}
	}
	for _, text := range []string{"", "# only a comment\n", "short\n", aliceToken + " alice extra\n"} {
		if _, err := transport.ParseTokens(strings.NewReader(text)); err == nil {
			t.Errorf("ParseTokens(%q) accepted", text)
		}
	}
}

// TestTokens: a provider with a token file refuses calls without a token
// or with a wrong one, and serves those with an allowed one.
func TestTokens(t *testing.T) {
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	dial := bufDialer(t, transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithTokens(tokens(t, aliceToken+" alice\n"))))
	_, err := dial()
	requireAuth(t, err, transport.ErrUnauthenticated, transport.ReasonMissing)
	_, err = dial(transport.WithToken(bobToken))
	requireAuth(t, err, transport.ErrUnauthenticated, transport.ReasonBadToken)
	c, err := dial(transport.WithToken(aliceToken))
	if err != nil {
		t.Fatal(err)
	}
	wantLoss, wantP := m.train(t, []exec.Executor{exec.NewCPU(), exec.NewCPU()}, 2, 2, exec.SGD(0.1, 0.9))
	gotLoss, gotP := m.train(t, []exec.Executor{c, c}, 2, 2, exec.SGD(0.1, 0.9))
	requireSameTraining(t, wantLoss, gotLoss, wantP, gotP)
}

// TestSessionOwnership: a session belongs to the identity that opened it;
// another requester can neither use nor close it, whatever its id.
func TestSessionOwnership(t *testing.T) {
	ctx := context.Background()
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithTokens(tokens(t, aliceToken+" alice\n"+bobToken+" bob\n")))
	dial := bufDialer(t, srv)
	alice, err := dial(transport.WithToken(aliceToken))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := dial(transport.WithToken(bobToken))
	if err != nil {
		t.Fatal(err)
	}
	s, err := openFirstPart(t, alice, m)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := transport.SessionID(s)
	if !ok || len(id) != 32 {
		t.Fatalf("session id %q, %v: want 128 random bits in hex", id, ok)
	}
	stolen := bob.Attach(id, 0)
	w := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(4))
	requireAuth(t, stolen.Put(ctx, "x", w), transport.ErrPermissionDenied, transport.ReasonNotOwner)
	_, err = stolen.Get(ctx, "x")
	requireAuth(t, err, transport.ErrPermissionDenied, transport.ReasonNotOwner)
	_, err = stolen.Forward(ctx, 0, map[int64]*tensor.Dense{m.data[0]: m.feeds[m.data[0]]})
	requireAuth(t, err, transport.ErrPermissionDenied, transport.ReasonNotOwner)
	_, err = stolen.Backward(ctx, 0, nil)
	requireAuth(t, err, transport.ErrPermissionDenied, transport.ReasonNotOwner)
	requireAuth(t, stolen.Step(ctx), transport.ErrPermissionDenied, transport.ReasonNotOwner)
	requireAuth(t, stolen.Close(), transport.ErrPermissionDenied, transport.ReasonNotOwner)
	if srv.Sessions() != 1 {
		t.Fatalf("%d sessions after another requester's Close, want 1", srv.Sessions())
	}
	// The owner, even over another connection, still has it.
	again, err := dial(transport.WithToken(aliceToken))
	if err != nil {
		t.Fatal(err)
	}
	mine := again.Attach(id, 0)
	if err := mine.Put(ctx, "x", w); err != nil {
		t.Fatal(err)
	}
	if err := mine.Close(); err != nil {
		t.Fatal(err)
	}
	if srv.Sessions() != 0 {
		t.Fatalf("%d sessions after the owner's Close", srv.Sessions())
	}
}

// TestClientCertificates: with mTLS, a client's identity is its
// certificate's common name; sessions belong to it, and a client without
// a certificate from the CA does not get in.
func TestClientCertificates(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t)
	srvCreds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "provider")}, ClientCAs: ca.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := transport.NewServer(exec.NewCPU(), transport.WithBenchmark(0), transport.WithServerOptions(grpc.Creds(srvCreds)),
		transport.WithTokens(tokens(t, aliceToken+" alice\n")))
	serve(t, srv, lis)
	dial := func(cn string) (*transport.Client, error) {
		cfg := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
		if cn != "" {
			cfg.Certificates = []tls.Certificate{ca.leaf(t, cn)}
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := transport.Connect(cctx, lis.Addr().String(), transport.WithTransportCredentials(credentials.NewTLS(cfg)))
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	if _, err := dial(""); err == nil {
		t.Fatal("a client without a certificate connected")
	}
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	carol, err := dial("carol")
	if err != nil {
		t.Fatal(err)
	}
	dave, err := dial("dave")
	if err != nil {
		t.Fatal(err)
	}
	s, err := openFirstPart(t, carol, m)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := transport.SessionID(s)
	w := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(4))
	requireAuth(t, dave.Attach(id, 0).Put(ctx, "x", w), transport.ErrPermissionDenied, transport.ReasonNotOwner)
	if err := carol.Attach(id, 0).Put(ctx, "x", w); err != nil {
		t.Fatal(err)
	}
}

// leaseServer starts a provider on loopback that requires leases signed
// with pub and returns it with its address.
func leaseServer(t *testing.T, pub ed25519.PublicKey, opts ...transport.ServerOption) (*transport.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	srv := transport.NewServer(exec.NewCPU(), append([]transport.ServerOption{transport.WithBenchmark(0), transport.WithLeaseKey(pub, addr)}, opts...)...)
	serve(t, srv, lis)
	return srv, addr
}

// TestLeases: a provider that requires leases opens a session only for a
// lease signed by its seed node's key, naming it, and valid now; later
// calls need a lease naming the session's owner.
func TestLeases(t *testing.T) {
	ctx := context.Background()
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	_, addr := leaseServer(t, key.Public().(ed25519.PublicKey))
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	now := time.Now()
	lease := func(k ed25519.PrivateKey, l transport.Lease) string {
		t.Helper()
		if l.ProviderAddress == "" {
			l.ProviderAddress = addr
		}
		if l.Requester == "" {
			l.Requester = "anon:r1"
		}
		if l.IssuedAt.IsZero() {
			l.IssuedAt, l.Expires = now, now.Add(time.Hour)
		}
		tok, err := transport.SignLease(k, l)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	open := func(opts ...transport.DialOption) (exec.Session, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := transport.Connect(cctx, addr, opts...)
		if err != nil {
			t.Fatal(err) // Describe needs no lease
		}
		t.Cleanup(func() { c.Close() })
		return openFirstPart(t, c, m)
	}
	tests := []struct {
		name     string
		opts     []transport.DialOption
		sentinel error
		reason   transport.AuthReason
	}{
		{"no lease", nil, transport.ErrUnauthenticated, transport.ReasonMissing},
		{"malformed", []transport.DialOption{transport.WithLease("v1.bm90IGEgbGVhc2U")}, transport.ErrUnauthenticated, transport.ReasonMalformed},
		{"unknown version", []transport.DialOption{transport.WithLease("v2." + strings.TrimPrefix(lease(key, transport.Lease{}), "v1."))}, transport.ErrUnauthenticated, transport.ReasonMalformed},
		{"foreign key", []transport.DialOption{transport.WithLease(lease(foreign, transport.Lease{}))}, transport.ErrUnauthenticated, transport.ReasonSignature},
		{"expired", []transport.DialOption{transport.WithLease(lease(key, transport.Lease{IssuedAt: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}))}, transport.ErrUnauthenticated, transport.ReasonExpired},
		{"not yet valid", []transport.DialOption{transport.WithLease(lease(key, transport.Lease{IssuedAt: now.Add(time.Hour), Expires: now.Add(2 * time.Hour)}))}, transport.ErrUnauthenticated, transport.ReasonNotYetValid},
		{"other provider", []transport.DialOption{transport.WithLease(lease(key, transport.Lease{ProviderAddress: "127.0.0.1:1"}))}, transport.ErrPermissionDenied, transport.ReasonOtherProvider},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := open(tc.opts...)
			requireAuth(t, err, tc.sentinel, tc.reason)
		})
	}
	// Within the clock skew a lease is still good; a valid lease trains.
	s, err := open(transport.WithLease(lease(key, transport.Lease{IssuedAt: now.Add(-time.Hour), Expires: now.Add(-transport.LeaseSkew / 2)})))
	if err != nil {
		t.Fatalf("a lease within the skew: %v", err)
	}
	id, _ := transport.SessionID(s)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	other, err := transport.Connect(cctx, addr, transport.WithLease(lease(key, transport.Lease{Requester: "anon:r2"})))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(4))
	requireAuth(t, other.Attach(id, 0).Put(ctx, "x", w), transport.ErrPermissionDenied, transport.ReasonNotOwner)
	if err := s.Put(ctx, "x", w); err != nil {
		t.Fatalf("the owner's Put with its (now expired) lease: %v", err)
	}
}

// TestSeedLeases: a seed node that signs leases hands one out with every
// provider, naming it and the requester; providers announced to it accept
// them, and a lease for one provider does not open a session on another.
func TestSeedLeases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := transport.GenerateLeaseKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	seedLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The seed node checks each provider's address with a Describe call,
	// which these providers answer only for a caller they know.
	seed := seednode.NewRegistry(seednode.WithLeaseSigning(key, time.Minute), seednode.WithTokens(tokens(t, aliceToken+" alice\n")),
		seednode.WithProber(seednode.DialProber(seednode.DefaultProbeTimeout, transport.WithToken(aliceToken))))
	seedDone := make(chan error, 1)
	go func() { seedDone <- seed.Serve(seedLis) }()
	defer func() {
		seed.Stop()
		<-seedDone
	}()
	if !pub.Equal(seed.LeasePublicKey()) {
		t.Fatal("LeasePublicKey is not the signing key's")
	}
	annCtx, annCancel := context.WithCancel(ctx)
	var anns []chan error
	defer func() {
		annCancel()
		for _, a := range anns {
			<-a
		}
	}()
	var addrs []string
	for range 2 {
		// The providers know alice by the same token as the seed node,
		// so that a lease issued to her opens sessions for her alone.
		srv, addr := leaseServer(t, pub, transport.WithTokens(tokens(t, aliceToken+" alice\n")))
		addrs = append(addrs, addr)
		done := make(chan error, 1)
		anns = append(anns, done)
		go func() { done <- srv.Announce(annCtx, seedLis.Addr().String(), addr, transport.WithToken(aliceToken)) }()
	}
	var entries []*rookeryInfo
	for i := 0; ; i++ {
		es, err := seednode.Find(ctx, seedLis.Addr().String(), seednode.Need{N: 2}, transport.WithToken(aliceToken))
		if err == nil {
			entries = nil
			for _, e := range es {
				entries = append(entries, &rookeryInfo{id: e.Id, addr: e.Address, lease: e.Lease})
			}
			break
		}
		if i == 500 {
			t.Fatalf("providers did not register: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = seednode.Find(ctx, seedLis.Addr().String(), seednode.Need{N: 2})
	requireAuth(t, err, transport.ErrUnauthenticated, transport.ReasonMissing)
	m := newMLP(t, tensor.Float64, 8, 20, 16, 4)
	for i, e := range entries {
		l, err := transport.ParseLease(e.lease, pub)
		if err != nil {
			t.Fatal(err)
		}
		if l.ProviderID != e.id || l.ProviderAddress != e.addr || l.Requester != "token:alice" || l.CheckTime(time.Now()) != nil {
			t.Errorf("lease %+v for entry %s at %s", l, e.id, e.addr)
		}
		// Its own lease opens a session; the other provider's does not.
		c, err := transport.Connect(ctx, e.addr, transport.WithToken(aliceToken), transport.WithLease(e.lease))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := openFirstPart(t, c, m); err != nil {
			t.Errorf("provider %d with its lease: %v", i, err)
		}
		c.Close()
		c, err = transport.Connect(ctx, e.addr, transport.WithToken(aliceToken), transport.WithLease(entries[1-i].lease))
		if err != nil {
			t.Fatal(err)
		}
		_, err = openFirstPart(t, c, m)
		requireAuth(t, err, transport.ErrPermissionDenied, transport.ReasonOtherProvider)
		c.Close()
	}
}

type rookeryInfo struct{ id, addr, lease string }

func TestLeaseKeyFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lease.key")
	k1, created, err := transport.LoadOrCreateLeaseKey(file)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := transport.LoadOrCreateLeaseKey(file)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("load: same key %v, created %v, %v", k1.Equal(k2), created, err)
	}
	pub := k1.Public().(ed25519.PublicKey)
	back, err := transport.ParseLeasePublicKey(" " + transport.EncodeLeasePublicKey(pub) + "\n")
	if err != nil || !back.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := transport.ParseLeasePublicKey("AAAA"); err == nil {
		t.Error("a 3-byte public key parsed")
	}
	if err := os.WriteFile(file, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := transport.LoadOrCreateLeaseKey(file); err == nil {
		t.Error("a corrupt key file loaded")
	}
}

// TestInsecureRefused: clear text beyond loopback is refused on both
// sides unless asked for, and nothing is dialled to find that out.
func TestInsecureRefused(t *testing.T) {
	for _, addr := range []string{"192.0.2.1:7070", "[2001:db8::1]:7070", "provider.example:7070"} {
		_, err := transport.Connect(context.Background(), addr)
		if !errors.Is(err, transport.ErrInsecure) || !strings.Contains(err.Error(), "WithTransportCredentials") {
			t.Errorf("Connect(%s): got %v, want ErrInsecure saying how to fix it", addr, err)
		}
	}
	for _, tc := range []struct {
		addr          string
		tls, insecure bool
		ok            bool
	}{
		{"127.0.0.1:0", false, false, true},
		{"localhost:7070", false, false, true},
		{"[::1]:0", false, false, true},
		{"0.0.0.0:0", false, false, false},
		{"[::]:0", false, false, false},
		{":7070", false, false, false},
		{"0.0.0.0:0", true, false, true},
		{"0.0.0.0:0", false, true, true},
	} {
		err := transport.CheckListen(tc.addr, tc.tls, tc.insecure)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, transport.ErrInsecure)) {
			t.Errorf("CheckListen(%q, tls %v, insecure %v) = %v", tc.addr, tc.tls, tc.insecure, err)
		}
	}
}

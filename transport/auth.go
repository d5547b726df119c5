package transport

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Authentication.
//
// A caller proves who it is with a bearer token ("authorization: Bearer
// <token>" in the call's metadata, checked against a TokenSet) or with a
// client certificate that the server's TLS configuration verified (mTLS).
// Its identity is "token:NAME" for a token (NAME from the token file) or
// "cert:NAME" for a certificate (its subject common name, else its first
// subject alternative name). A server with neither tokens nor verified
// client certificates treats every caller as anonymous.

// MaxTokenBytes bounds the length of a bearer token a server reads.
const MaxTokenBytes = 1024

// TokenSet is a set of allowed bearer tokens, each with the identity it
// stands for. Lookups compare in constant time.
type TokenSet struct {
	digests [][sha256.Size]byte
	names   []string
}

// ParseTokens reads a token file: one token a line, optionally followed by
// white space and the identity it stands for; blank lines and lines
// starting with # are skipped. A token without a name stands for
// "token-" and the first 12 hex digits of its SHA-256.
func ParseTokens(r io.Reader) (*TokenSet, error) {
	ts := &TokenSet{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) > 2 {
			return nil, fmt.Errorf("transport: token file line %d: want TOKEN [NAME]", line)
		}
		if len(f[0]) < 16 || len(f[0]) > MaxTokenBytes {
			return nil, fmt.Errorf("transport: token file line %d: a token must have 16 to %d characters", line, MaxTokenBytes)
		}
		d := sha256.Sum256([]byte(f[0]))
		name := "token-" + hex.EncodeToString(d[:6])
		if len(f) == 2 {
			name = f[1]
		}
		ts.digests = append(ts.digests, d)
		ts.names = append(ts.names, name)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("transport: token file: %w", err)
	}
	if len(ts.digests) == 0 {
		return nil, fmt.Errorf("transport: token file holds no token")
	}
	return ts, nil
}

// LoadTokens reads a token file (see ParseTokens).
func LoadTokens(file string) (*TokenSet, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("transport: token file: %w", err)
	}
	defer f.Close()
	return ParseTokens(f)
}

// Lookup returns the identity a token stands for. It compares the token's
// digest with every allowed one, so its time does not depend on which
// token matches or how much of it does.
func (ts *TokenSet) Lookup(token string) (name string, ok bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range ts.digests {
		if subtle.ConstantTimeCompare(d[:], ts.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return ts.names[found], true
}

// credentialsMD are the credentials a call's metadata carries.
type credentialsMD struct {
	bearer string
	lease  string
	proof  string // the value of LeaseProofHeader
}

// parseAuthorization reads the values of a call's "authorization"
// metadata: at most one "Bearer <token>" and one "Lease <token>".
func parseAuthorization(vals []string) (credentialsMD, error) {
	var c credentialsMD
	if len(vals) > 2 {
		return c, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("%d authorization values", len(vals))}
	}
	for _, v := range vals {
		if len(v) > MaxLeaseBytes+16 {
			return credentialsMD{}, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("authorization value of %d bytes", len(v))}
		}
		scheme, cred, ok := strings.Cut(v, " ")
		cred = strings.TrimSpace(cred)
		if !ok || cred == "" {
			return credentialsMD{}, &AuthError{Reason: ReasonMalformed, Detail: "authorization value without a scheme and credential"}
		}
		switch strings.ToLower(scheme) {
		case "bearer":
			if c.bearer != "" || len(cred) > MaxTokenBytes {
				return credentialsMD{}, &AuthError{Reason: ReasonMalformed, Detail: "bearer token repeated or too long"}
			}
			c.bearer = cred
		case "lease":
			if c.lease != "" {
				return credentialsMD{}, &AuthError{Reason: ReasonMalformed, Detail: "lease repeated"}
			}
			c.lease = cred
		default:
			return credentialsMD{}, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("authorization scheme %.20q", scheme)}
		}
	}
	return c, nil
}

// certIdentity returns the identity of a verified client certificate in
// ctx's peer, or "".
func certIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return ""
	}
	c := ti.State.VerifiedChains[0][0]
	switch {
	case c.Subject.CommonName != "":
		return "cert:" + c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return "cert:" + c.DNSNames[0]
	case len(c.EmailAddresses) > 0:
		return "cert:" + c.EmailAddresses[0]
	case len(c.URIs) > 0:
		return "cert:" + c.URIs[0].String()
	case len(c.IPAddresses) > 0:
		return "cert:" + c.IPAddresses[0].String()
	}
	return ""
}

// authenticator identifies callers for a server: by bearer token when it
// has a TokenSet, by verified client certificate otherwise or in
// addition.
type authenticator struct {
	tokens *TokenSet
}

// identify returns the caller's identity and the credentials its metadata
// carries. Without tokens, a caller without a verified certificate is
// anonymous (""); with tokens, it must present an allowed one or a
// verified certificate.
func (a *authenticator) identify(ctx context.Context) (string, credentialsMD, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c, err := parseAuthorization(md.Get("authorization"))
	if err != nil {
		return "", c, err
	}
	switch proofs := md.Get(LeaseProofHeader); len(proofs) {
	case 0:
	case 1:
		c.proof = proofs[0]
	default:
		return "", c, &AuthError{Reason: ReasonMalformed, Detail: fmt.Sprintf("%d %s values", len(proofs), LeaseProofHeader)}
	}
	cert := certIdentity(ctx)
	if a.tokens == nil {
		return cert, c, nil
	}
	if c.bearer != "" {
		name, ok := a.tokens.Lookup(c.bearer)
		if !ok {
			return "", c, &AuthError{Reason: ReasonBadToken, Detail: "bearer token not allowed"}
		}
		return "token:" + name, c, nil
	}
	if cert != "" {
		return cert, c, nil
	}
	return "", c, &AuthError{Reason: ReasonMissing, Detail: "this server wants a bearer token (transport.WithToken) or a client certificate"}
}

// identityKey is the context key of a caller's identity.
type identityKey struct{}

// withIdentity returns ctx carrying the caller's identity.
func withIdentity(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// identityFrom returns the identity withIdentity stored, or "".
func identityFrom(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(string)
	return id
}

// ctxStream is a server stream with a replaced context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// IsLoopback reports whether addr (host:port, or a bare host) names a
// loopback address: "localhost" or a loopback IP. An empty host, which
// means every interface, is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// CheckListen refuses to serve in clear text on addr beyond loopback
// unless insecure is set: a daemon calls it before listening. tls says
// whether the server has a certificate.
func CheckListen(addr string, tls, insecure bool) error {
	if tls || insecure || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%w: refusing to serve %s in clear text; give --tls-cert and --tls-key, listen on 127.0.0.1, or pass --insecure on a trusted network", ErrInsecure, addr)
}

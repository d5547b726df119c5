package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rookery-ml/rookery/ledger"
)

func init() {
	register(command{"ledger", "check a seed node's ledger of work receipts: rookery ledger verify DATABASE-FILE | --seed URL", runLedger})
}

const ledgerUsage = `usage: rookery ledger verify [flags] DATABASE-FILE
       rookery ledger verify [flags] --seed URL

Re-checks a seed node's ledger of work receipts and faults: every entry
decodes, follows the one before (its prev_hash is the SHA-256 of that
entry's stored bytes), and carries good signatures (a receipt both the
provider's and the requester's, a fault the requester's); and the head
names the last entry. On success it prints
  ledger: N entries, head HEX, all signatures and the chain check
and exits 0; otherwise it names the first bad entry and exits 1.

DATABASE-FILE is the seed node's ledger database (rookery seed --ledger),
opened read-only. A running seed node holds its file: check its ledger
through its HTTP view instead, with --seed http://HOST:PORT, which reads
every entry's stored bytes from GET /v1/ledger, page by page, and checks
them against the head the seed reports.

flags:
`

// ledgerPageSize is the limit asked of GET /v1/ledger: the most it
// serves.
const ledgerPageSize = 1000

// maxLedgerPage bounds a page's JSON: 1000 entries of at most
// ledger.MaxEntryBytes each, in base64, with their other fields.
const maxLedgerPage = 64 << 20

func runLedger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("want a sub-command: verify")
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprint(stderr, ledgerUsage)
		ledgerVerifyFlags(stderr, new(ledgerVerifyOpts)).PrintDefaults()
		return nil
	case "verify":
		return runLedgerVerify(ctx, args[1:], stdout, stderr)
	}
	return usagef("unknown sub-command %q: want verify", args[0])
}

type ledgerVerifyOpts struct {
	seed    string
	ca      string
	timeout time.Duration
}

func ledgerVerifyFlags(out io.Writer, o *ledgerVerifyOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("ledger verify", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ledgerUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.seed, "seed", "", "check the ledger of the running seed node whose HTTP view is at `URL`, e.g. http://127.0.0.1:7080")
	fs.StringVar(&o.ca, "ca", "", "PEM `FILE` of the CA that signed the seed node's certificate (an https URL)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long each request to --seed may take")
	return fs
}

func runLedgerVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o ledgerVerifyOpts
	fs := ledgerVerifyFlags(stderr, &o)
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var (
		n    uint64
		head [32]byte
		err  error
	)
	switch {
	case o.seed != "" && fs.NArg() > 0:
		return usagef("give a database file or --seed, not both")
	case o.seed != "":
		n, head, err = verifySeedLedger(ctx, o)
	case fs.NArg() == 1:
		n, head, err = ledger.VerifyHead(fs.Arg(0))
		if err != nil {
			// One mention of the file, and none of the package.
			msg := strings.TrimPrefix(err.Error(), "ledger: ")
			if !strings.Contains(msg, fs.Arg(0)) {
				msg = fs.Arg(0) + ": " + msg
			}
			err = errors.New(msg)
		}
	case fs.NArg() == 0:
		return usagef("no database file (or --seed URL)")
	default:
		return usagef("one database file at a time, not %d", fs.NArg())
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ledger: %d entries, head %x, all signatures and the chain check\n", n, head)
	return nil
}

// ledgerPage is what GET /v1/ledger answers, as far as verifying needs.
type ledgerPage struct {
	Head struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	} `json:"head"`
	Next    uint64 `json:"next"`
	Entries []struct {
		Seq uint64 `json:"seq"`
		Raw []byte `json:"raw"`
	} `json:"entries"`
}

// verifySeedLedger reads a running seed node's ledger, up to the head
// its first page reports, and checks it against that head.
func verifySeedLedger(ctx context.Context, o ledgerVerifyOpts) (n uint64, head [32]byte, err error) {
	base, err := url.Parse(strings.TrimRight(o.seed, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return 0, head, usagef("--seed %q: want http://HOST:PORT or https://HOST:PORT", o.seed)
	}
	client := &http.Client{Timeout: o.timeout}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return 0, head, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return 0, head, fmt.Errorf("--ca %s: no PEM certificates", o.ca)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	var (
		raw     [][]byte
		headSeq uint64
		from    uint64 = 1
	)
	// Every page but the last adds at least one entry, so the loop ends
	// after at most headSeq+1 pages.
	for page := uint64(0); ; page++ {
		p, err := getLedgerPage(ctx, client, base, from)
		if err != nil {
			return uint64(len(raw)), head, err
		}
		if page == 0 {
			headSeq = p.Head.Seq
			h, err := hex.DecodeString(p.Head.Hash)
			if err != nil || len(h) != len(head) {
				return 0, head, fmt.Errorf("%s: head hash %q is not 32 bytes of hex", base, p.Head.Hash)
			}
			copy(head[:], h)
		}
		for _, e := range p.Entries {
			if uint64(len(raw)) == headSeq {
				break
			}
			if want := uint64(len(raw)) + 1; e.Seq != want {
				return uint64(len(raw)), head, fmt.Errorf("%s: sent entry %d where entry %d was due", base, e.Seq, want)
			}
			raw = append(raw, e.Raw)
		}
		if p.Next == 0 || uint64(len(raw)) == headSeq {
			break
		}
		if p.Next != uint64(len(raw))+1 || page >= headSeq {
			return uint64(len(raw)), head, fmt.Errorf("%s: after entry %d the next page is said to start at %d", base, len(raw), p.Next)
		}
		from = p.Next
	}
	if uint64(len(raw)) != headSeq {
		return uint64(len(raw)), head, fmt.Errorf("%s: the head is entry %d but the seed served %d entries", base, headSeq, len(raw))
	}
	n, err = ledger.VerifyEntries(raw, head)
	if err != nil {
		return n, head, fmt.Errorf("%s: %s", base, strings.TrimPrefix(err.Error(), "ledger: "))
	}
	return n, head, nil
}

func getLedgerPage(ctx context.Context, client *http.Client, base *url.URL, from uint64) (*ledgerPage, error) {
	u := base.JoinPath("v1", "ledger")
	u.RawQuery = url.Values{"from": {fmt.Sprint(from)}, "limit": {fmt.Sprint(ledgerPageSize)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLedgerPage+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return nil, fmt.Errorf("GET %s: %s: %.200s", u, resp.Status, msg)
	}
	if len(body) > maxLedgerPage {
		return nil, fmt.Errorf("GET %s: more than %d bytes", u, maxLedgerPage)
	}
	var p ledgerPage
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &p, nil
}

package seednode_test

import (
	"bytes"
	"context"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rookery-ml/rookery/transport/seednode"
)

// browserBound bounds each run of the browser; its virtual-time budget
// lets the page's script finish long before.
const browserBound = 2 * time.Minute

// chromium returns the path of a headless-capable Chromium: $ROOKERY_CHROMIUM,
// or chromium on $PATH. Without one the test skips, unless
// $ROOKERY_BROWSER_REQUIRED is set (as .ci/run and page/test.sh set it).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ROOKERY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH: install Debian's chromium (apt-get install -y chromium) or run transport/seednode/page/test.sh"
	if os.Getenv("ROOKERY_BROWSER_REQUIRED") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// runChromium runs headless Chromium on url with the extra flags, in a
// process group of its own that is killed once it exits or the bound
// passes, so that none of its helper processes outlives the call. It
// returns what Chromium wrote to stdout.
func runChromium(t *testing.T, bin, url string, flags ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserBound)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
		"--hide-scrollbars", "--virtual-time-budget=5000"}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	pgid := cmd.Process.Pid
	err := cmd.Wait()
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // helpers left in the group, if any
	if err != nil {
		t.Fatalf("%s %s: %v (bound %v)\nstderr:\n%s", filepath.Base(bin), strings.Join(flags, " "), err, browserBound, stderr.Bytes())
	}
	return stdout.Bytes()
}

// TestPageInBrowser serves the page beside canned ledger JSON, renders
// it in headless Chromium and checks the DOM the page's script built:
// every provider by name (the one the ledger names but the registry no
// longer lists as offline), the ledger head's hash, one chart bar per
// provider, both jobs and the fault's evidence. It saves a screenshot
// in $ROOKERY_SCREENSHOT_DIR (else the test's temporary directory) and
// logs its path.
func TestPageInBrowser(t *testing.T) {
	bin := chromium(t)
	f := newPageFixture(t)
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	url := srv.URL + "/"

	dom := string(runChromium(t, bin, url, "--dump-dom"))
	if !strings.Contains(dom, `data-state="ready"`) {
		t.Fatalf("the page's script did not finish (want body data-state=\"ready\"); DOM:\n%s", dom)
	}
	for _, name := range f.names {
		if !strings.Contains(dom, `<span class="name">`+name+`</span>`) {
			t.Errorf("the providers table lacks %q", name)
		}
	}
	for i, key := range f.keys {
		state := "online"
		if i == len(f.keys)-1 {
			state = "offline"
		}
		if row := `<tr data-key="` + key + `" class="` + state + `">`; !strings.Contains(dom, row) {
			t.Errorf("no %s row for provider %d: want %s", state, i, row)
		}
	}
	if !strings.Contains(dom, `<dd class="mono head-hash">`+f.head.Hash+`</dd>`) {
		t.Errorf("the ledger's head hash %s is not shown", f.head.Hash)
	}
	bars := regexp.MustCompile(`<rect class="bar (?:online|offline)" data-key="([^"]*)"`).FindAllStringSubmatch(dom, -1)
	var got []string
	for _, b := range bars {
		got = append(got, b[1])
	}
	if len(got) != len(f.keys) {
		t.Errorf("the chart has %d bars %q, want one per provider: %q", len(got), got, f.keys)
	}
	for _, key := range f.keys {
		if !strings.Contains(strings.Join(got, "\n"), key) {
			t.Errorf("the chart has no bar for %s", key)
		}
	}
	for _, job := range f.jobs {
		if !strings.Contains(dom, `<tr data-job="`+job+`">`) {
			t.Errorf("the jobs table lacks %q", job)
		}
	}
	if !strings.Contains(dom, f.evidence) {
		t.Errorf("the faults table lacks the evidence %q", f.evidence)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	dir := os.Getenv("ROOKERY_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot, err := filepath.Abs(filepath.Join(dir, "seed-page.png"))
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(shot)
	runChromium(t, bin, url, "--screenshot="+shot, "--window-size=1280,900")
	file, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer file.Close()
	img, err := png.Decode(file)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot of %dx%d, want 1280x900", b.Dx(), b.Dy())
	}
	t.Logf("screenshot of the seed node's page: %s", shot)
}

// TestPageInBrowserBareSeed renders the page of a registry with no
// providers and no ledger view: it must still finish, saying so, rather
// than fail on the missing figures.
func TestPageInBrowserBareSeed(t *testing.T) {
	bin := chromium(t)
	seed := seednode.NewRegistry(seednode.WithProber(trust))
	defer seed.Stop()
	srv := httptest.NewServer(seed.Handler())
	defer srv.Close()
	dom := string(runChromium(t, bin, srv.URL+"/", "--dump-dom"))
	for _, want := range []string{`data-state="ready"`, "No providers are registered", "not available", "No jobs in the ledger yet", "No work recorded yet"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}

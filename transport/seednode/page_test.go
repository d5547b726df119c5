package seednode_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/rookery-ml/rookery/transport/seednode"
)

// get sends h a GET of path and returns the status, content type and
// body.
func getPage(t *testing.T, h http.Handler, path string) (int, http.Header, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://seed"+path, nil))
	b, err := io.ReadAll(w.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return w.Code, w.Result().Header, string(b)
}

// TestPageServed checks that the HTTP view serves the page, its script
// and its style at /, /page.js and /page.css, and leaves every other
// path as it was.
func TestPageServed(t *testing.T) {
	seed := seednode.NewRegistry(seednode.WithProber(trust))
	defer seed.Stop()
	h := seed.Handler()
	for _, c := range []struct{ path, typ, has string }{
		{"/", "text/html", `<script src="page.js"`},
		{"/page.js", "text/javascript", "v1/ledger"},
		{"/page.css", "text/css", "#chart"},
	} {
		code, hdr, body := getPage(t, h, c.path)
		if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), c.typ) || !strings.Contains(body, c.has) {
			t.Errorf("GET %s: %d %q, body has %q: %v; want 200 %s", c.path, code, hdr.Get("Content-Type"), c.has, strings.Contains(body, c.has), c.typ)
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want the page kept to the seed node", c.path, csp)
		}
	}
	for _, path := range []string{"/index.html", "/page/index.html", "/nothing", "/page.js/x"} {
		if code, _, _ := getPage(t, h, path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	if code, hdr, body := getPage(t, h, "/v1/providers"); code != http.StatusOK || hdr.Get("Content-Type") != "application/json" || !strings.Contains(body, `"providers"`) {
		t.Errorf("GET /v1/providers: %d %q %q", code, hdr.Get("Content-Type"), body)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "http://seed/", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", w.Code)
	}
}

// external matches what would make a browser fetch from elsewhere than
// the seed node: absolute or protocol-relative URLs in src, href, url()
// or fetch, and CSS imports.
var external = regexp.MustCompile(`(?i)((src|href)\s*=\s*["']?\s*(https?:)?//|url\(|@import|fetch\(\s*["'](https?:)?//)`)

// TestPageOffline checks that the page needs nothing from the network
// but the seed node: no asset or request points anywhere else.
func TestPageOffline(t *testing.T) {
	seed := seednode.NewRegistry(seednode.WithProber(trust))
	defer seed.Stop()
	h := seed.Handler()
	for _, path := range []string{"/", "/page.js", "/page.css"} {
		_, _, body := getPage(t, h, path)
		if m := external.FindString(body); m != "" {
			t.Errorf("GET %s has %q: the page must load nothing from elsewhere", path, m)
		}
	}
}

package seednode

import (
	"embed"
	"net/http"
)

// The seed node's web page: one HTML file, its script and its style,
// built into the binary so that the page works with no network beyond
// the seed node itself.
//
//go:embed page/index.html page/page.js page/page.css
var pageFiles embed.FS

// pagePolicy keeps the page to what the seed node serves: no script,
// style, image or request may come from anywhere else.
const pagePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// registerPage adds the web page to mux: GET / serves the page, and GET
// /page.js and /page.css its script and style. The page reads the JSON
// view (/v1/providers, /v1/ledger, /v1/standing) from the browser; no
// other path changes.
func registerPage(mux *http.ServeMux) {
	for _, f := range []struct{ pattern, file, typ string }{
		{"GET /{$}", "page/index.html", "text/html; charset=utf-8"},
		{"GET /page.js", "page/page.js", "text/javascript; charset=utf-8"},
		{"GET /page.css", "page/page.css", "text/css; charset=utf-8"},
	} {
		b, err := pageFiles.ReadFile(f.file)
		if err != nil {
			panic("seednode: the embedded page lacks " + f.file) // the go:embed line above lists it
		}
		mux.HandleFunc(f.pattern, func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", f.typ)
			h.Set("Content-Security-Policy", pagePolicy)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-cache")
			_, _ = w.Write(b)
		})
	}
}
